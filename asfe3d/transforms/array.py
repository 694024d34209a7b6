"""Array transforms: the pipeline's steps as MONAI transforms for users' own ``Compose``.

Images travel as MONAI ``MetaTensor`` objects, channel first ``(C, X, Y, Z)``, with their RAS ``affine`` and
``filename_or_obj`` in the meta data, exactly what ``monai.transforms.LoadImage`` produces, so these transforms mix
with MONAI's own. Each transform calls the same function as :func:`asfe3d.pipeline.fuse_pair`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Transform

from asfe3d.transforms.intensity import head_mask, robust_normalize

__all__ = ["LoadVolume", "RegisterToReference", "RobustNormalize", "Fuse", "ColourFuse", "SaveLikeReference"]


def _as_metatensor(img: Any, name: str) -> MetaTensor:
    if isinstance(img, MetaTensor):
        return img
    if isinstance(img, (torch.Tensor, np.ndarray)):
        return MetaTensor(torch.as_tensor(np.asarray(img) if isinstance(img, np.ndarray) else img))
    raise ValueError(f"{name} must be a MetaTensor, tensor or array, got {type(img).__name__}")


def _check_channel_first_3d(img: torch.Tensor, name: str, channels: int | None = None) -> None:
    if img.ndim != 4 or (channels is not None and img.shape[0] != channels):
        want = f"({channels}, X, Y, Z)" if channels else "(C, X, Y, Z)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(img.shape)}")


def _to_sitk(img: MetaTensor):
    from asfe3d.io import sitk_image_from_ras_affine

    return sitk_image_from_ras_affine(img[0].detach().cpu().numpy().astype(np.float32), img.affine.numpy())


class LoadVolume(Transform):
    """Read a NIfTI / DICOM folder / MHA / NRRD volume into a ``(1, X, Y, Z)`` MetaTensor with its RAS affine.

    Same reader as the pipeline (:func:`asfe3d.io.read_volume`): 4D PET frames averaged unless ``frame``; bad files
    raise :class:`asfe3d.errors.Asfe3dInputError` naming the file.

    Args:
        role: name used in messages (``"MRI"``, ``"PET"``).
        series_uid: DICOM SeriesInstanceUID when a folder holds several series.
        frame: 0-based frame of a 4D volume instead of the frame mean.
        allow_nonfinite: replace NaN/Inf by 0 with a warning instead of refusing.
    """

    def __init__(self, role: str = "image", series_uid: str | None = None, frame: int | None = None,
                 allow_nonfinite: bool = False) -> None:
        self.role = role
        self.series_uid = series_uid
        self.frame = frame
        self.allow_nonfinite = allow_nonfinite

    def __call__(self, path: str | Path) -> MetaTensor:
        """Args: path: the file or DICOM folder. Returns: ``(1, X, Y, Z)`` float32 MetaTensor."""
        from asfe3d.io import read_volume, volume_to_metatensor

        vol = read_volume(path, role=self.role, series_uid=self.series_uid, frame=self.frame,
                          allow_nonfinite=self.allow_nonfinite)
        return volume_to_metatensor(vol)


class RegisterToReference(Transform):
    """Register a moving volume (PET) to a reference (MRI) and resample it onto the reference grid.

    Args:
        method: ``rigid``, ``affine``, ``deformable`` or ``none`` (see :func:`asfe3d.registration.register_pet_to_mri`).
        seed: registration sampling seed.
        min_overlap: smallest fraction of the reference head the result must cover (0 disables the check).
        interpolator: ``linear``, ``nearest`` or ``bspline``.
        register_kwargs: further settings of :func:`asfe3d.registration.register_pet_to_mri` (``sampling``,
            ``iterations``...).

    After a call, ``last_result`` holds the :class:`asfe3d.registration.RegistrationResult` (the transform maps
    reference points to moving points).
    """

    def __init__(self, method: str = "rigid", seed: int = 0, min_overlap: float = 0.3,
                 interpolator: str = "linear", **register_kwargs: Any) -> None:
        from asfe3d.registration import METHODS

        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if not 0.0 <= min_overlap <= 1.0:
            raise ValueError(f"min_overlap must be in [0, 1], got {min_overlap}")
        self.method = method
        self.seed = seed
        self.min_overlap = min_overlap
        self.interpolator = interpolator
        self.register_kwargs = register_kwargs
        self.last_result = None

    def __call__(self, moving: MetaTensor, reference: MetaTensor) -> MetaTensor:
        """Args:
            moving: ``(1, X', Y', Z')`` MetaTensor with its affine (e.g. the PET).
            reference: ``(1, X, Y, Z)`` MetaTensor with its affine (e.g. the MRI).

        Returns:
            The moving image on the reference grid: ``(1, X, Y, Z)``, the reference's affine, the moving's file name.
        """
        import SimpleITK as sitk

        from asfe3d.registration import check_overlap, register_pet_to_mri, resample_to_reference

        moving, reference = _as_metatensor(moving, "moving"), _as_metatensor(reference, "reference")
        _check_channel_first_3d(moving, "moving", 1)
        _check_channel_first_3d(reference, "reference", 1)
        fixed_img, moving_img = _to_sitk(reference), _to_sitk(moving)
        result = register_pet_to_mri(fixed_img, moving_img, self.method, seed=self.seed, **self.register_kwargs)
        resampled = resample_to_reference(moving_img, fixed_img, result.transform, interpolator=self.interpolator)
        if self.min_overlap > 0:
            check_overlap(fixed_img, resampled, pet_path=moving.meta.get("filename_or_obj"),
                          min_fraction=self.min_overlap)
        self.last_result = result
        data = torch.from_numpy(sitk.GetArrayFromImage(resampled).transpose(2, 1, 0).copy())[None]
        meta = {k: v for k, v in reference.meta.items() if k != "affine"}
        meta["filename_or_obj"] = moving.meta.get("filename_or_obj", "")
        meta["registration_metric"] = float(result.metric)
        return MetaTensor(data, affine=reference.affine.clone(), meta=meta)


class RobustNormalize(Transform):
    """Map each channel to ``[0, 1]``: low end = ``lower`` percentile of the volume, high end = ``upper`` percentile
    inside a head mask (Otsu's threshold on channel 0, the MRI, unless a mask is given), then clip.

    Args:
        lower: low-end percentile, in ``[0, 100)``.
        upper: high-end percentile, in ``(lower, 100]``.
        mask_from_first_channel: compute the head mask from channel 0 and use it for every channel (MRI first).

    Raises:
        ValueError: bad percentiles.
    """

    def __init__(self, lower: float = 0.5, upper: float = 99.5, mask_from_first_channel: bool = True) -> None:
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
        self.lower = lower
        self.upper = upper
        self.mask_from_first_channel = mask_from_first_channel

    def __call__(self, img: torch.Tensor | np.ndarray, mask: np.ndarray | None = None) -> torch.Tensor:
        """Args:
            img: ``(C, *spatial)``.
            mask: optional boolean head mask ``spatial``.

        Returns:
            ``(C, *spatial)`` float32 in ``[0, 1]``, meta kept.
        """
        img = _as_metatensor(img, "img")
        arr = img.detach().cpu().numpy().astype(np.float32)
        if mask is None and self.mask_from_first_channel:
            mask = head_mask(arr[0])
        out = np.stack([robust_normalize(c, self.lower, self.upper, mask)[0] for c in arr])
        result = img.clone()
        result.set_array(torch.from_numpy(out))
        return result


class Fuse(Transform):
    """Fuse a 2-channel ``[MRI, PET]`` image with any asfe3d fusion method.

    Args:
        method: ``mean``, ``max``, ``wavelet``, ``laplacian`` or ``asfe``.
        kwargs: the method's settings (e.g. ``mode="volume"`` for asfe).
    """

    def __init__(self, method: str = "wavelet", **kwargs: Any) -> None:
        from asfe3d.fusion import get_fuser

        self.fuser = get_fuser(method, **kwargs)

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Args: img: ``(2, *spatial)`` in ``[0, 1]``. Returns: ``(1, *spatial)`` fused, meta kept."""
        img = _as_metatensor(img, "img")
        if img.shape[0] != 2 or img.ndim not in (3, 4):
            raise ValueError(f"img must be (2, *spatial) [MRI, PET] with 2 or 3 spatial dims, got {tuple(img.shape)}")
        arr = img.detach().cpu().numpy()
        fused = self.fuser(arr[0], arr[1])
        out = img[:1].clone()
        out.set_array(torch.from_numpy(fused[None]))
        return out


class ColourFuse(Transform):
    """Colour fusion: the PET through a colour map, its luma (Y of YCrCb) fused with the MRI, its chroma kept.

    Args:
        method: fusion method for the luma channel.
        colormap: matplotlib colour map for the PET.
        kwargs: the method's settings.
    """

    def __init__(self, method: str = "wavelet", colormap: str = "hot", **kwargs: Any) -> None:
        from asfe3d.fusion import apply_colormap, get_fuser

        apply_colormap(np.zeros(1), colormap)  # validates the colour-map name now
        self.fuser = get_fuser(method, **kwargs)
        self.colormap = colormap

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Args: img: ``(2, *spatial)`` in ``[0, 1]``. Returns: ``(3, *spatial)`` RGB in ``[0, 1]``, meta kept."""
        from asfe3d.fusion import apply_colormap, fuse_colour

        img = _as_metatensor(img, "img")
        if img.shape[0] != 2:
            raise ValueError(f"img must be (2, *spatial) [MRI, PET], got {tuple(img.shape)}")
        arr = img.detach().cpu().numpy()
        rgb = fuse_colour(arr[0], apply_colormap(arr[1], self.colormap), self.fuser)
        meta = {k: v for k, v in img.meta.items() if k != "affine"}
        return MetaTensor(torch.from_numpy(np.moveaxis(rgb, -1, 0).copy()), affine=img.affine, meta=meta)


class SaveLikeReference(Transform):
    """Write a ``(1, X, Y, Z)`` (scalar, float32) or ``(3, X, Y, Z)`` (RGB in ``[0, 1]``, stored as RGB24) image as
    NIfTI on the reference volume's grid with its header (shape, affine, qform/sform codes), atomically.

    Args:
        output_path: the file to write; or leave it ``None`` and give ``output_dir``.
        output_dir: folder for ``<reference stem>_<postfix>.nii.gz``.
        output_postfix: name postfix with ``output_dir``.
        overwrite: replace an existing file.

    Raises:
        ValueError: neither or both of ``output_path`` and ``output_dir``.
    """

    def __init__(self, output_path: str | Path | None = None, output_dir: str | Path | None = None,
                 output_postfix: str = "fused", overwrite: bool = False) -> None:
        if (output_path is None) == (output_dir is None):
            raise ValueError(f"give exactly one of output_path ({output_path!r}) and output_dir ({output_dir!r})")
        self.output_path = None if output_path is None else Path(output_path)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.output_postfix = output_postfix
        self.overwrite = overwrite

    def __call__(self, img: torch.Tensor | np.ndarray, reference: Any, inputs: Sequence[str | Path] = ()) -> Path:
        """Args:
            img: ``(1, X, Y, Z)`` or ``(3, X, Y, Z)`` on the reference grid.
            reference: the reference :class:`asfe3d.io.Volume`, or its file path.
            inputs: input files the output must never overwrite.

        Returns:
            The written path.
        """
        from asfe3d.io import Volume, read_volume, write_like
        from asfe3d.pipeline import _stem

        vol = reference if isinstance(reference, Volume) else read_volume(reference, role="reference")
        img = _as_metatensor(img, "img")
        if img.ndim != 4 or img.shape[0] not in (1, 3):
            raise ValueError(f"img must be (1, X, Y, Z) or (3, X, Y, Z), got {tuple(img.shape)}")
        path = self.output_path or self.output_dir / f"{_stem(vol.path)}_{self.output_postfix}.nii.gz"
        arr = img.detach().cpu().numpy()
        data = arr[0].astype(np.float32) if arr.shape[0] == 1 else np.round(
            np.clip(np.moveaxis(arr, 0, -1), 0, 1) * 255).astype(np.uint8)
        return write_like(data, vol, path, overwrite=self.overwrite, inputs=[vol.path, *inputs])
