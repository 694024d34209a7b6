"""Dynamic PET: the frames' rigid realignment, a step of its own after loading.

:class:`~asfe3d.transforms.LoadVolume` with ``keep_frames=True`` gives a 4D image's frames as channels
``(T, X, Y, Z)``; :class:`RealignFrames` registers them rigidly (:func:`asfe3d.registration.frames.realign_frames`),
averages them and finishes the volume as the reader would (SUV factor, value checks): ``(1, X, Y, Z)``. Reading
stays in :mod:`asfe3d.io`, registration in :mod:`asfe3d.registration`; this module joins them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from asfe3d.io.volume import FRAMES_GEOMETRY_KEY, SOURCE_KEY
from asfe3d.transforms.array import derive_metatensor, ras_affine

__all__ = ["RealignFrames", "RealignFramesd", "RealignFramesD", "RealignFramesDict"]

logger = logging.getLogger("asfe3d")


class RealignFrames(Transform):
    """Realign a dynamic PET's frames rigidly and average them.

    Args:
        reference: ``"mean"`` (the frames' mean; the result keeps frame 0's pose, motions relative to it) or a
            0-based frame index.

    Raises:
        ValueError: a bad ``reference`` (quoted).
    """

    def __init__(self, reference: str | int = "mean") -> None:
        if not (reference == "mean" or (isinstance(reference, (int, np.integer)) and not isinstance(reference, bool)
                                        and reference >= 0)):
            raise ValueError(f"frame_reference must be 'mean' or a frame index >= 0, got {reference!r}.")
        self.reference = reference

    def __call__(self, img: MetaTensor) -> MetaTensor:
        """Args:
            img: ``(T, X, Y, Z)`` frames from :class:`~asfe3d.transforms.LoadVolume` (``keep_frames=True``); a
                ``(1, X, Y, Z)`` volume passes unchanged.

        Returns:
            ``(1, X, Y, Z)`` float32: the realigned frames' mean (times the SUV factor when the reader computed
            one), the provenance (``asfe3d_source``) updated with ``frames_averaged``, ``frames_realigned``
            (reference, pose, seconds, per-frame motion) and ``frame_motion_mm``.

        Raises:
            Asfe3dInputError: ``reference`` beyond the last frame, or a constant result.
        """
        import SimpleITK as sitk

        from asfe3d.errors import Asfe3dInputError
        from asfe3d.io.convert import numpy_xyz_to_sitk, sitk_to_numpy_xyz
        from asfe3d.io.volume import check_values, frame_weights
        from asfe3d.registration.frames import mean_image, realign_frames

        if not isinstance(img, MetaTensor) or img.ndim != 4:
            raise ValueError(f"img must be a (T, X, Y, Z) MetaTensor, got {type(img).__name__} "
                             f"{tuple(getattr(img, 'shape', ()))}")
        nframes = int(img.shape[0])
        if nframes == 1:
            return img
        meta = {k: v for k, v in img.meta.items() if k != "affine"}
        info = dict(meta.get(SOURCE_KEY) or {})
        path, role, reference = meta.get("filename_or_obj", ""), info.get("role", "image"), self.reference
        if reference != "mean" and int(reference) >= nframes:
            raise Asfe3dInputError(path, f"{role} frame_reference={reference} is out of range: the image has "
                                         f"{nframes} frames")
        geometry = info.pop(FRAMES_GEOMETRY_KEY, None)
        if geometry is None:  # frames read by another loader (MONAI's LoadImage): the grid is the image's affine
            from asfe3d.io import sitk_image_from_ras_affine

            grid = sitk_image_from_ras_affine(np.zeros(tuple(img.shape[1:]), np.float32), ras_affine(img))
        else:  # the grid the reader found (its LPS origin, spacing and direction, exactly)
            grid = sitk.Image([int(n) for n in img.shape[1:]], sitk.sitkFloat32)
            origin, spacing, direction = geometry
            grid.SetOrigin(tuple(origin))
            grid.SetSpacing(tuple(spacing))
            grid.SetDirection(tuple(direction))
        images = [numpy_xyz_to_sitk(arr, grid) for arr in img.detach().cpu().numpy()]  # the one axis-order swap
        start = time.perf_counter()
        weights = frame_weights(info, nframes)  # the durations' (None: the plain mean), recorded in info
        aligned, motion = realign_frames(images, reference=reference if reference == "mean" else int(reference),
                                         weights=weights)
        mean = sitk_to_numpy_xyz(mean_image(aligned, weights)).astype(np.float32, copy=False)
        info["frames_averaged"] = nframes
        info["frames_realigned"] = {"reference": reference,
                                    "pose": "frame 0" if reference == "mean" else f"frame {int(reference)}",
                                    "seconds": round(time.perf_counter() - start, 2), "motion": motion}
        info["frame_motion_mm"] = [m["mean_displacement_mm"] for m in motion]
        logger.info("%s %s: averaged %d frames%s after rigid realignment (to %s); mean head displacement per frame: "
                    "%s mm", role, path, nframes, "" if weights is None else " weighted by their durations",
                    "their mean" if reference == "mean" else f"frame {reference}",
                    ", ".join(f"{d:.2f}" for d in info["frame_motion_mm"]))
        units = info.get("pet_units")
        if isinstance(units, dict) and units.get("factor") is not None:  # the reader left the SUV factor to us
            mean = (mean * np.float32(units["factor"])).astype(np.float32, copy=False)
        mean = check_values(path, mean, role, False, info)
        meta[SOURCE_KEY] = info
        return derive_metatensor(torch.from_numpy(np.ascontiguousarray(mean)[None]), img, meta=meta)


class RealignFramesd(MapTransform):
    """Dictionary wrapper of :class:`RealignFrames`.

    Args:
        keys: the dynamic images (e.g. ``"pet"``), loaded with ``keep_frames=True``.
        reference: see :class:`RealignFrames`.
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, reference: str | int = "mean", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.realign = RealignFrames(reference)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.realign(d[key])
        return d


RealignFramesD = RealignFramesDict = RealignFramesd
