"""The one interface every fusion method answers to, and the registry that names them.

A fusion method takes two co-registered images on one grid, ``mri`` and ``pet``, with intensities in ``[0, 1]``,
2D ``(H, W)`` or 3D ``(X, Y, Z)``, and returns the fused image of the same shape, float32 in ``[0, 1]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "BUILTIN_METHODS", "EMPTY_LEVEL", "RANGE_TOLERANCE", "FusionMethod", "register_method", "get_fuser", "available_methods", "check_pair",
    "support_weight", "fused_output",
]

#: an input voxel at or below this level (inputs in ``[0, 1]``) carries no signal; where BOTH inputs are at most
#: this, every method's output fades linearly to exactly 0 (see :func:`support_weight`)
EMPTY_LEVEL = 0.05

_REGISTRY: dict[str, Callable[..., FusionMethod]] = {}
#: the built-in methods and the module that registers each (imported on first use, so listing the names, e.g. for
#: the command line's choices, costs no torch import)
BUILTIN_METHODS: dict[str, str] = {
    "mean": "asfe3d.fusion.classic",
    "max": "asfe3d.fusion.classic",
    "wavelet": "asfe3d.fusion.classic",
    "laplacian": "asfe3d.fusion.classic",
    "highpass": "asfe3d.fusion.classic",
    "asfe": "asfe3d.fusion.learned",
}


#: how far outside ``[0, 1]`` an input value may lie (float round-off of a normalisation or a colour conversion);
#: farther is refused, not clipped
RANGE_TOLERANCE = 1e-4


def _as_input(x: Any, name: str) -> np.ndarray:
    """One input of a fusion pair as float32: real numbers only (a complex or text array is refused, not cast)."""
    if hasattr(x, "detach"):  # a torch tensor (a MetaTensor too)
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must hold real intensities in [0, 1], got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def check_pair(mri: np.ndarray, pet: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a fusion pair and return both as float32 arrays.

    Args:
        mri: MRI image, 2D ``(H, W)`` or 3D ``(X, Y, Z)``, intensities in ``[0, 1]``.
        pet: PET image on the same grid, intensities in ``[0, 1]``.

    Returns:
        ``(mri, pet)`` as float32 numpy arrays.

    Raises:
        ValueError: shapes differ, the images are not 2D/3D or are empty, they are not real numbers, they hold
            NaN/Inf, or they hold values outside ``[0, 1]`` (beyond :data:`RANGE_TOLERANCE`; each quoted).
    """
    mri = _as_input(mri, "mri")
    pet = _as_input(pet, "pet")
    if mri.shape != pet.shape:
        raise ValueError(f"mri and pet must share one grid, got shapes {mri.shape} and {pet.shape}")
    if mri.ndim not in (2, 3) or mri.size == 0:
        raise ValueError(f"fusion takes non-empty 2D or 3D images, got shape {mri.shape}")
    for name, arr in (("mri", mri), ("pet", pet)):
        if not np.isfinite(arr).all():
            raise ValueError(f"fusion inputs hold NaN or Inf values ({name}, shape {arr.shape})")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
            raise ValueError(f"{name} must hold intensities in [0, 1] (normalise it first, e.g. RobustNormalize), "
                             f"got values in [{lo:.6g}, {hi:.6g}]")
    return mri, pet


def support_weight(mri: np.ndarray, pet: np.ndarray, level: float = EMPTY_LEVEL) -> np.ndarray:
    """Where the inputs hold signal: ``clip(max(mri, pet) / level, 0, 1)``.

    1 wherever either input is at least ``level``, falling linearly to 0 where both are 0 ("empty"), so the fused
    image is exactly 0 where both inputs are 0 and has no hard edge at the border of the support.

    Args:
        mri: MRI in ``[0, 1]``, shape ``(H, W)`` or ``(X, Y, Z)``.
        pet: PET in ``[0, 1]``, same shape.
        level: input level (> 0) from which a voxel counts as fully non-empty.

    Returns:
        float32 weights in ``[0, 1]`` of the inputs' shape.

    Raises:
        ValueError: shapes differ or ``level`` is not a positive number.
    """
    if not (isinstance(level, (int, float)) and np.isfinite(level) and level > 0):
        raise ValueError(f"level must be a positive number, got {level!r}")
    mri, pet = np.asarray(mri, np.float32), np.asarray(pet, np.float32)
    if mri.shape != pet.shape:
        raise ValueError(f"mri and pet must share one grid, got shapes {mri.shape} and {pet.shape}")
    return np.clip(np.maximum(mri, pet) / np.float32(level), 0.0, 1.0).astype(np.float32)


def fused_output(fused: np.ndarray, mri: np.ndarray, pet: np.ndarray) -> np.ndarray:
    """What every fusion method returns for a raw result: ``fused`` clipped to ``[0, 1]``, times
    :func:`support_weight` of the inputs (exactly 0 where both inputs are 0). Used by :meth:`FusionMethod.__call__`
    and by the bundle's postprocessing (:class:`asfe3d.bundle.FusionOutputd`), so the two agree by construction.

    Args:
        fused: the method's (or network's) raw output, float32, the inputs' shape.
        mri: MRI in ``[0, 1]``.
        pet: PET in ``[0, 1]``, same shape.

    Returns:
        float32 in ``[0, 1]``, the inputs' shape.
    """
    return np.clip(fused, 0.0, 1.0) * support_weight(mri, pet)  # float32 times float32: no copy to convert


class FusionMethod(ABC):
    """A fusion method: ``fused = method(mri, pet)``.

    Subclasses implement :meth:`fuse_arrays`; :meth:`__call__` validates the inputs, clips the result to
    ``[0, 1]`` and multiplies it by :func:`support_weight` (no output where there is no input: voxels where both
    inputs are 0 come out exactly 0, in every method and mode).
    """

    name: str = "base"

    def __call__(self, mri: np.ndarray, pet: np.ndarray, **options: Any) -> np.ndarray:
        """Fuse two images.

        Args:
            mri: MRI in ``[0, 1]``, shape ``(H, W)`` or ``(X, Y, Z)``.
            pet: PET in ``[0, 1]`` on the same grid.
            options: this call's settings that depend on the image (e.g. ``slice_axis`` for a slice-wise network),
                passed to :meth:`fuse_arrays`; the method itself is never changed by a call.

        Returns:
            The fused image, float32 in ``[0, 1]``, same shape; 0 where both inputs are 0.
        """
        mri, pet = check_pair(mri, pet)
        fused = np.asarray(self.fuse_arrays(mri, pet, **options), dtype=np.float32)
        if fused.shape != mri.shape:  # a bug in a method, never the user's fault
            raise RuntimeError(f"{self.name} returned shape {fused.shape} for inputs of shape {mri.shape}")
        return fused_output(fused, mri, pet)

    @abstractmethod
    def fuse_arrays(self, mri: np.ndarray, pet: np.ndarray) -> np.ndarray:
        """Fuse validated float32 arrays (see :meth:`__call__`; a method that takes per-call options adds them as
        keyword arguments)."""

    def describe(self) -> dict[str, Any]:
        """Settings worth logging (name and parameters)."""
        return {"method": self.name}


def register_method(name: str) -> Callable[[Callable[..., FusionMethod]], Callable[..., FusionMethod]]:
    """Class decorator adding a fusion method to the registry under ``name``."""

    def deco(cls: Callable[..., FusionMethod]) -> Callable[..., FusionMethod]:
        _REGISTRY[name] = cls
        return cls

    return deco


def available_methods() -> list[str]:
    """Names accepted by :func:`get_fuser` (built-in and registered; imports no method module)."""
    return sorted(set(BUILTIN_METHODS) | set(_REGISTRY))


def get_fuser(name: str, **kwargs: Any) -> FusionMethod:
    """Build a fusion method by name.

    Args:
        name: one of :func:`available_methods` (``mean``, ``max``, ``wavelet``, ``laplacian``, ``asfe``).
        kwargs: the method's own settings.

    Returns:
        The fusion method.

    Raises:
        ValueError: unknown name.
    """
    if name not in _REGISTRY and name in BUILTIN_METHODS:
        import importlib

        importlib.import_module(BUILTIN_METHODS[name])  # importing the module registers its methods
    if name not in _REGISTRY:
        raise ValueError(f"unknown fusion method {name!r}; choose one of {available_methods()}")
    return _REGISTRY[name](**kwargs)
