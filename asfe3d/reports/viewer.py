"""An interactive viewer inside a report: NiiVue (WebGL) with the anatomical image, the PET and the fused image as
layers, working offline.

The NiiVue bundle (``vendor/niivue.umd.js``, ``@niivue/niivue`` from npm, BSD-2-Clause) is inlined once per page and
each volume is embedded as a gzipped NIfTI ``data:`` URI: the report stays one self-contained file. Volumes are
block-averaged to voxels of at least ``viewer_mm`` (2 mm by default) and stored as int16 with the NIfTI slope and
intercept, so the values NiiVue shows under the cursor are in the images' units (SUV, HU...) while a 1 mm head costs
about 0.5 MB per layer. The viewer is opt-in (``viewer=True`` of :func:`asfe3d.reports.write_subject_report` and
friends): the bundle adds about 2.3 MB to a report.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NIIVUE_VERSION", "niivue_script", "viewer_volume", "viewer_html"]

NIIVUE_VERSION = "0.69.0"
_BUNDLE = Path(__file__).with_name("vendor") / "niivue.umd.js"


def niivue_script() -> str:
    """The NiiVue bundle's JavaScript (to inline in a ``<script>`` element).

    Raises:
        FileNotFoundError: the bundle is not installed with the package.
    """
    if not _BUNDLE.is_file():
        raise FileNotFoundError(f"the NiiVue bundle is missing: {str(_BUNDLE)!r} (reinstall asfe3d, or write the "
                                "report without viewer=True)")
    text = _BUNDLE.read_text(encoding="utf-8")
    if "</script" in text.lower():  # would end the inline element early
        raise ValueError(f"{_BUNDLE}: contains '</script' and cannot be inlined")
    return text


def viewer_volume(img: Any, viewer_mm: float = 2.0) -> bytes:
    """A volume for the viewer: block-averaged to voxels of at least ``viewer_mm``, int16 with slope and intercept,
    gzipped NIfTI bytes.

    Args:
        img: a canonical (diagonal affine) 3D ``Nifti1Image``.
        viewer_mm: the smallest voxel size kept, > 0.

    Returns:
        ``.nii.gz`` bytes.

    Raises:
        ValueError: ``viewer_mm`` not > 0, or an image that is not 3D.
    """
    import nibabel as nib

    if not (isinstance(viewer_mm, (int, float)) and np.isfinite(viewer_mm) and viewer_mm > 0):
        raise ValueError(f"viewer_mm must be a number > 0, got {viewer_mm!r}")
    data = np.nan_to_num(np.asanyarray(img.dataobj, dtype=np.float32))
    if data.ndim != 3:
        raise ValueError(f"the viewer takes 3D images, got shape {data.shape}")
    affine = np.asarray(img.affine, dtype=float).copy()
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    factors = [max(1, int(round(viewer_mm / z))) for z in zooms]
    if any(f > 1 for f in factors):
        trimmed = data[tuple(slice(0, (n // f) * f) for n, f in zip(data.shape, factors))]
        shape = [n // f for n, f in zip(trimmed.shape, factors)]
        data = trimmed.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2]).mean(axis=(1, 3, 5))
        # block centres: voxel (f - 1) / 2 of the old grid, steps of f
        affine[:3, 3] = affine[:3, :3] @ ((np.array(factors) - 1) / 2.0) + affine[:3, 3]
        affine[:3, :3] = affine[:3, :3] * np.array(factors)
    out = nib.Nifti1Image(data.astype(np.float32), affine)
    out.set_data_dtype(np.int16)  # nibabel picks the slope and intercept that keep the range
    out.header.set_xyzt_units("mm")
    return gzip.compress(out.to_bytes(), compresslevel=6)


def _uri(payload: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(payload).decode("ascii")


def viewer_html(
    anchor: str,
    *,
    anat: Any,
    pet: Any,
    fused: Any,
    anat_name: str,
    pet_units: str,
    fused_units: str,
    pet_window: tuple[float, float],
    colormap: str = "hot",
    viewer_mm: float = 2.0,
) -> str:
    """The viewer's block: a canvas, layer buttons, the volumes and the script that loads them.

    The page must also inline :func:`niivue_script` once (``write_report`` does for sections drawn with a viewer).
    The block's ``data-state`` becomes ``ready`` once the volumes are loaded, or ``error: ...`` (also shown).

    Args:
        anchor: the section's id (the canvas is ``viewer-<anchor>``).
        anat: the canonical anatomical image.
        pet: the canonical registered PET on the same grid, in its units.
        fused: the canonical fused image, as written.
        anat_name: ``MRI`` or ``CT``.
        pet_units: the PET's units (in the labels).
        fused_units: the fused image's units (in the labels).
        pet_window: the PET's display window; values below 20 % of it are transparent over the anatomy. The
            anatomical layer is windowed at its 0.5th-99.5th percentiles, the fused one over its whole range.
        colormap: the PET's colour map (a NiiVue colour map name; ``hot`` when NiiVue lacks it).
        viewer_mm: see :func:`viewer_volume`.

    Returns:
        HTML.
    """
    from asfe3d.reports.figures import robust_range

    lo, hi = (float(v) for v in pet_window)
    a_lo, a_hi = robust_range(np.asanyarray(anat.dataobj))
    fused_data = np.asanyarray(fused.dataobj)
    f_lo, f_hi = float(np.nanmin(fused_data)), float(np.nanmax(fused_data))
    known = {"hot", "gray", "winter", "warm", "plasma", "viridis", "inferno", "red", "green", "blue", "bone", "cool",
             "jet", "magma"}
    cmap = colormap if colormap in known else "hot"
    volumes = [
        {"url": _uri(viewer_volume(anat, viewer_mm)), "name": f"{anat_name.lower()}.nii.gz", "colormap": "gray",
         "cal_min": a_lo, "cal_max": a_hi},
        {"url": _uri(viewer_volume(pet, viewer_mm)), "name": "pet.nii.gz", "colormap": cmap,
         "cal_min": lo + 0.2 * (hi - lo), "cal_max": hi, "opacity": 0.6},
        {"url": _uri(viewer_volume(fused, viewer_mm)), "name": "fused.nii.gz", "colormap": "gray", "opacity": 0.0,
         "cal_min": f_lo, "cal_max": f_hi if f_hi > f_lo else f_lo + 1.0},
    ]
    canvas = f"viewer-{anchor}"
    modes = [("overlay", f"PET over the {anat_name}"), ("fused", f"fused ({fused_units})"),
             ("pet", f"PET ({pet_units})"), ("anat", f"{anat_name}")]
    buttons = "".join(
        f'<label><input type="radio" name="{html.escape(canvas)}-layer" value="{m}"{" checked" if i == 0 else ""}>'
        f" {html.escape(label)}</label> " for i, (m, label) in enumerate(modes))
    config = json.dumps({"canvas": canvas, "volumes": volumes}).replace("</", "<\\/")
    return f"""<div class="viewer" id="{html.escape(canvas)}-box" data-state="loading">
<div class="viewer-controls">{buttons}<span class="viewer-status"></span></div>
<div class="viewer-canvas"><canvas id="{html.escape(canvas)}"></canvas></div>
<script>(function () {{
  const cfg = {config};
  const box = document.getElementById(cfg.canvas + "-box");
  const status = box.querySelector(".viewer-status");
  const fail = (e) => {{ box.dataset.state = "error: " + e; status.textContent = "viewer failed: " + e; }};
  if (typeof niivue === "undefined") {{ fail("NiiVue is not in this page"); return; }}
  const nv = new niivue.Niivue({{backColor: [0, 0, 0, 1], isColorbar: true, show3Dcrosshair: true}});
  const opacities = {{overlay: [1, 0.6, 0], fused: [0, 0, 1], pet: [0, 1, 0], anat: [1, 0, 0]}};
  const show = (mode) => {{
    opacities[mode].forEach((o, i) => {{ nv.volumes[i].colorbarVisible = o > 0; nv.setOpacity(i, o); }});
    nv.updateGLVolume();
  }};
  Promise.resolve(nv.attachTo(cfg.canvas)).then(() => nv.loadVolumes(cfg.volumes)).then(() => {{
    nv.setSliceType(nv.sliceTypeMultiplanar);
    box.querySelectorAll("input[type=radio]").forEach((r) => r.addEventListener("change", () => show(r.value)));
    show("overlay");
    nv.onLocationChange = (where) => {{ status.textContent = where.string; }};
    box.dataset.state = "ready";
    status.textContent = "click or drag in a view: the position and each layer's value show here";
  }}).catch(fail);
}})();</script>
<noscript><p class="note">The interactive viewer needs JavaScript.</p></noscript>
</div>"""
