"""Saving and loading network weights in one safe format.

A weight file is a plain dict that ``torch.load(..., weights_only=True)`` accepts::

    {"format": "asfe3d-weights-v1", "config": {...ASFEFusion kwargs...}, "state_dict": {...}, "meta": {...}}

``meta`` records how the weights were made (data, epochs, final loss, command...). Shipped weights live in
``asfe3d/weights/`` (package data) and are found with :func:`shipped_weights`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from asfe3d.errors import Asfe3dInputError
from asfe3d.utils import is_int

__all__ = [
    "load_checkpoint",
    "FORMAT",
    "SHIPPED",
    "MODE_DIMS",
    "MAX_PARAMETERS",
    "shipped_weights",
    "save_weights",
    "load_weights",
    "load_state_dict_file",
    "check_config",
    "count_parameters",
    "check_weights",
    "build_network",
]

FORMAT = "asfe3d-weights-v1"
#: what the weights are for -> file name of the weights shipped with the package: ``slice`` and ``volume`` are the
#: two inference modes on volumes (1 mm-class MRI, PET at 4-8 mm); ``image`` is the 2D network on HMIF-style 2D
#: image pairs (256x256 slices with a colour PET), a domain of its own with weights of its own
SHIPPED = {"slice": "asfe2d_slice_mri_pet.pt", "volume": "asfe3d_mri_pet.pt", "image": "asfe2d_pet_mri.pt"}
#: inference mode -> spatial dimensions of the network it runs
MODE_DIMS = {"slice": 2, "volume": 3}
#: Largest network (parameters) a weight file may describe unless ``allow_large=True`` (the 'paper' preset has
#: 175.7 M parameters in 2D, 2.35 G in 3D; the shipped 'efficient' ones 0.13-0.16 M).
MAX_PARAMETERS = 50_000_000
#: Upper bounds on the config values that set how many modules are built (checked before building anything).
_STRUCTURE_LIMITS = {"convs_per_stage": 8, "num_experts": 64, "slots_per_expert": 64, "num_heads": 64}
_MAX_LEVELS = 8


def shipped_weights(mode: str) -> Path:
    """Path of the weights shipped for an inference mode.

    Args:
        mode: ``"slice"`` (2D network, volumes slice by slice), ``"volume"`` (3D network) or ``"image"`` (2D network
            on 2D image pairs, e.g. HMIF).

    Returns:
        The path inside the installed package.

    Raises:
        ValueError: unknown mode.
        FileNotFoundError: the package was installed without its weights.
    """
    if mode not in SHIPPED:
        raise ValueError(f"mode must be one of {sorted(SHIPPED)}, got {mode!r}")
    path = Path(__file__).resolve().parents[1] / "weights" / SHIPPED[mode]
    if not path.is_file():
        raise FileNotFoundError(f"shipped weights for mode {mode!r} are missing: {path}")
    return path


def _to_plain(value: Any) -> Any:
    """Turn tuples into lists recursively so the dict round-trips through ``weights_only`` loading."""
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def save_weights(net: torch.nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write a network's weights atomically (temp file in the same folder, then rename).

    Args:
        net: a network with a ``config`` dict attribute (its constructor's keyword arguments).
        path: destination ``.pt`` file.
        meta: provenance to store beside the weights (plain JSON-like values).

    Returns:
        The written path.

    Raises:
        ValueError: the network has no ``config`` attribute.
    """
    config = getattr(net, "config", None)
    if not isinstance(config, dict):
        raise ValueError(f"{type(net).__name__} has no `config` dict; cannot save rebuildable weights")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": _to_plain(config),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        "meta": _to_plain(meta or {}),
    }
    from asfe3d.io import atomic_output

    with atomic_output(path, overwrite=True) as tmp:
        torch.save(payload, tmp)
    return path


def load_weights(path: str | Path) -> dict[str, Any]:
    """Read a weight file with ``weights_only=True``.

    Args:
        path: a file written by :func:`save_weights`.

    Returns:
        The payload dict (``config``, ``state_dict``, ``meta``).

    Raises:
        Asfe3dInputError: missing, unreadable or not an asfe3d weight file.
    """
    path = Path(path)
    payload = _safe_load(path, "weight file")
    if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise Asfe3dInputError(
            path, "a plain state dict without the network's config (as the MONAI bundle's models/*.pt), not an asfe3d "
            "weight file; use the package's weights (asfe3d/weights/*.pt) or run the bundle, whose network_def holds "
            "the config"
        )
    if isinstance(payload, dict) and {"epoch", "net", "optimizer"} <= set(payload):
        raise Asfe3dInputError(path, "a resume checkpoint of asfe3d train (last.pt), not a weight file: the run's "
                                     "weights are its best.pt")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise Asfe3dInputError(path, f"not an asfe3d weight file (expected format {FORMAT!r})")
    return payload


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint as the bundle's ``CheckpointLoader`` takes them: a plain state dict
    (``models/model.pt``) or a file whose ``state_dict`` entry is one (an asfe3d weight file), read with
    ``weights_only=True``.

    Args:
        path: the checkpoint.

    Returns:
        ``{name: tensor}``.

    Raises:
        Asfe3dInputError: missing, unreadable, or holding no state dict.
    """
    return load_checkpoint(path)[0]


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """:func:`load_state_dict_file`'s tensors and the network config an asfe3d weight file records.

    Args:
        path: the checkpoint (a plain state dict, or an asfe3d weight file).

    Returns:
        ``({name: tensor}, config)``; ``config`` is ``None`` for a plain state dict.

    Raises:
        Asfe3dInputError: missing, unreadable, or holding no state dict.
    """
    path = Path(path)
    payload = _safe_load(path, "checkpoint")
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise Asfe3dInputError(path, "holds no state dict (a mapping of names to tensors, or one under 'state_dict')")
    config = payload.get("config") if isinstance(payload, dict) and "state_dict" in payload else None
    return {str(k): v for k, v in state.items()}, (dict(config) if isinstance(config, dict) else None)


def _safe_load(path: Path, what: str) -> Any:
    """``torch.load`` of ``path`` with ``weights_only=True``, after the size check; problems as one line."""
    if path.is_dir():
        raise Asfe3dInputError(path, f"is a folder, not a {what}")
    if not path.is_file():
        raise Asfe3dInputError(path, f"{what} not found")
    _check_unpacked_size(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unpickling problem as bad input
        raise Asfe3dInputError(path, f"not a readable {what} ({_load_problem(exc)}){_checkpoint_hint(path)}") from None


def _checkpoint_hint(path: Path) -> str:
    """A clause for a training run's ``last.pt`` given as weights (the network's weights are the run's
    ``best.pt``), else ``""``."""
    if path.name == "last.pt" and (path.parent / "best.pt").is_file():
        return f": {path.name} is asfe3d train's resume checkpoint; the run's weights are {path.parent / 'best.pt'}"
    return ""


def _load_problem(exc: Exception) -> str:
    """One short line for why ``torch.load`` refused a file: its own message is many lines, with advice (load it
    with ``weights_only=False``, file an issue) that does not apply to a file that is not a checkpoint at all."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError):
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        cause = next((ln for ln in lines if ln.startswith(("Unsupported", "WeightsUnpickler error"))), "")
        cause = cause.split(" Please ")[0].split(" Check the ")[0]  # torch's advice to load it unsafely: not ours
        return "not a PyTorch checkpoint, or one holding more than tensors" + (f": {cause[:120]}" if cause else "")
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    if "failed reading zip archive" in first or "central directory" in first:  # torch's advice cut mid-sentence
        return "its zip archive is incomplete: a truncated or corrupt file"
    return f"{type(exc).__name__}: {first.split('. ')[0][:200]}"


#: Most bytes a weight file may unpack to (the shipped networks take a few MB): a 8 MB file can hold a deflated
#: entry of several GB, which ``torch.load`` would allocate before any check of the tensors.
MAX_WEIGHT_BYTES = 2**30


def _check_unpacked_size(path: Path) -> None:
    """Refuse a weight file whose entries unpack to more than :data:`MAX_WEIGHT_BYTES` or the memory available,
    from the sizes its zip directory declares (torch's reader allocates each entry by that size), before loading."""
    import zipfile

    from asfe3d.io.checks import available_memory_bytes

    if not zipfile.is_zipfile(path):
        return  # a legacy (pickle) file: its tensors are stored raw, so the file's own size bounds them
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise Asfe3dInputError(path, f"not a readable weight file ({type(exc).__name__}: {exc})") from None
    avail = available_memory_bytes()
    bound = min(MAX_WEIGHT_BYTES, avail // 2) if avail is not None else MAX_WEIGHT_BYTES
    if total > bound:
        raise Asfe3dInputError(
            path, f"weight file unpacks to {total / 2**20:,.0f} MB, more than the {bound / 2**20:,.0f} MB any asfe3d "
            "network needs (corrupt file or decompression bomb?)"
        )


def check_config(path: str | Path, config: Any) -> dict[str, Any]:
    """Check a weight file's network config without building the network.

    Args:
        path: the weight file (named in errors).
        config: its ``config`` entry.

    Returns:
        The config (unchanged).

    Raises:
        Asfe3dInputError: not a dict, an unknown key, an unknown preset, ``spatial_dims`` not 2 or 3, or values
            that would build an implausible number of modules (more than 8 levels, ``convs_per_stage`` > 8...).
    """
    from asfe3d.networks.nets.presets import PRESETS, get_preset

    if not isinstance(config, dict):
        raise Asfe3dInputError(path, f"weight file's config is a {type(config).__name__}, not a dict")
    dims, preset = config.get("spatial_dims", 3), config.get("preset", "efficient")
    if dims not in (2, 3) or isinstance(dims, bool):
        raise Asfe3dInputError(path, f"weight config has spatial_dims={dims!r}; it must be 2 or 3")
    if preset not in PRESETS:
        raise Asfe3dInputError(path, f"weight config has unknown preset {preset!r} (known: {sorted(PRESETS)})")
    valid = {"spatial_dims", "preset", *get_preset(preset, dims)}
    unknown = sorted(set(config) - valid)
    if unknown:
        raise Asfe3dInputError(
            path, f"weight config has unknown key {unknown[0]!r}" + (f" (and {unknown[1:]})" if unknown[1:] else "")
            + f"; valid keys: {sorted(valid)}"
        )
    chans = config.get("encoder_channels", get_preset(preset, dims)["encoder_channels"])
    if not isinstance(chans, (list, tuple)) or not 1 <= len(chans) <= _MAX_LEVELS:
        raise Asfe3dInputError(path, f"weight config has encoder_channels={chans!r}; 1 to {_MAX_LEVELS} levels expected")
    for key, limit in _STRUCTURE_LIMITS.items():
        value = config.get(key, 1)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            raise Asfe3dInputError(path, f"weight config has {key}={value!r}, more than the plausible {limit}")
    return config


def count_parameters(path: str | Path, config: dict[str, Any]) -> int:
    """Number of values (parameters and buffers) of the network a config describes, without allocating it.

    The network is built on PyTorch's ``meta`` device (shapes only, no memory), so a config describing billions
    of parameters is counted in well under a second.

    Args:
        path: the weight file (named in errors).
        config: a config that passed :func:`check_config`.

    Returns:
        The count.

    Raises:
        Asfe3dInputError: the config's values are inconsistent (the network refuses them).
    """
    from asfe3d.networks.nets import ASFEFusion

    try:
        with torch.device("meta"):
            net = ASFEFusion(**config)
    except (ValueError, TypeError) as exc:
        raise Asfe3dInputError(path, f"weight config describes no valid network: {exc}") from None
    return int(sum(v.numel() for v in net.state_dict().values()))


def _encoder_weights(config: dict[str, Any]) -> int:
    """Weights of the encoder's convolutions alone (a lower bound of the network's size), from the config only."""
    from asfe3d.networks.nets.presets import get_preset

    try:
        dims = int(config.get("spatial_dims", 3))
        cfg = {**get_preset(str(config.get("preset", "efficient")), dims), **config}
        chans = [int(c) for c in cfg["encoder_channels"]]
        n = int(cfg["convs_per_stage"])
    except (TypeError, ValueError, KeyError):
        return 0  # left to count_parameters, which names the problem
    kernel = 3**dims
    total, cin = 0, 1
    for c in chans:
        total += kernel * cin * c + max(0, n - 1) * kernel * c * c
        cin = c
    return total


def check_weights(
    path: str | Path,
    mode: str | None = None,
    *,
    max_parameters: int = MAX_PARAMETERS,
    allow_large: bool = False,
) -> dict[str, Any]:
    """Check a weight file up front (before registration or any network is built).

    Args:
        path: a file written by :func:`save_weights`.
        mode: the inference mode it will run in (``"slice"``: 2D weights, ``"volume"``: 3D weights), or ``None``
            to skip that check.
        max_parameters: largest network accepted.
        allow_large: accept a network above ``max_parameters`` (e.g. the 'paper' preset, asked for explicitly).

    Returns:
        ``{"spatial_dims", "preset", "parameters", "payload"}`` (``payload`` as :func:`load_weights` returns it).

    Raises:
        ValueError: unknown ``mode`` or a bad ``max_parameters``.
        Asfe3dInputError: the file is missing / unreadable / not asfe3d weights, its config has an unknown key or
            bad values, its dimensions do not fit ``mode``, its network is larger than ``max_parameters``, or its
            stored tensors do not add up to the network it describes.
    """
    if mode is not None and mode not in MODE_DIMS:
        raise ValueError(f"mode must be one of {sorted(MODE_DIMS)} or None, got {mode!r}")
    if not is_int(max_parameters) or max_parameters < 1:
        raise ValueError(f"max_parameters must be a positive int, got {max_parameters!r}")
    payload = load_weights(path)
    config = check_config(path, payload.get("config"))
    dims, preset = int(config.get("spatial_dims", 3)), str(config.get("preset", "efficient"))
    if mode is not None and dims != MODE_DIMS[mode]:
        other = {2: "slice", 3: "volume"}[dims]
        raise Asfe3dInputError(
            path, f"weights are for a {dims}D network (mode '{other}') but mode '{mode}' needs {MODE_DIMS[mode]}D "
            f"weights; use mode '{other}' or {MODE_DIMS[mode]}D weights"
        )
    floor = _encoder_weights(config)
    if floor > max_parameters and not allow_large:  # obviously too large: refused without building anything
        raise Asfe3dInputError(
            path, f"weight config describes a network of at least {floor / 1e6:.1f} M parameters (its encoder "
            f"convolutions alone; {dims}D, preset {preset!r}), more than the {max_parameters / 1e6:g} M limit; pass "
            "allow_large=True to load it anyway"
        )
    count = count_parameters(path, config)
    if count > max_parameters and not allow_large:
        raise Asfe3dInputError(
            path, f"weight config describes a network of {count / 1e6:.1f} M parameters ({dims}D, preset "
            f"{preset!r}), more than the {max_parameters / 1e6:g} M limit; pass allow_large=True to load it anyway"
        )
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise Asfe3dInputError(path, "weight file's state_dict is not a dict of tensors")
    stored = int(sum(v.numel() for v in state.values()))
    if stored != count:
        raise Asfe3dInputError(
            path, f"weights do not match the network they describe ({stored:,} stored values, the config's network "
            f"has {count:,})"
        )
    return {"spatial_dims": dims, "preset": preset, "parameters": count, "payload": payload}


def build_network(
    path: str | Path,
    mode: str | None = None,
    *,
    max_parameters: int = MAX_PARAMETERS,
    allow_large: bool = False,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a network from a weight file, after :func:`check_weights` (nothing large is built unasked).

    Args:
        path: a file written by :func:`save_weights`.
        mode: the inference mode (``"slice"`` / ``"volume"``) the weights must fit, or ``None``.
        max_parameters: largest network accepted.
        allow_large: accept a network above ``max_parameters``.

    Returns:
        ``(net, meta)`` with ``net`` in eval mode on the CPU.

    Raises:
        Asfe3dInputError: see :func:`check_weights`; or the weights do not fit the network they describe.
    """
    from asfe3d.networks.nets import ASFEFusion

    checked = check_weights(path, mode, max_parameters=max_parameters, allow_large=allow_large)
    payload = checked["payload"]
    net = ASFEFusion(**payload["config"])
    try:
        net.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise Asfe3dInputError(path, f"weights do not match the network they describe: {_first_line(exc)}") from None
    bad = [name for name, t in payload["state_dict"].items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:  # NaN/Inf weights would give a NaN fused volume (or a traceback later): refuse them here
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise Asfe3dInputError(path, f"weights hold NaN or Inf values ({', '.join(bad[:3])}{more})")
    return net.eval(), payload.get("meta", {})


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
