"""Pairs of the user's own volumes, for evaluation and for training (fine-tuning on one's own data).

A pairs CSV names one MRI and one PET per subject (``subject, mri, pet``, optional columns for evaluation: see
:func:`read_pairs_csv`). :func:`prepare_pair` prepares one pair with the command's own chain
(:func:`asfe3d.pipeline.build_preprocessing`: read, head mask, the PET registered onto the MRI and judged, both
normalised to ``[0, 1]`` in the head, the PET extended beyond its field of view), so that a network is trained and
scored on exactly what ``asfe3d fuse`` gives it. :class:`VolumePairDataset` crops such pairs at random where the
head is, in RAS order as the networks run (:class:`asfe3d.inferers.FusionInferer` turns every input so): the
training data of ``data.source: pairs`` (``docs/training.md``). The loss is unsupervised, so no fused target is
needed.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from asfe3d.defaults import DEFAULT_SEED
from asfe3d.errors import Asfe3dInputError

__all__ = ["CSV_COLUMNS", "CSV_OPTIONAL", "VolumePairDataset", "prepare_pair", "read_pairs_csv"]

#: the columns every pairs CSV has
CSV_COLUMNS = ("subject", "mri", "pet")
#: optional columns (evaluation: a mask, a PET with a known defect and its region, a brain mask)
CSV_OPTIONAL = ("mask", "pet_defect", "defect", "brain")


def read_pairs_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a CSV of volume pairs with columns ``subject, mri, pet`` and optionally ``mask``, ``pet_defect``,
    ``defect`` (a PET with a known focal lowering of uptake, on the PET's grid, and the lowered region on the MRI's
    grid: the defect transfer is then measured with them instead of an automatically placed defect) and ``brain``.

    Relative paths are taken relative to the CSV's folder.

    Args:
        path: the CSV file.

    Returns:
        One dict per row: ``subject`` (str), ``mri``, ``pet`` and the optional columns (Paths, or ``None``).

    Raises:
        Asfe3dInputError: missing/unreadable file, a missing column, an empty cell, a repeated subject, no rows, a
            file the CSV names that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise Asfe3dInputError(path, "pairs CSV not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            raw = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Asfe3dInputError(path, f"not a readable CSV ({exc})") from None
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise Asfe3dInputError(
            path, f"missing column(s) {', '.join(missing)} (need subject, mri, pet[, mask]; found {', '.join(header) or 'none'})"
        )
    if not raw:
        raise Asfe3dInputError(path, "no pairs (the CSV has a header but no rows)")
    rows, seen = [], set()
    for i, row in enumerate(raw, start=2):
        for col in CSV_COLUMNS:
            if not row.get(col):
                raise Asfe3dInputError(path, f"line {i}: empty {col!r}")
        if row["subject"] in seen:
            raise Asfe3dInputError(path, f"line {i}: subject {row['subject']!r} appears twice")
        seen.add(row["subject"])
        if "/" in row["subject"] or "\\" in row["subject"]:
            raise Asfe3dInputError(path, f"line {i}: subject {row['subject']!r} must not contain a path separator")

        def _p(value: str) -> Path:
            p = Path(value).expanduser()
            return p if p.is_absolute() else path.parent / p

        if bool(row.get("pet_defect")) != bool(row.get("defect")):
            raise Asfe3dInputError(path, f"line {i}: pet_defect and defect go together (give both or neither)")
        rows.append({"subject": row["subject"], "mri": _p(row["mri"]), "pet": _p(row["pet"]),
                     **{k: (_p(row[k]) if row.get(k) else None) for k in CSV_OPTIONAL}})
    for i, entry in enumerate(rows, start=2):  # every file before any pair is loaded (it failed at its own pair)
        for col, value in entry.items():
            if isinstance(value, Path) and not value.exists():
                raise Asfe3dInputError(value, f"line {i}: subject {entry['subject']!r}: {col} does not exist ({path})")
    return rows


def prepare_pair(mri: str | Path, pet: str | Path, registration: str = "rigid", seed: int = 0,
                 min_overlap: float | None = None) -> dict[str, Any]:
    """One pair through the command's preprocessing chain (:func:`asfe3d.pipeline.build_preprocessing`).

    Args:
        mri: the MRI file or DICOM folder.
        pet: the PET file or DICOM folder.
        registration: ``rigid``, ``affine``, ``deformable`` or ``none`` (PET already aligned: only resampled).
        seed: registration sampling seed.
        min_overlap: smallest fraction of the MRI head the registered PET must cover (``None``: the command's).

    Returns:
        The chain's data: ``mri`` and ``pet`` ``(1, X, Y, Z)`` in ``[0, 1]`` on the MRI grid, ``image``
        ``(2, X, Y, Z)``, ``mri_head``, ``pet_fov``, ``pet_transform``, ``pet_registration`` (with its QC verdict).

    Raises:
        Asfe3dInputError: an unreadable volume, no overlap after registration, another input the chain refuses.
        ValueError: an unknown registration.
    """
    from asfe3d.pipeline import Settings, build_preprocessing

    extra = {} if min_overlap is None else {"min_overlap": min_overlap}
    chain = build_preprocessing(Settings.from_flat(registration=registration, seed=seed, **extra))
    try:
        return chain({"mri": mri, "pet": pet})
    except RuntimeError as exc:  # MONAI wraps what a transform raised
        cause = exc.__cause__
        if isinstance(cause, Asfe3dInputError):
            raise cause from None
        if isinstance(cause, ValueError):
            raise Asfe3dInputError(pet, f"cannot prepare the pair: {cause}") from None
        raise


class VolumePairDataset(Dataset):
    """Random crops of the user's own MRI/PET pairs, prepared as ``asfe3d fuse`` prepares them.

    Every pair is prepared once, when first needed (:func:`prepare_pair`; a registration judged failed is refused,
    naming the subject: a misregistered pair would teach the network to fuse misplaced uptake), turned to RAS
    order and kept in memory (``2 x 4`` bytes per MRI voxel: about 100 MB for a 0.9 mm whole head). An item is a crop
    of one pair centred on a random voxel of the head inside the PET's field of view, drawn from ``(seed, index,
    epoch)``, with random flips when ``flip``; in 2D an axial slice of it.

    Args:
        rows: pairs, as :func:`read_pairs_csv` returns them (``subject``, ``mri``, ``pet``).
        length: items per epoch.
        crop: crop size in voxels, ``spatial_dims`` integers >= 8 (2D: in the axial plane).
        seed: seed of the draws (the registration takes the command's own, :data:`asfe3d.defaults.DEFAULT_SEED`,
            so a pair is registered as ``asfe3d fuse`` registers it).
        registration: the PET-to-MRI registration (``none``: the PET is aligned already, only resampled).
        spatial_dims: 3 (volumes) or 2 (axial slices, for the slice-wise network).
        flip: random flips along every axis.

    Raises:
        ValueError: no rows, a bad ``length``, ``crop``, ``registration`` or ``spatial_dims`` (quoted).
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], length: int, crop: Sequence[int], *, seed: int = 0,
                 registration: str = "rigid", spatial_dims: int = 3, flip: bool = True) -> None:
        from asfe3d.defaults import REGISTRATION_METHODS
        from asfe3d.utils import is_int

        if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if not rows:
            raise ValueError("rows must name at least one pair, got none")
        if not (is_int(length) and length >= 1):
            raise ValueError(f"length must be an integer >= 1, got {length!r}")
        if (isinstance(crop, (str, bytes)) or not hasattr(crop, "__len__") or len(crop) != spatial_dims
                or not all(is_int(c) and c >= 8 for c in crop)):
            raise ValueError(f"crop must be {spatial_dims} integers >= 8, got {crop!r}")
        if registration not in REGISTRATION_METHODS:
            raise ValueError(f"registration must be one of {REGISTRATION_METHODS}, got {registration!r}")
        self.rows = [dict(r) for r in rows]
        self.length = int(length)
        self.crop = tuple(int(c) for c in crop)
        self.seed = int(seed)
        self.registration = registration
        self.spatial_dims = int(spatial_dims)
        self.flip = bool(flip)
        self.epoch = 0
        self._pairs: list[dict[str, Any] | None] = [None] * len(self.rows)

    def __len__(self) -> int:
        return self.length

    def prepare(self) -> None:
        """Prepare every pair now (the training does it before its first epoch: a pair the chain refuses stops the
        run before any step, and DataLoader workers get the prepared pairs instead of preparing them again)."""
        for k in range(len(self.rows)):
            self.pair(k)

    def set_epoch(self, epoch: int) -> None:
        """Draw other crops (the pairs stay loaded)."""
        self.epoch = int(epoch)

    def pair(self, k: int) -> dict[str, Any]:
        """Pair ``k`` prepared: ``image`` ``(2, X, Y, Z)`` float32 in RAS order, ``spacing`` (mm, along those axes),
        ``centres`` (head voxels inside the PET's field of view, evenly thinned to at most 20 000)."""
        cached = self._pairs[k]
        if cached is None:
            cached = self._pairs[k] = self._prepare(self.rows[k])
        return cached

    def _prepare(self, row: Mapping[str, Any]) -> dict[str, Any]:
        from asfe3d.inferers.fusion import from_ras_order, in_ras_order
        from asfe3d.utils import voxel_sizes

        data = prepare_pair(row["mri"], row["pet"], registration=self.registration, seed=DEFAULT_SEED)
        qc = (data.get("pet_registration") or {}).get("qc") or {}
        if qc.get("verdict") == "fail":
            reasons = "; ".join(qc.get("reasons") or []) or "see its report"
            raise Asfe3dInputError(row["pet"], f"subject {row['subject']!r}: the registration was judged failed "
                                               f"({reasons}); fix it or leave the pair out of the training CSV")
        image, ornt = in_ras_order(data["image"])
        inside = from_ras_order(data["mri_head"].as_tensor().bool() & data["pet_fov"].as_tensor().bool(), ornt,
                                back=False)
        spacing = voxel_sizes(np.linalg.norm(np.asarray(image.affine, np.float64)[:3, :3], axis=0), 3)
        centres = np.argwhere(np.asarray(inside[0]))
        if not len(centres):
            raise Asfe3dInputError(row["mri"], f"subject {row['subject']!r}: no head voxel inside the PET's field "
                                               "of view")
        return {"image": np.ascontiguousarray(image.as_tensor().numpy(), np.float32), "spacing": spacing,
                "centres": centres[:: max(1, -(-len(centres) // 20000))]}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        rng = np.random.default_rng([self.seed, int(index), self.epoch])
        entry = self.pair(int(rng.integers(len(self.rows))))
        img, pts = entry["image"], entry["centres"]
        crop = np.asarray(self.crop + ((1,) if self.spatial_dims == 2 else ()))
        start = pts[int(rng.integers(len(pts)))] - crop // 2
        out = np.zeros((2, *crop), np.float32)
        lo, hi = np.maximum(start, 0), np.minimum(start + crop, img.shape[1:])
        src = (slice(None), *(slice(int(a), int(b)) for a, b in zip(lo, hi)))
        dst = (slice(None), *(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start)))
        out[dst] = img[src]  # 0 beyond the volume
        if self.spatial_dims == 2:
            out = out[..., 0]  # the axial plane (RAS order: the third axis is inferior-superior)
        if self.flip:
            for ax in range(self.spatial_dims):
                if rng.random() < 0.5:
                    out = np.flip(out, axis=ax + 1)
        spacing = torch.tensor(entry["spacing"][: self.spatial_dims], dtype=torch.float32)
        return {"image": torch.from_numpy(np.ascontiguousarray(out)), "spacing": spacing}
