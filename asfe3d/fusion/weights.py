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

__all__ = ["FORMAT", "SHIPPED", "shipped_weights", "save_weights", "load_weights", "build_network"]

FORMAT = "asfe3d-weights-v1"
#: inference mode -> file name of the weights shipped with the package
SHIPPED = {"slice": "asfe2d_pet_mri.pt", "volume": "asfe3d_mri_pet.pt"}


def shipped_weights(mode: str) -> Path:
    """Path of the weights shipped for an inference mode.

    Args:
        mode: ``"slice"`` (2D network) or ``"volume"`` (3D network).

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
    if not path.is_file():
        raise Asfe3dInputError(path, "weight file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unpickling problem as bad input
        raise Asfe3dInputError(path, f"not a readable weight file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise Asfe3dInputError(path, f"not an asfe3d weight file (expected format {FORMAT!r})")
    return payload


def build_network(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a network from a weight file.

    Args:
        path: a file written by :func:`save_weights`.

    Returns:
        ``(net, meta)`` with ``net`` in eval mode on the CPU.

    Raises:
        Asfe3dInputError: the file is unreadable or its weights do not fit the network it describes.
    """
    from asfe3d.networks.nets import ASFEFusion

    payload = load_weights(path)
    net = ASFEFusion(**payload["config"])
    try:
        net.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise Asfe3dInputError(path, f"weights do not match the network they describe: {exc}") from None
    return net.eval(), payload.get("meta", {})
