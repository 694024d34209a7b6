"""The Harvard medical image fusion set (HMIF, Harvard Whole Brain Atlas / AANLIB): listing, loading, splitting.

Layout (the train split of the ASFE-Fusion paper's data)::

    <root>/PET-MRI/{MRI,PET}/<case><3-digit slice>.png      PET: pseudo-colour RGB
    <root>/SPECT-MRI/{MRI,SPECT}/...                         SPECT: pseudo-colour RGB
    <root>/CT-MRI/{MRI,CT}/...                               CT: gray

256x256 8-bit PNGs with the same file name in both folders of a task. Colour images are fused in the luma channel:
the network sees ``[MRI, Y]`` where ``Y`` is the Y of YCrCb (:func:`asfe3d.fusion.colour.rgb_to_ycrcb`).

Neighbouring slices of one case are near-duplicates, so :func:`split_pairs` holds out a contiguous block of
slices at the end of every case and drops a gap of slices between the train and validation blocks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from asfe3d.errors import Asfe3dInputError
from asfe3d.fusion.colour import rgb_to_ycrcb

__all__ = ["HMIF_TASKS", "HmifPair", "list_pairs", "load_pair", "split_pairs", "HmifDataset"]

#: task folder name -> name of the folder holding the non-MRI modality
HMIF_TASKS: dict[str, str] = {"PET-MRI": "PET", "SPECT-MRI": "SPECT", "CT-MRI": "CT"}

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_NAME_RE = re.compile(r"^(?P<case>.*?)(?P<slice>\d{3})$")


@dataclass(frozen=True)
class HmifPair:
    """One registered MRI / other-modality image pair.

    Attributes:
        name: file name shared by both images (e.g. ``"25016.png"``).
        case: the case (subject) id, the file stem without its 3-digit slice number (``"25"``).
        slice_index: the slice number (``16``).
        mri_path: the MRI image.
        other_path: the PET / SPECT / CT image.
        other_kind: ``"PET"``, ``"SPECT"`` or ``"CT"``.
    """

    name: str
    case: str
    slice_index: int
    mri_path: Path
    other_path: Path
    other_kind: str


def _image_files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES}


def _parse_name(path: Path) -> tuple[str, int]:
    m = _NAME_RE.match(path.stem)
    if m is None:
        raise Asfe3dInputError(path, "file name is not <case><3-digit slice>.<ext>")
    return m.group("case"), int(m.group("slice"))


def list_pairs(root: str | Path, task: str | None = None) -> list[HmifPair]:
    """List the image pairs of one HMIF task.

    Args:
        root: a task folder (``.../PET-MRI`` holding ``MRI/`` and one of ``PET/``, ``SPECT/``, ``CT/``), or the
            HMIF root holding task folders when ``task`` is given.
        task: ``"PET-MRI"``, ``"SPECT-MRI"`` or ``"CT-MRI"``; ``None`` when ``root`` is the task folder itself.

    Returns:
        The pairs sorted by ``(case, slice_index)``.

    Raises:
        ValueError: unknown ``task``.
        Asfe3dInputError: the folder is missing, is not a task folder, holds no pairs, a file has no partner of
            the same name in the other folder, or a file name does not follow ``<case><3-digit slice>``.
    """
    if task is not None and task not in HMIF_TASKS:
        raise ValueError(f"task must be one of {sorted(HMIF_TASKS)} or None, got {task!r}")
    folder = Path(root) if task is None else Path(root) / task
    if not folder.is_dir():
        raise Asfe3dInputError(folder, "HMIF folder not found")
    mri_dir = folder / "MRI"
    if not mri_dir.is_dir():
        raise Asfe3dInputError(folder, "not an HMIF task folder (no MRI/ sub-folder)")
    if task is not None:
        kinds = [HMIF_TASKS[task]]
    else:
        kinds = [k for k in HMIF_TASKS.values() if (folder / k).is_dir()]
    kinds = [k for k in kinds if (folder / k).is_dir()]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        raise Asfe3dInputError(
            folder, f"expected exactly one of the folders PET/, SPECT/, CT/ beside MRI/, found {found}"
        )
    kind = kinds[0]
    other_dir = folder / kind
    mri_files, other_files = _image_files(mri_dir), _image_files(other_dir)
    if not mri_files and not other_files:
        raise Asfe3dInputError(folder, f"no image pairs (MRI/ and {kind}/ hold no images)")
    for name in sorted(set(mri_files) ^ set(other_files)):
        have, missing = (mri_dir, other_dir) if name in mri_files else (other_dir, mri_dir)
        raise Asfe3dInputError(have / name, f"has no partner {missing / name}")
    pairs = []
    for name in mri_files:
        case, idx = _parse_name(mri_files[name])
        pairs.append(HmifPair(name, case, idx, mri_files[name], other_files[name], kind))
    pairs.sort(key=lambda p: (p.case, p.slice_index))
    return pairs


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "RGBA", "CMYK", "YCbCr"):
                img = img.convert("RGB")
            elif img.mode == "LA":
                img = img.convert("L")
            arr = np.asarray(img)
            mode = img.mode
    except (OSError, ValueError) as exc:
        raise Asfe3dInputError(path, f"not a readable image ({exc})") from None
    if mode in ("I;16", "I"):
        scale = 65535.0
    elif mode == "F":
        scale = 1.0
    else:
        scale = 255.0
    out = arr.astype(np.float32) / scale
    if out.ndim not in (2, 3) or (out.ndim == 3 and out.shape[-1] != 3):
        raise Asfe3dInputError(path, f"expected a gray or RGB image, got array shape {arr.shape}")
    return np.clip(out, 0.0, 1.0)


def _to_gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if np.allclose(img[..., 0], img[..., 1]) and np.allclose(img[..., 0], img[..., 2]):
        return img[..., 0]
    return rgb_to_ycrcb(img)[..., 0]


def load_pair(pair: HmifPair) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read one pair as float images in ``[0, 1]``.

    Args:
        pair: a pair from :func:`list_pairs`.

    Returns:
        ``(mri01, other_y01, other_rgb01)``: the MRI ``(H, W)`` float32 (an RGB MRI is turned to its luma);
        the other modality ``(H, W)`` float32: the Y of YCrCb for a colour image, the image itself for a gray one
        (an RGB file whose three channels are equal counts as gray); and the colour image ``(H, W, 3)`` float32,
        or ``None`` for a gray one.

    Raises:
        Asfe3dInputError: an unreadable file, or the two images differ in size.
    """
    mri = _to_gray(_read_image(pair.mri_path))
    other = _read_image(pair.other_path)
    if other.ndim == 3 and not (np.allclose(other[..., 0], other[..., 1]) and np.allclose(other[..., 0], other[..., 2])):
        rgb: np.ndarray | None = other.astype(np.float32)
        y = rgb_to_ycrcb(other)[..., 0]
    else:
        rgb = None
        y = other if other.ndim == 2 else other[..., 0]
    if mri.shape != y.shape:
        raise Asfe3dInputError(pair.other_path, f"size {y.shape} differs from its MRI partner's {mri.shape}")
    return mri.astype(np.float32), np.clip(y, 0.0, 1.0).astype(np.float32), rgb


def split_pairs(
    pairs: Sequence[HmifPair], val_fraction: float = 0.2, gap: int = 2
) -> tuple[list[HmifPair], list[HmifPair]]:
    """Split pairs into train and validation parts with no near-duplicate leakage.

    Per case (pairs sorted by slice): the last ``round(val_fraction * n)`` slices (at least 1 when
    ``val_fraction > 0`` and the case has at least ``gap + 2`` slices) form the validation block; the ``gap``
    slices just before it are dropped; the rest is training. A case too small for that goes entirely to training.
    Deterministic: it depends only on the file names.

    Args:
        pairs: pairs from :func:`list_pairs`.
        val_fraction: fraction of every case's slices held out, in ``[0, 1)``.
        gap: slices dropped between the train and validation blocks (>= 0).

    Returns:
        ``(train, val)``, each sorted by ``(case, slice_index)``.

    Raises:
        ValueError: ``val_fraction`` outside ``[0, 1)`` or a negative ``gap``.
    """
    if not (0.0 <= val_fraction < 1.0):
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if int(gap) != gap or gap < 0:
        raise ValueError(f"gap must be an integer >= 0, got {gap!r}")
    by_case: dict[str, list[HmifPair]] = {}
    for p in pairs:
        by_case.setdefault(p.case, []).append(p)
    train: list[HmifPair] = []
    val: list[HmifPair] = []
    for case in sorted(by_case):
        items = sorted(by_case[case], key=lambda p: p.slice_index)
        n = len(items)
        n_val = int(round(val_fraction * n))
        if val_fraction > 0:
            n_val = max(n_val, 1)
        if n_val == 0 or n - n_val - gap < 1:
            train.extend(items)
            continue
        train.extend(items[: n - n_val - gap])
        val.extend(items[n - n_val:])
    return train, val


class HmifDataset(Dataset):
    """HMIF pairs as network inputs ``[MRI, Y]``, with optional augmentation.

    All images are read once and kept in memory as float32 ``(2, H, W)`` (0.5 MB per 256x256 pair).

    Args:
        pairs: pairs from :func:`list_pairs` / :func:`split_pairs`.
        augment: random flips (both axes), random 90-degree rotations (180 only for non-square images) and
            random crops.
        crop: crop size ``(h, w)`` (or one int) used when ``augment`` is on; ``None`` = no crop.
        seed: seed of the augmentation generator (``None`` = nondeterministic torch default generator).

    Returns (per item):
        ``{"image": (2, H, W) float32 tensor [MRI, Y] in [0, 1], "name": file name}``; with a crop, ``(2, h, w)``.

    Raises:
        ValueError: no pairs, or a crop that is not positive.
        Asfe3dInputError: unreadable images, or a crop larger than an image.
    """

    def __init__(
        self,
        pairs: Sequence[HmifPair],
        augment: bool = False,
        crop: int | Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        if len(pairs) == 0:
            raise ValueError("HmifDataset needs at least one pair, got 0")
        if crop is not None:
            crop_t = (int(crop), int(crop)) if isinstance(crop, int) else tuple(int(c) for c in crop)
            if len(crop_t) != 2 or min(crop_t) < 1:
                raise ValueError(f"crop must be a positive int or (h, w), got {crop!r}")
            self.crop: tuple[int, int] | None = crop_t  # type: ignore[assignment]
        else:
            self.crop = None
        self.pairs = list(pairs)
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.images: list[torch.Tensor] = []
        for p in self.pairs:
            mri, y, _ = load_pair(p)
            if self.crop is not None and (self.crop[0] > mri.shape[0] or self.crop[1] > mri.shape[1]):
                raise Asfe3dInputError(p.mri_path, f"image size {mri.shape} is smaller than the crop {self.crop}")
            self.images.append(torch.from_numpy(np.stack([mri, y])))

    def __len__(self) -> int:
        return len(self.pairs)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator).item())

    def __getitem__(self, index: int) -> dict[str, object]:
        img = self.images[index]
        if self.augment:
            if self.crop is not None:
                h, w = self.crop
                top = self._randint(img.shape[1] - h + 1)
                left = self._randint(img.shape[2] - w + 1)
                img = img[:, top: top + h, left: left + w]
            if self._randint(2):
                img = torch.flip(img, dims=(1,))
            if self._randint(2):
                img = torch.flip(img, dims=(2,))
            # quarter turns only keep the shape of square images, so batches of non-square ones get half turns
            k = self._randint(4) if img.shape[1] == img.shape[2] else 2 * self._randint(2)
            if k:
                img = torch.rot90(img, k, dims=(1, 2))
        return {"image": img.contiguous().clone(), "name": self.pairs[index].name}
