"""The family of hand-made fusions searched by ``scripts/wins_feasibility.py`` (issue 16's "can the wins bar be met
at all?", ``docs/evaluation.md``), as a library: its parameters, a point as a fusion method, and random points.

The family (``mri``, ``pet`` in [0, 1]; ``lo``, ``de`` = the MRI split at ``fwhm`` mm, ``de`` its detail band)::

    f = (1 - w) * pet**gamma + (w + b) * mri + g * de
    f = (1 - lap) * f + lap * laplacian(mri, pet)          # optional blends with a classic method
    f = (1 - wav) * f + wav * wavelet(mri, pet)
    f = m * (wo * mri + (1 - wo) * f) + (1 - m) * f,  m = clip(1 - blur4(pet) / t)  # optional: the MRI where
                                                                                    # the PET is low (wo of it)
    f = max(f, gate * mx * mri),  gate = clip((tg - blur4(pet)) / (tg / 2)) (1 without tg)  # optional max
    f = k * f                                                # optional gain (the scoring clips to [0, 1])

and ``hpm`` scales ``de`` by ``(1 - hpm) + hpm * clip(pet / lo, 0, 3)``: the detail modulated by the PET, as
high-pass modulation pansharpening does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GRID", "PARAMS", "RANGES", "PointFusion", "parse_point", "random_point"]

#: the points searched (each a dict of the family's parameters; the rest take their defaults)
GRID: tuple[str, ...] = (
    "g=1", "g=1,w=0.12", "g=1.5,w=0.1", "g=1,w=0.12,fwhm=4", "g=1,w=0.12,fwhm=8", "g=1,w=0.12,gamma=0.8",
    "g=1,w=0.1,b=0.1", "g=1,w=0.1,b=0.2", "g=1,w=0.1,b=0.3", "g=0.8,w=0.1,b=0.2",
    "g=1,w=0.12,t=0.15", "g=1,w=0.12,t=0.3",
    "g=1,w=0.12,lap=0.2", "g=1,w=0.12,lap=0.3", "g=1.2,w=0.12,lap=0.3", "g=1,w=0.12,wav=0.3",
    "g=1,w=0.12,mx=0.6", "g=1,w=0.12,mx=0.8", "g=1.3,w=0.12,mx=0.6", "g=1.2,w=0.1,mx=0.5",
    "g=1.3,w=0.15,mx=0.7", "g=1.5,w=0.12,mx=0.65",
    "g=1,w=0.12,mx=0.6,tg=0.15", "g=1,w=0.12,mx=0.8,tg=0.15", "g=1,w=0.12,mx=0.8,tg=0.3",
    "g=1,w=0.12,mx=1,tg=0.2", "g=1.2,w=0.12,mx=0.7,tg=0.3", "g=1,w=0.15,mx=0.7,tg=0.25",
    "g=1.1,w=0.12,mx=0.6,tg=0.3,lap=0.15", "g=1,w=0.12,mx=0.9,tg=0.1",
)
PARAMS = {"g": 1.0, "w": 0.0, "b": 0.0, "fwhm": 6.0, "gamma": 1.0, "t": 0.0, "wo": 1.0, "lap": 0.0, "wav": 0.0,
          "mx": 0.0, "tg": 0.0, "k": 1.0, "hpm": 0.0}
#: where ``--random`` draws each parameter: ``(probability the parameter is used, low, high)``; unused ones keep
#: :data:`PARAMS`' value (``fwhm`` is drawn from 4-8 mm in whole mm)
RANGES: dict[str, tuple[float, float, float]] = {
    "g": (1.0, 0.6, 1.6), "w": (1.0, 0.0, 0.15), "b": (0.5, 0.0, 0.2), "fwhm": (1.0, 4.0, 8.0),
    "gamma": (0.5, 0.8, 1.2), "t": (0.4, 0.05, 0.35), "wo": (1.0, 0.3, 1.0), "lap": (0.3, 0.0, 0.4),
    "wav": (0.3, 0.0, 0.4), "mx": (0.5, 0.4, 1.0), "tg": (0.6, 0.1, 0.4), "k": (0.5, 0.9, 1.15),
}


def random_point(rng: Any, around: dict[str, float] | None = None, scale: float = 1.0) -> str:
    """A point of the family as a spec string: drawn from :data:`RANGES`, or, with ``around``, that point moved by
    up to ``scale`` x 15 % of each range (clipped to the range; parameters it does not use stay unused)."""
    import numpy as np

    out = {}
    for key, (p_use, lo, hi) in RANGES.items():
        if around is None:
            if rng.random() >= p_use:
                continue
            v = float(rng.uniform(lo, hi))
        else:
            if around[key] == PARAMS[key] and key not in ("g", "fwhm"):
                continue
            v = float(np.clip(around[key] + rng.normal(0.0, 0.15 * scale * (hi - lo)), lo, hi))
        out[key] = round(v) if key == "fwhm" else round(v, 3)
    if around is not None:  # parameters outside RANGES (e.g. hpm, only asked for by --points) are kept
        out.update({k: around[k] for k in PARAMS if k not in RANGES and around[k] != PARAMS[k]})
    if out.get("tg", 0) and not out.get("mx", 0):  # a gate without a max does nothing
        out.pop("tg")
    return ",".join(f"{k}={v:g}" for k, v in out.items())


def parse_point(spec: str) -> dict[str, float]:
    """``"g=1,w=0.12"`` -> the family's full parameter dict.

    Raises:
        ValueError: an unknown name or a value that is not a number (quoted).
    """
    out = dict(PARAMS)
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key not in PARAMS:
            raise ValueError(f"unknown parameter {key!r} in {spec!r}; choose from {sorted(PARAMS)}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"{key}={value!r} in {spec!r} is not a number") from None
    return out


class PointFusion:
    """One point of the family as a fusion method ``(mri, pet, spacing) -> fused`` (works in mm)."""

    uses_spacing = True

    def __init__(self, params: dict[str, float]) -> None:
        self.p = params

    def __call__(self, mri: Any, pet: Any, spacing: Any = None) -> Any:
        import numpy as np

        from asfe3d.fusion import get_fuser
        from asfe3d.metrics.bands import band_split

        p = self.p
        sp = 1.0 if spacing is None else spacing
        mri = np.asarray(mri, np.float64)
        pet = np.asarray(pet, np.float64)
        detail = _cached(("detail", p["fwhm"], str(sp)), (mri,), lambda: band_split(mri, sp, p["fwhm"])[1])
        base = pet ** p["gamma"] if p["gamma"] != 1.0 else pet
        if p["hpm"] > 0:  # high-pass modulation: the detail scaled by PET / the MRI's low band, as in HPM pansharpening
            ratio = _cached(("ratio", p["fwhm"], str(sp)), (mri, pet), lambda: np.clip(
                pet / np.maximum(mri - detail, 0.02), 0.0, 3.0))
            detail = detail * ((1 - p["hpm"]) + p["hpm"] * ratio)
        f = (1 - p["w"]) * base + (p["w"] + p["b"]) * mri + p["g"] * detail
        if p["lap"] > 0:
            lap = _cached(("laplacian",), (mri, pet), lambda: np.asarray(get_fuser("laplacian")(mri, pet), np.float64))
            f = (1 - p["lap"]) * f + p["lap"] * lap
        if p["wav"] > 0:
            wav = _cached(("wavelet",), (mri, pet), lambda: np.asarray(get_fuser("wavelet")(mri, pet), np.float64))
            f = (1 - p["wav"]) * f + p["wav"] * wav
        pet_low = _cached(("pet_low", str(sp)), (pet,), lambda: band_split(pet, sp, 4.0)[0]) if (p["t"] > 0 or p["tg"] > 0) \
            else None
        if p["t"] > 0:
            m = np.clip(1 - pet_low / p["t"], 0, 1)
            f = m * (p["wo"] * mri + (1 - p["wo"]) * f) + (1 - m) * f
        if p["mx"] > 0:
            gate = np.clip((p["tg"] - pet_low) / (0.5 * p["tg"]), 0, 1) if p["tg"] > 0 else 1.0
            f = np.maximum(f, gate * p["mx"] * mri)
        return (p["k"] * f).astype(np.float32)


#: what a point computes once per input image (the MRI's detail band, the PET's low band, the classic fusions):
#: keyed by what was asked and the image's identity, so a search over many points does the work once per case
_CACHE: dict[tuple[Any, ...], Any] = {}


def _cached(key: tuple[Any, ...], images: tuple[Any, ...], make: Any) -> Any:
    full = (*key, *((x.shape, float(x.sum()), float(x.ravel()[::7].sum())) for x in images))
    if full not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[full] = make()
    return _CACHE[full]
