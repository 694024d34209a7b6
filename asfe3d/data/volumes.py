"""3D training pairs simulated on the fly from the MNI152 template (no data download).

Per dataset (per worker, built lazily on the first item): the MNI T1 at ``resolution`` mm and a *bank* of
``bank_size`` simulated PET volumes on the T1 grid. Each bank entry draws a tracer (FDG- or amyloid-like uptake),
a PSF FWHM in ``fwhm_range``, a noise level in ``noise_range``, an activity scale, and a small random rigid motion
(``motion_deg`` / ``motion_mm``, a registration residual) applied before resampling onto the MRI grid. Both volumes
are normalised to ``[0, 1]`` with :func:`asfe3d.transforms.intensity.robust_normalize` inside the brain mask.

Per item (cheap): one bank entry, a random crop centred on a brain voxel, random flips along each axis, and a
random PET contrast change (gamma in ``gamma_range``). Items are deterministic functions of ``(seed, index,
epoch)``; :meth:`SimulatedPairDataset.set_epoch` changes the draws between epochs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from asfe3d.data.shared import SharedEpoch

__all__ = ["SimulatedPairDataset", "check_length_crop"]


def check_length_crop(length: int, crop: int | Sequence[int]) -> tuple[int, int, int]:
    """Check a dataset's ``length`` (an integer >= 1) and 3D ``crop`` (one positive int or three).

    Returns:
        The crop as three ints.

    Raises:
        ValueError: quoting the bad value.
    """
    if int(length) != length or length < 1:
        raise ValueError(f"length must be an integer >= 1, got {length!r}")
    crop_t = (int(crop),) * 3 if isinstance(crop, (int, np.integer)) else tuple(int(c) for c in crop)
    if len(crop_t) != 3 or min(crop_t) < 1:
        raise ValueError(f"crop must be a positive int or three positive ints, got {crop!r}")
    return crop_t  # type: ignore[return-value]


def _check_range(name: str, value: Sequence[float], low: float) -> tuple[float, float]:
    if len(value) != 2 or not all(math.isfinite(v) for v in value) or value[0] > value[1] or value[0] < low:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max, got {value!r}")
    return float(value[0]), float(value[1])


class SimulatedPairDataset(SharedEpoch, Dataset):
    """Random ``[MRI, PET]`` crops from the MNI T1 and simulated PET volumes.

    Args:
        length: number of items per epoch (>= 1).
        crop: crop size ``(X, Y, Z)`` in voxels (or one int); clipped to nothing: it must fit in the volume.
        seed: seed of every random draw (bank and items).
        resolution: MNI voxel size in mm (``>= 1``; 1 = native 197x233x189; 2 = 98x116x94).
        bank_size: simulated PET volumes generated once per worker (>= 1).
        tracers: tracers drawn from (``"fdg"``, ``"amyloid"``).
        fwhm_range: PSF FWHM range in mm.
        noise_range: relative noise range (see :func:`asfe3d.data.simulate.simulate_pet_array`).
        motion_deg: largest residual rotation per axis, degrees.
        motion_mm: largest residual translation per axis, mm.
        gamma_range: PET contrast gamma range applied per item (``(1, 1)`` = none).
        flip: random flips along each axis.

    Returns (per item):
        ``{"image": (2, X, Y, Z) float32 tensor [MRI, PET] in [0, 1]}`` in nibabel axis order.

    Raises:
        ValueError: bad arguments (quoted), or a crop larger than the volume.
    """

    def __init__(
        self,
        length: int,
        crop: int | Sequence[int] = (64, 64, 64),
        seed: int = 0,
        resolution: float = 1.5,
        bank_size: int = 8,
        tracers: Sequence[str] = ("fdg", "amyloid"),
        fwhm_range: Sequence[float] = (4.0, 8.0),
        noise_range: Sequence[float] = (0.02, 0.08),
        motion_deg: float = 2.0,
        motion_mm: float = 2.0,
        gamma_range: Sequence[float] = (0.8, 1.25),
        flip: bool = True,
    ) -> None:
        crop_t = check_length_crop(length, crop)
        if int(bank_size) != bank_size or bank_size < 1:
            raise ValueError(f"bank_size must be an integer >= 1, got {bank_size!r}")
        if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution >= 1):
            raise ValueError(f"resolution must be a number >= 1 (mm), got {resolution!r}")
        bad = [t for t in tracers if t not in ("fdg", "amyloid")]
        if not tracers or bad:
            raise ValueError(f"tracers must be a non-empty subset of ('fdg', 'amyloid'), got {tracers!r}")
        for name, val in (("motion_deg", motion_deg), ("motion_mm", motion_mm)):
            if not (math.isfinite(val) and val >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
        self.length = int(length)
        self.crop = crop_t
        self.seed = int(seed)
        self.resolution = float(resolution)
        self.bank_size = int(bank_size)
        self.tracers = tuple(tracers)
        self.fwhm_range = _check_range("fwhm_range", fwhm_range, 0.0)
        self.noise_range = _check_range("noise_range", noise_range, 0.0)
        self.gamma_range = _check_range("gamma_range", gamma_range, 1e-3)
        self.motion_deg = float(motion_deg)
        self.motion_mm = float(motion_mm)
        self.flip = bool(flip)
        self.epoch = 0
        self._mri: np.ndarray | None = None
        self._bank: list[np.ndarray] = []
        self._centres: np.ndarray | None = None

    def set_epoch(self, epoch: int) -> None:
        """Change the per-item random draws (crops, flips, gamma, bank entry) for a new epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _build(self) -> None:
        """Load the template and simulate the PET bank (the expensive part, once per worker)."""
        import SimpleITK as sitk

        from asfe3d.data.simulate import apply_rigid_motion, brain_mask, load_mni, random_rigid, simulate_pet_array
        from asfe3d.io.convert import sitk_to_numpy_xyz
        from asfe3d.transforms.intensity import robust_normalize

        t1, gm, wm = load_mni(self.resolution)
        mask_img = brain_mask(gm, wm)
        # the dataset returns nibabel order (x, y, z); the PETs are simulated on SimpleITK's (z, y, x) arrays
        t1_a = sitk_to_numpy_xyz(t1)
        gm_a = sitk.GetArrayFromImage(gm)
        wm_a = sitk.GetArrayFromImage(wm)
        mask = sitk_to_numpy_xyz(mask_img) > 0
        if any(c > s for c, s in zip(self.crop, t1_a.shape)):
            raise ValueError(f"crop {self.crop} is larger than the MNI volume {t1_a.shape} at {self.resolution} mm")
        self._mri = robust_normalize(t1_a, mask=mask)[0]
        centre = t1.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in t1.GetSize()])
        rng = np.random.default_rng([self.seed, 7919])
        bank = []
        for _ in range(self.bank_size):
            tracer = self.tracers[int(rng.integers(len(self.tracers)))]
            pet = simulate_pet_array(
                gm_a, wm_a, spacing=self.resolution, tracer=tracer, fwhm_mm=float(rng.uniform(*self.fwhm_range)),
                noise=float(rng.uniform(*self.noise_range)), rng=rng,
            )
            img = sitk.GetImageFromArray(pet)
            img.CopyInformation(t1)
            if self.motion_deg > 0 or self.motion_mm > 0:
                img = apply_rigid_motion(img, random_rigid(rng, self.motion_deg, self.motion_mm, centre))
            bank.append(robust_normalize(sitk_to_numpy_xyz(img), mask=mask)[0])
        self._bank = bank
        # crop centres: brain voxels, kept where the whole crop fits in the volume
        idx = np.argwhere(mask)
        half = np.asarray(self.crop) // 2
        hi = np.asarray(t1_a.shape) - (np.asarray(self.crop) - half)
        idx = np.clip(idx, half, hi)
        self._centres = idx[:: max(1, len(idx) // 20000)]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        if self._mri is None:
            self._build()
        assert self._mri is not None and self._centres is not None
        rng = np.random.default_rng([self.seed, int(index), self.epoch])
        pet = self._bank[int(rng.integers(len(self._bank)))]
        c = self._centres[int(rng.integers(len(self._centres)))]
        start = c - np.asarray(self.crop) // 2
        sl = tuple(slice(int(s), int(s) + n) for s, n in zip(start, self.crop))
        pair = np.stack([self._mri[sl], pet[sl]])
        gamma = float(rng.uniform(*self.gamma_range))
        if gamma != 1.0:
            pair[1] = pair[1] ** gamma
        if self.flip:
            for ax in range(3):
                if rng.random() < 0.5:
                    pair = np.flip(pair, axis=ax + 1)
        return {"image": torch.from_numpy(np.ascontiguousarray(pair, dtype=np.float32))}
