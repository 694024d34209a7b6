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

from asfe3d.data.shared import SharedEpoch
from asfe3d.defaults import DEFAULT_SEED
from asfe3d.errors import Asfe3dInputError

__all__ = ["CSV_COLUMNS", "CSV_OPTIONAL", "PREPARED_FORMAT", "VolumePairDataset", "prepare_pair", "read_pairs_csv"]

#: version of the prepared pairs kept in a cache folder (raise it when :func:`prepare_pair` or the crops' grid change:
#: a prepared pair is found by its files' contents and the settings, with this number and the package's version)
PREPARED_FORMAT = 1

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
        Asfe3dInputError: missing/unreadable file, a missing or repeated column, a row with more (non-empty) cells
            than the header, an empty cell, a repeated subject, no rows, a file the CSV names that does not exist, a
            cell this process's locale cannot pass on as a path (:func:`asfe3d.io.checks.check_cells_locale`).
    """
    from asfe3d.io.checks import check_cells_locale

    path = Path(path).expanduser()
    if not path.is_file():
        raise Asfe3dInputError(path, "pairs CSV not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            cells = [(reader.line_num, row) for row in reader]  # the line a row starts on (quoted newlines counted)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Asfe3dInputError(path, f"not a readable CSV ({exc})") from None
    starts = [1] + [n + 1 for n, _ in cells[:-1]]
    cells = [(start, row) for start, (_, row) in zip(starts, cells)]
    header = [h.strip() for h in (cells[0][1] if cells else [])]
    repeated = sorted({h for h in header if h and header.count(h) > 1})
    if repeated:  # csv.DictReader keeps the last one: every subject would take another column's file
        raise Asfe3dInputError(path, f"column(s) {', '.join(map(repr, repeated))} appear more than once in the header")
    raw = []
    for i, row in cells[1:]:
        if not any(c.strip() for c in row):
            continue  # a blank line
        if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
            raise Asfe3dInputError(path, f"line {i}: {len(row)} cells, the header has {len(header)} (a comma too many, "
                                         "or a name with a comma that is not quoted?)")
        values = {h: (row[k].strip() if k < len(row) else "") for k, h in enumerate(header)}
        check_cells_locale(path, i, values)  # names that become paths ("does not exist" under LC_ALL=C)
        raw.append((i, values))
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise Asfe3dInputError(
            path, f"missing column(s) {', '.join(missing)} (need subject, mri, pet[, mask]; found {', '.join(header) or 'none'})"
        )
    if not raw:
        raise Asfe3dInputError(path, "no pairs (the CSV has a header but no rows)")
    rows, lines, seen = [], [], set()
    for i, row in raw:
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
        entry = {"subject": row["subject"], "mri": _p(row["mri"]), "pet": _p(row["pet"]),
                 **{k: (_p(row[k]) if row.get(k) else None) for k in CSV_OPTIONAL}}
        rows.append(entry)
        lines.append(i)
    for i, entry in zip(lines, rows):  # every file before any pair is loaded (it failed at its own pair)
        for col, value in entry.items():
            if isinstance(value, Path) and not value.exists():
                raise Asfe3dInputError(value, f"line {i}: subject {entry['subject']!r}: {col} does not exist ({path})")
    return rows


def prepare_pair(mri: str | Path, pet: str | Path, registration: str = "rigid", seed: int = 0,
                 min_overlap: float | None = None, qc: str = "warn") -> dict[str, Any]:
    """One pair through the command's preprocessing chain (:func:`asfe3d.pipeline.build_preprocessing`).

    Args:
        mri: the MRI file or DICOM folder.
        pet: the PET file or DICOM folder.
        registration: ``auto``, ``rigid``, ``affine``, ``deformable`` or ``none`` (PET already aligned: only
            resampled).
        seed: registration sampling seed.
        min_overlap: smallest fraction of the MRI head the registered PET must cover (``None``: the command's).
        qc: ``warn`` (a registration judged failed is logged, as ``asfe3d fuse`` does) or ``strict`` (only recorded
            in ``pet_registration["qc"]``: the caller refuses it).

    Returns:
        The chain's data: ``mri`` and ``pet`` ``(1, X, Y, Z)`` in ``[0, 1]`` on the MRI grid, ``image``
        ``(2, X, Y, Z)``, ``mri_head``, ``pet_fov``, ``pet_transform``, ``pet_registration`` (with its QC verdict).

    Raises:
        Asfe3dInputError: an unreadable volume, no overlap after registration, another input the chain refuses.
        ValueError: an unknown registration.
    """
    from asfe3d.pipeline import Settings, build_preprocessing

    extra = {} if min_overlap is None else {"min_overlap": min_overlap}
    chain = build_preprocessing(Settings.from_flat(registration=registration, seed=seed, qc=qc, **extra))
    try:
        return chain({"mri": mri, "pet": pet})
    except RuntimeError as exc:  # MONAI wraps what a transform raised
        cause = exc.__cause__
        if isinstance(cause, Asfe3dInputError):
            raise cause from None
        if isinstance(cause, ValueError):
            raise Asfe3dInputError(pet, f"cannot prepare the pair: {cause}") from None
        raise


class VolumePairDataset(SharedEpoch, Dataset):
    """Random crops of the user's own MRI/PET pairs, prepared as ``asfe3d fuse`` prepares them.

    Every pair is prepared once (:meth:`prepare`, or when first needed) by :func:`prepare_pair`, turned to RAS order
    and, where the mode's network runs on a coarser working grid than the MRI's (slice mode on MRIs finer than 1 mm,
    :data:`asfe3d.defaults.MIN_VOXEL_MM_BY_MODE`), brought to that grid as :class:`asfe3d.inferers.FusionInferer`
    brings it; it is kept in memory (``2 x 4`` bytes per voxel: about 100 MB for a 0.9 mm whole head). Pairs whose
    registration was judged failed are refused together, naming them (a misregistered pair would teach the network
    to fuse misplaced uptake), and so is a crop larger than a pair's volume (it would be mostly padding). An item is
    a crop of one pair centred on a random voxel of the head inside the PET's field of view, drawn from ``(seed,
    index, epoch)``, with random flips when ``flip``; in 2D an axial slice of it.

    Args:
        rows: pairs, as :func:`read_pairs_csv` returns them (``subject``, ``mri``, ``pet``).
        length: items per epoch.
        crop: crop size in voxels, ``spatial_dims`` integers >= 8 (2D: in the axial plane).
        seed: seed of the draws (the registration takes the command's own, :data:`asfe3d.defaults.DEFAULT_SEED`,
            so a pair is registered as ``asfe3d fuse`` registers it).
        registration: the PET-to-MRI registration (``auto``, the command's default; ``none``: the PET is aligned
            already, only resampled).
        spatial_dims: 3 (volumes, the volume mode's network) or 2 (axial slices, the slice mode's).
        flip: random flips along every axis.
        cache_dir: a folder where prepared pairs are kept as ``.npy`` files and read back memory-mapped (``None``:
            in memory): a cohort larger than the memory trains, DataLoader workers share the pages, and a resumed or
            repeated run skips the registration. A pair is found there by the SHA-256 of its two files (a row's
            ``mri_sha256`` / ``pet_sha256``, computed when absent) and the settings; each file is written whole
            (a temporary name, renamed).

    Raises:
        ValueError: no rows, a bad ``length``, ``crop``, ``registration`` or ``spatial_dims`` (quoted).
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], length: int, crop: Sequence[int], *, seed: int = 0,
                 registration: str = "auto", spatial_dims: int = 3, flip: bool = True,
                 cache_dir: str | Path | None = None) -> None:
        from asfe3d.defaults import REGISTRATION_CHOICES
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
        if registration not in REGISTRATION_CHOICES:
            raise ValueError(f"registration must be one of {REGISTRATION_CHOICES}, got {registration!r}")
        self.rows = [dict(r) for r in rows]
        self.length = int(length)
        self.crop = tuple(int(c) for c in crop)
        self.seed = int(seed)
        self.registration = registration
        self.spatial_dims = int(spatial_dims)
        self.flip = bool(flip)
        self.epoch = 0  # in shared memory: DataLoader workers kept across epochs see set_epoch (SharedEpoch)
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self._pairs: list[dict[str, Any] | None] = [None] * len(self.rows)
        self._mapped: dict[str, np.ndarray] = {}  # this process's memory maps of cached images (not pickled)

    def __getstate__(self) -> dict[str, Any]:
        # a DataLoader worker's copy maps the cached files itself (a pickled memory map would be a full copy)
        return {**self.__dict__, "_mapped": {}}

    def __len__(self) -> int:
        return self.length

    def prepare(self) -> None:
        """Prepare every pair now (the training does it after its cheap checks, before its first step; DataLoader
        workers then get the prepared pairs instead of preparing them again).

        Raises:
            Asfe3dInputError: every pair whose registration was judged failed, in one line (the first one's file
                and reasons, and the others' names); a pair the chain refuses; a crop larger than a pair's volume.
        """
        failed: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
        for k, row in enumerate(self.rows):
            if self._pairs[k] is None:
                entry, qc = self._made(row)
                if entry is None:
                    failed.append((row, qc))
                    continue
                self._pairs[k] = entry
        if failed:
            raise self._judged_failed(failed)

    def _judged_failed(self, failed: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> Asfe3dInputError:
        """The one-line refusal of pairs whose registration was judged failed: the first one's file and reasons,
        the others' names."""
        row, qc = failed[0]
        reasons = "; ".join(qc.get("reasons") or []) or "see asfe3d fuse --report"
        others = f"; also judged failed: {', '.join(repr(r['subject']) for r, _ in failed[1:])}" if failed[1:] else ""
        what = ("the PET as its header places it (data.registration 'none': not registered)"
                if self.registration == "none" else f"the registration (data.registration {self.registration!r})")
        fix = ("register them (data.registration auto), fix them or leave them out of the training CSV"
               if self.registration == "none" else "fix the pairs or leave them out of the training CSV")
        return Asfe3dInputError(row["pet"], f"subject {row['subject']!r}: {what} was judged failed ({reasons})"
                                            f"{others}; {fix}")

    def set_epoch(self, epoch: int) -> None:
        """Draw other crops (the pairs stay loaded); seen by this dataset's DataLoader workers too."""
        self.epoch = int(epoch)

    def pair(self, k: int) -> dict[str, Any]:
        """Pair ``k`` prepared: ``image`` ``(2, X, Y, Z)`` float32 in RAS order on the mode's working grid,
        ``spacing`` (mm, along those axes), ``centres`` (head voxels inside the PET's field of view, evenly thinned to
        at most 20 000).

        Raises:
            Asfe3dInputError: its registration judged failed, or the chain refuses it.
        """
        cached = self._pairs[k]
        if cached is None:
            row = self.rows[k]
            entry, qc = self._made(row)
            if entry is None:
                raise self._judged_failed([(row, qc)])
            cached = self._pairs[k] = entry
        return cached

    def _image(self, entry: dict[str, Any]) -> np.ndarray:
        """A prepared pair's ``(2, X, Y, Z)`` image: in memory, or its cached file mapped once per process."""
        if "image" in entry:
            return entry["image"]
        path = entry["image_file"]
        if path not in self._mapped:
            self._mapped[path] = np.load(path, mmap_mode="r")
        return self._mapped[path]

    def _key(self, row: Mapping[str, Any]) -> str:
        """The name of a pair's prepared files: its files' contents, the preparation's settings and versions."""
        import hashlib
        import json

        from asfe3d import __version__
        from asfe3d.io.record import content_digest

        what = {"format": PREPARED_FORMAT, "asfe3d": __version__, "registration": self.registration,
                "seed": DEFAULT_SEED, "spatial_dims": self.spatial_dims,
                **{k: row.get(f"{k}_sha256") or content_digest(row[k]) for k in ("mri", "pet")}}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]

    def _made(self, row: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """``(entry, qc)`` of one pair: read from the cache folder when it holds it, else prepared (and kept there);
        ``entry`` is ``None`` when its registration was judged failed (``qc`` says why)."""
        key = None if self.cache_dir is None else self._key(row)
        found = None if key is None else _read_prepared(self.cache_dir, key)
        if found is not None:
            self._check_crop(row, found)
            return found, {}
        data = self._registered(row)
        qc = (data.get("pet_registration") or {}).get("qc") or {}
        if qc.get("verdict") == "fail":
            return None, qc
        entry = self._entry(row, data)
        self._check_crop(row, entry)
        if key is not None:
            _write_prepared(self.cache_dir, key, entry, row["subject"])
            entry = _read_prepared(self.cache_dir, key) or entry
        return entry, qc

    def _registered(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The pair through the chain; a registration judged failed gives only its report (``pet_registration``).
        With ``qc="strict"`` the chain raises instead of logging the command's "outputs written anyway" line."""
        from asfe3d.errors import RegistrationRefused

        try:
            return prepare_pair(row["mri"], row["pet"], registration=self.registration, seed=DEFAULT_SEED,
                                qc="strict")
        except RegistrationRefused as exc:
            report = dict(exc.registration or {})
            qc = dict(report.get("qc") or {})
            qc["verdict"] = "fail"
            qc.setdefault("reasons", [exc.problem])
            return {"pet_registration": {**report, "qc": qc}}

    def _entry(self, row: Mapping[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        from asfe3d.defaults import MAX_VOXEL_MM_BY_MODE, MIN_VOXEL_MM_BY_MODE, WORKING_VOXEL_MM_BY_MODE
        from asfe3d.inferers.fusion import FusionInferer, from_ras_order, in_ras_order, to_working_grid
        from asfe3d.utils import voxel_sizes

        image, ornt = in_ras_order(data["image"])
        inside = from_ras_order(data["mri_head"].as_tensor().bool() & data["pet_fov"].as_tensor().bool(), ornt,
                                back=False)
        spacing = voxel_sizes(np.linalg.norm(np.asarray(image.affine, np.float64)[:3, :3], axis=0), 3)
        values = image.as_tensor().float()[None]
        mode = "slice" if self.spatial_dims == 2 else "volume"
        grid = FusionInferer(mode, min_voxel_mm=MIN_VOXEL_MM_BY_MODE[mode], max_voxel_mm=MAX_VOXEL_MM_BY_MODE[mode],
                             working_voxel_mm=WORKING_VOXEL_MM_BY_MODE[mode])
        work = grid.working_size(values.shape[2:], spacing)
        if tuple(work) != tuple(values.shape[2:]):  # the grid the mode's network runs on (FusionInferer)
            values, work_spacing = to_working_grid(values, spacing, work)
            inside = torch.nn.functional.interpolate(inside[None].float(), size=list(work), mode="nearest-exact")[0] > 0.5
            spacing = np.asarray(work_spacing, np.float64)
        img = np.ascontiguousarray(values[0].numpy(), np.float32)
        centres = np.argwhere(np.asarray(inside[0]))
        if not len(centres):
            raise Asfe3dInputError(row["mri"], f"subject {row['subject']!r}: no head voxel inside the PET's field "
                                               "of view")
        return {"image": img, "shape": img.shape, "spacing": spacing,
                "centres": centres[:: max(1, -(-len(centres) // 20000))]}

    def _check_crop(self, row: Mapping[str, Any], entry: Mapping[str, Any]) -> None:
        shape = tuple(entry["shape"][1:])
        if any(c > n for n, c in zip(shape, self.crop)):
            raise Asfe3dInputError(row["mri"], f"subject {row['subject']!r}: data.crop {list(self.crop)} is larger than "
                                               f"its volume {list(shape[:self.spatial_dims])} (RAS order, on the "
                                               "network's grid): the crops would be mostly padding; use a smaller "
                                               "data.crop")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        rng = np.random.default_rng([self.seed, int(index), self.epoch])
        entry = self.pair(int(rng.integers(len(self.rows))))
        img, pts = self._image(entry), entry["centres"]
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


def _write_prepared(folder: Path, key: str, entry: Mapping[str, Any], subject: str) -> None:
    """A prepared pair as ``<key>.npy`` (the image), ``<key>_centres.npy`` and, last, ``<key>.json``; each written
    under a temporary name and renamed whole (a run stopped midway leaves no file under a final name)."""
    import json
    import os
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    meta = {"subject": subject, "spacing": [float(v) for v in entry["spacing"]], "shape": list(entry["shape"]),
            "format": PREPARED_FORMAT}
    for name, write in ((f"{key}.npy", lambda fh: np.save(fh, entry["image"])),
                        (f"{key}_centres.npy", lambda fh: np.save(fh, entry["centres"])),
                        (f"{key}.json", lambda fh: fh.write(json.dumps(meta).encode()))):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, folder / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _read_prepared(folder: Path, key: str) -> dict[str, Any] | None:
    """A prepared pair from the cache folder (the image as its file's path, mapped where it is read), or ``None``
    when the folder does not hold it whole."""
    import json

    files = [folder / f"{key}.json", folder / f"{key}.npy", folder / f"{key}_centres.npy"]
    if not all(f.is_file() for f in files):
        return None
    try:
        meta = json.loads(files[0].read_text())
        centres = np.load(files[2])
        np.load(files[1], mmap_mode="r")  # readable, whole
    except (OSError, ValueError):
        return None
    return {"image_file": str(files[1]), "shape": tuple(meta["shape"]),
            "spacing": np.asarray(meta["spacing"], np.float64), "centres": centres}
