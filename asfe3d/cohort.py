"""Cohort mode: fuse many MRI/PET pairs with :func:`asfe3d.pipeline.fuse_pair`, resumably, with a summary CSV.

A cohort is a list of :class:`Subject` (read from a CSV or a folder of subject folders by :func:`read_datalist`).
:func:`run_cohort` fuses them one after the other:

- **resumable**: a subject is done (status ``skipped``) only when its completion record
  (:mod:`asfe3d.io.record`, ``<fused stem>.json``, written last by ``fuse_pair``) is complete, lists every output
  asked for, each exists with its recorded size, and the inputs are unchanged. Stale temporary files that a killed
  run left beside a subject's outputs are removed before that subject is fused; ``fuse_pair`` writes its outputs
  as a set, so a killed run never leaves a partial file under an output's name, nor loses earlier outputs.
- **never replaces what is not its own**: every output and the summary are checked against every input of the
  whole datalist (and the datalist itself); an existing file without a completion record is not replaced without
  ``overwrite`` (the subject fails with that message); two runs on one output folder are refused by a lock.
- **robust**: one subject's failure (bad input or any exception) is recorded (status ``failed`` and the message)
  and the others go on.
- **summary**: a CSV (:data:`SUMMARY_COLUMNS`) rewritten atomically after every subject, so a killed run keeps the
  rows of the subjects it finished.

Multi-process / multi-node runs (``torchrun``) shard the subjects with :mod:`asfe3d.distributed`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asfe3d.errors import Asfe3dInputError, RegistrationRefused
from asfe3d.settings import OPTIONAL_OUTPUTS, Settings

__all__ = [
    "Subject",
    "SubjectResult",
    "SUMMARY_COLUMNS",
    "STATUSES",
    "read_datalist",
    "subject_output_path",
    "check_existing_output",
    "subject_done",
    "planned_outputs",
    "plan_cohort",
    "run_subject",
    "SubjectRun",
    "SubjectOutcome",
    "lock_folder",
    "cohort_lock",
    "run_cohort",
    "default_summary_path",
    "write_summary",
    "read_summary",
    "result_from_row",
    "check_results",
]

logger = logging.getLogger("asfe3d")

#: statuses of a subject in a cohort run
STATUSES = ("ok", "skipped", "failed")
STEPS = ("load", "register", "resample", "normalise", "fuse", "save")
#: columns of the summary CSV, in order
SUMMARY_COLUMNS = (
    "subject", "status", "qc_verdict", "qc_reasons", "registration_start", "registration_metric",
    *(f"{s}_s" for s in STEPS),
    "total_s", "output", "message", "rank",
)
#: SPM's file-name prefixes (resliced, bias-corrected, warped, smoothed, their mean), allowed before the word
_SPM_PREFIX = r"(?:[rmsw]{1,3}|mean)?"
_MRI_NAME = re.compile(rf"(^|[^a-z]){_SPM_PREFIX}(mri|t1)")
_PET_NAME = re.compile(rf"(^|[^a-z]){_SPM_PREFIX}pet")
_DERIVED_NAME = re.compile(r"(^|[^a-z])(fused|pet_on_mri|rgb|preview)([^a-z]|$)")


@dataclass(frozen=True)
class Subject:
    """One MRI/PET pair of a cohort.

    Attributes:
        subject: a unique name (used for the default output name ``<subject>_fused.nii.gz``).
        mri: MRI file or DICOM folder.
        pet: PET file or DICOM folder.
        output: the fused output path; ``None`` for the cohort's default.
    """

    subject: str
    mri: Path
    pet: Path
    output: Path | None = None


@dataclass
class SubjectResult:
    """What happened to one subject of a cohort run.

    Attributes:
        subject: the subject's name.
        status: ``ok``, ``skipped`` or ``failed``.
        output: the fused output path (planned, for a failed subject).
        registration_metric: the final Mattes MI metric (NaN when not registered in this run).
        timings: seconds per step (``load`` ... ``save``) for ``ok`` subjects.
        total: seconds spent on this subject in this run (including the validity check of a skipped one).
        message: why a subject failed or was skipped, or what was notable.
        rank: the process rank that handled the subject (0 without torch.distributed).
        qc_verdict: the registration quality verdict (``pass``, ``warn``, ``fail``; a skipped subject's from its
            record; empty when not known).
        qc_reasons: the verdict's reasons.
        registration_start: where the registration started (``moments``, or the turn a multi-start search kept).
    """

    subject: str
    status: str
    output: Path | None
    registration_metric: float = float("nan")
    timings: dict[str, float] = field(default_factory=dict)
    total: float = float("nan")
    message: str = ""
    rank: int = 0
    qc_verdict: str = ""
    qc_reasons: str = ""
    registration_start: str = ""

    def as_row(self) -> dict[str, str]:
        """The result as one summary CSV row (strings keyed by :data:`SUMMARY_COLUMNS`)."""

        def num(value: float | None) -> str:
            return "" if value is None or not math.isfinite(value) else f"{value:.4f}"

        row = {
            "subject": self.subject,
            "status": self.status,
            "qc_verdict": self.qc_verdict,
            "qc_reasons": self.qc_reasons,
            "registration_start": self.registration_start,
            "registration_metric": num(self.registration_metric),
            "total_s": num(self.total),
            "output": "" if self.output is None else str(self.output),
            "message": self.message,
            "rank": str(self.rank),
        }
        for step in STEPS:
            row[f"{step}_s"] = num(self.timings.get(step))
        return row


# ----------------------------------------------------------------------------------------------- datalists


#: the longest subject name, in bytes: ``<subject>_fused_pet_on_mri.nii.gz`` and its hidden temporary name
#: (``.<stem>.tmp<pid>x<8 hex><suffix>``) must fit in a file name (255 bytes on common file systems)
MAX_SUBJECT_NAME_BYTES = 200


#: the longest file name (bytes) on common file systems, and what a hidden temporary name adds to an output's
#: (``.<stem>.tmp<pid>x<8 hex><suffix>``: the dot, ``.tmp``, a pid of up to 7 digits, ``x`` and 8 hex digits)
_NAME_MAX = 255
_TEMP_NAME_EXTRA = 21


def _has_control_character(text: str) -> bool:
    """A control character (a line break, a tab, NUL, DEL...): never in a file name a datalist gives."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _check_subject_name(name: str, where: str | Path, detail: str) -> str:
    name = name.strip()
    if not name:
        raise Asfe3dInputError(where, f"{detail}: empty subject name")
    if (name in (".", "..") or "/" in name or "\\" in name or name.startswith(".")
            or _has_control_character(name)):
        raise Asfe3dInputError(where, f"{detail}: subject name {name!r} is not a plain file name")
    size = len(name.encode("utf-8", errors="surrogateescape"))
    if size > MAX_SUBJECT_NAME_BYTES:
        raise Asfe3dInputError(where, f"{detail}: subject name {name[:20]!r}... is {size} bytes long; its output "
                                      f"file names would be too long (at most {MAX_SUBJECT_NAME_BYTES} bytes)")
    return name


def _delimiter_hint(header: str) -> str:
    """Why a CSV header holds no known column: another delimiter (empty when no guess)."""
    for sep, what in (("\t", "tab"), (";", "semicolon")):
        if sep in header and "," not in header:
            return f"; the header is {what}-separated: the datalist must be comma-separated"
    return ""


def _read_csv_datalist(path: Path) -> list[Subject]:
    from asfe3d.io.checks import check_cells_locale

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise Asfe3dInputError(path, f"cannot read the datalist CSV ({type(exc).__name__}: {exc})") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        raise Asfe3dInputError(path, "is JSON; a datalist is a CSV with the columns subject,mri,pet[,output], or a "
                                     "folder of subject folders")
    # newline="": a quoted cell keeps its line breaks (str.splitlines would also split on \x0b, \x1c, \x85...)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        raise Asfe3dInputError(path, "datalist CSV is empty (expected a header: subject,mri,pet[,output])")
    columns = [c.strip().lower() for c in reader.fieldnames]
    missing = [c for c in ("subject", "mri", "pet") if c not in columns]
    if missing:
        hint = _delimiter_hint(",".join(reader.fieldnames))
        raise Asfe3dInputError(path, f"datalist CSV lacks column(s) {missing}; found {columns} "
                                     f"(expected subject,mri,pet[,output]){hint}")
    if len(set(columns)) != len(columns):
        raise Asfe3dInputError(path, f"datalist CSV has duplicate columns: {columns}")
    base = path.parent
    subjects: list[Subject] = []
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num  # the file's line (blank lines skipped by the reader count too)
        row = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            raise Asfe3dInputError(path, f"line {line}: more cells than columns")
        if not any(row.values()):
            continue  # blank line
        # names that become paths (a traceback under LC_ALL=C)
        check_cells_locale(path, line, {c: row.get(c, "") for c in ("subject", "mri", "pet", "output")})
        name = _check_subject_name(row.get("subject", ""), path, f"line {line}")
        if name in seen:
            raise Asfe3dInputError(path, f"line {line}: duplicate subject {name!r} (first on line {seen[name]})")
        seen[name] = line
        paths: dict[str, Path] = {}
        for role in ("mri", "pet"):
            cell = row.get(role, "")
            if not cell:
                raise Asfe3dInputError(path, f"line {line}: subject {name!r} has no {role.upper()} path")
            p = _cell_path(cell, base, path, f"line {line}: subject {name!r}: {role.upper()}")
            try:
                found = p.exists()
            except OSError as exc:  # e.g. a name too long for the file system
                raise Asfe3dInputError(path, f"line {line}: subject {name!r}: {role.upper()} {p} cannot be read "
                                             f"({exc.strerror or exc})") from None
            if not found:
                raise Asfe3dInputError(path, f"line {line}: subject {name!r}: {role.upper()} {p} does not exist")
            paths[role] = p
        out_cell = row.get("output", "")
        output = _cell_path(out_cell, base, path, f"line {line}: subject {name!r}: output") if out_cell else None
        subjects.append(Subject(name, paths["mri"], paths["pet"], output))
    if not subjects:
        raise Asfe3dInputError(path, "datalist CSV has a header but no subjects")
    return subjects


def _cell_path(cell: str, base: Path, where: Path, detail: str) -> Path:
    """A datalist cell as a path (``~`` expanded, relative to the CSV's folder); control characters refused."""
    if _has_control_character(cell):
        raise Asfe3dInputError(where, f"{detail} path {cell!r} holds a control character")
    p = Path(cell).expanduser()
    return p if p.is_absolute() else base / p


def _is_volume_entry(p: Path) -> bool:
    """A subject folder's entry that may be an input: an image file (a NIfTI pair by its ``.hdr``), or a folder
    that may be a DICOM series (one holding image files, as FreeSurfer's ``mri/``, is not)."""
    from asfe3d.io.suffixes import PAIR_SUFFIXES, VOLUME_SUFFIXES

    name = p.name.lower()
    if name.startswith("."):
        return False
    if _DERIVED_NAME.search(name):
        return False  # our own outputs written beside the inputs
    if p.is_dir():
        return not any(f.name.lower().endswith(VOLUME_SUFFIXES + PAIR_SUFFIXES) for f in p.iterdir() if f.is_file())
    return name.endswith(VOLUME_SUFFIXES + PAIR_SUFFIXES[0::2])  # .hdr.gz, .hdr: the pair's header names it


def _freesurfer_hint(folder: Path, role: str) -> str:
    """For a FreeSurfer subject folder (``mri/orig.mgz``), say how to name its MRI: which of FreeSurfer's volumes
    (``orig``, ``nu``, ``T1``, ``brain``...) to fuse is the user's choice, not guessed here."""
    mri_dir = folder / "mri"
    if role != "MRI" or not (mri_dir / "orig.mgz").is_file():
        return ""
    return (f"; it looks like a FreeSurfer subject ({mri_dir}/orig.mgz): name the volume to fuse in a CSV "
            f"datalist (subject,mri,pet with e.g. {folder.name}/mri/nu.mgz) or copy it as {folder.name}/t1.mgz")


def _holds_asfe3d_outputs(folder: Path) -> bool:
    """Whether ``folder`` holds an asfe3d cohort summary or completion record (``--output-dir fused`` inside a folder
    datalist: the rerun took it for a subject without an MRI and refused the whole cohort)."""
    from asfe3d.io.record import read_record

    try:
        read_summary(folder / "summary.csv")
        return True
    except (Asfe3dInputError, OSError, UnicodeDecodeError, csv.Error):
        return any(read_record(p) is not None for p in folder.glob("*.json"))


def _read_folder_datalist(path: Path) -> list[Subject]:
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise Asfe3dInputError(path, "datalist folder holds no subject folders")
    subjects = []
    for folder in folders:
        entries = sorted(p for p in folder.iterdir() if _is_volume_entry(p))
        if not entries and _holds_asfe3d_outputs(folder):  # the cohort's own output folder beside the subjects
            logger.info("%s: asfe3d's outputs, not a subject folder; skipped", folder)
            continue
        found: dict[str, list[Path]] = {"MRI": [], "PET": []}
        for p in entries:
            name = p.name.lower()
            is_mri, is_pet = bool(_MRI_NAME.search(name)), bool(_PET_NAME.search(name))
            if is_mri and is_pet:
                raise Asfe3dInputError(p, "name matches both MRI (mri/t1) and PET (pet); rename it")
            if is_mri:
                found["MRI"].append(p)
            elif is_pet:
                found["PET"].append(p)
        for role, hint, examples in (("MRI", "'mri' or 't1'", "T1.nii, sub01_mri.nii.gz, mT1.nii"),
                                     ("PET", "'pet'", "pet.nii.gz, sub01_pet.nii, rpet.nii")):
            if not found[role]:
                raise Asfe3dInputError(folder, f"no {role} found (a volume file or DICOM folder with a name part "
                                               f"starting with {hint}, SPM's r/m/w/s prefixes allowed: {examples})"
                                               f"{_freesurfer_hint(folder, role)}")
            if len(found[role]) > 1:
                raise Asfe3dInputError(folder, f"several {role} candidates: {[p.name for p in found[role]]}")
        name = _check_subject_name(folder.name, folder, "subject folder")
        subjects.append(Subject(name, found["MRI"][0], found["PET"][0]))
    return subjects


def read_datalist(path: str | Path) -> list[Subject]:
    """Read a cohort: a CSV file or a folder of subject folders.

    CSV: a header with the columns ``subject``, ``mri``, ``pet`` and optionally ``output`` (any order, any case);
    relative paths are resolved against the CSV's folder; blank lines are ignored; an empty ``output`` cell means
    the cohort's default output. Folder: every non-hidden sub-folder is a subject (named after the folder) holding
    exactly one MRI (a volume file or DICOM folder with a name part starting with ``mri`` or ``t1``, SPM's
    ``r``/``m``/``w``/``s``/``mean`` prefixes allowed: ``mT1.nii``) and one PET (``pet``: ``rpet.nii``); asfe3d's own outputs (``*fused*``, ``*pet_on_mri*``...) and hidden files are ignored, and
    so is a sub-folder holding no input but an asfe3d summary or record (the cohort's own output folder).

    Args:
        path: the CSV file or the folder.

    Returns:
        The subjects, in file order (CSV) or sorted by folder name.

    Raises:
        Asfe3dInputError: a missing path; a CSV that is unreadable, empty, lacks a column, repeats a subject or
            names a missing file; a subject folder without exactly one MRI and one PET.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise Asfe3dInputError(path, "datalist does not exist")
    if path.is_dir():
        return _read_folder_datalist(path)
    return _read_csv_datalist(path)


# ------------------------------------------------------------------------------------------------- outputs


def subject_output_path(subject: Subject, output_dir: str | Path | None = None) -> Path:
    """Where a subject's fused volume goes.

    Args:
        subject: the subject.
        output_dir: the cohort's output folder.

    Returns:
        ``subject.output`` when set; else ``<output_dir>/<subject>_fused.nii.gz``; else the pipeline's default
        (``<mri stem>_fused.nii.gz`` beside the MRI).
    """
    from asfe3d.pipeline import default_output_path

    if subject.output is not None:
        return Path(subject.output)
    if output_dir is not None:
        return Path(output_dir) / f"{subject.subject}_fused.nii.gz"
    return default_output_path(subject.mri)


def check_existing_output(output: str | Path, mri: str | Path) -> str | None:
    """Whether an existing fused output is complete and on its MRI's grid.

    Args:
        output: the fused NIfTI.
        mri: the subject's MRI (file or DICOM folder).

    Returns:
        ``None`` when the output is valid, else the reason it is not (also when it does not exist).
    """
    import nibabel as nib
    import numpy as np

    from asfe3d.io import read_volume
    from asfe3d.io.convert import orthogonal_within_rounding

    output = Path(output)
    if not output.is_file():
        return "no output yet"
    try:
        img = nib.load(str(output))
        data = np.asanyarray(img.dataobj)  # reads the whole file: catches truncated files
    except Exception as exc:  # noqa: BLE001 - any unreadable file is "not valid"
        return f"unreadable NIfTI ({type(exc).__name__}: {exc})"
    try:
        ref = read_volume(mri, role="MRI", allow_nonfinite=True)
    except Exception as exc:  # noqa: BLE001
        return f"cannot read the MRI to check the output grid ({exc})"
    if tuple(data.shape) != tuple(ref.shape_xyz):
        return f"shape {tuple(data.shape)} differs from the MRI's {tuple(ref.shape_xyz)}"
    if not np.allclose(orthogonal_within_rounding(img.affine), ref.affine_ras, atol=1e-4):
        return "affine differs from the MRI's"
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        return "holds non-finite voxels"
    return None




def planned_outputs(output: Path, settings: Settings | None = None) -> dict[str, Path]:
    """Output kind -> path of everything one subject's run writes (the completion record included), keyed as
    :func:`asfe3d.pipeline.fuse_pair`'s record names the outputs.

    Args:
        output: the fused volume.
        settings: the run's settings (its optional outputs are ``True`` or ``False`` here; ``None``: defaults).

    Returns:
        ``{"fused": output, ..., "record": <output stem>.json}``.
    """
    from asfe3d.io.record import record_path
    from asfe3d.pipeline import RECORD_KEYS, derived_output_paths

    settings = Settings() if settings is None else settings
    planned = {"fused": output}
    for name, path in settings.outputs.paths(derived_output_paths(output)).items():
        if path is not None:
            planned[RECORD_KEYS[OPTIONAL_OUTPUTS[name]]] = path
    planned["record"] = record_path(output)
    return planned


# ------------------------------------------------------------------------------------------------- summary


def write_summary(results: Iterable[SubjectResult], path: str | Path) -> Path:
    """Write a summary CSV atomically (temporary file in the same folder, then rename).

    Args:
        results: the rows, in order.
        path: the CSV path (replaced if it exists).

    Returns:
        The path.
    """
    from asfe3d.io import atomic_output

    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(SUMMARY_COLUMNS))
            writer.writeheader()
            for result in results:
                writer.writerow(result.as_row())
    return path


def read_summary(path: str | Path) -> list[dict[str, str]]:
    """Read a summary CSV written by :func:`write_summary`.

    Args:
        path: the CSV.

    Returns:
        One dict per row.

    Raises:
        Asfe3dInputError: missing file or columns other than :data:`SUMMARY_COLUMNS`.
    """
    path = Path(path)
    if not path.is_file():
        raise Asfe3dInputError(path, "summary CSV does not exist")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != SUMMARY_COLUMNS:
            raise Asfe3dInputError(path, f"not an asfe3d summary (columns {reader.fieldnames})")
        return list(reader)


def result_from_row(row: dict[str, str]) -> SubjectResult:
    def num(text: str) -> float:
        return float(text) if text else float("nan")

    return SubjectResult(
        subject=row["subject"], status=row["status"], output=Path(row["output"]) if row["output"] else None,
        registration_metric=num(row["registration_metric"]),
        timings={s: float(row[f"{s}_s"]) for s in STEPS if row[f"{s}_s"]},
        total=num(row["total_s"]), message=row["message"], rank=int(row["rank"] or 0),
        qc_verdict=row.get("qc_verdict", ""), qc_reasons=row.get("qc_reasons", ""),
        registration_start=row.get("registration_start", ""),
    )


def check_results(results: Sequence[SubjectResult]) -> list[SubjectResult]:
    """Raise when any subject failed (for scripted runs, e.g. the MONAI bundle).

    Args:
        results: what :func:`run_cohort` returned.

    Returns:
        ``results`` unchanged when none failed.

    Raises:
        RuntimeError: listing the failed subjects and their messages.
    """
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines = "; ".join(f"{r.subject}: {r.message}" for r in failed)
        raise RuntimeError(f"{len(failed)} of {len(results)} subject(s) failed: {lines}")
    return list(results)


# --------------------------------------------------------------------------------------------------- runs


def plan_cohort(subjects: Sequence[Subject], settings: Settings | None = None, *,
                output_dir: str | Path | None = None, summary_path: str | Path | None = None,
                datalist: str | Path | None = None) -> dict[str, Path]:
    """Every subject's fused output, checked before any work: unique subjects and outputs, no output (or summary)
    on an input of any subject, on the datalist or on another subject's output, a summary that is an asfe3d one,
    and optional outputs that are switches (one path cannot serve every subject).

    Args:
        subjects: the cohort.
        settings: the run's settings (``None``: defaults).
        output_dir: see :func:`run_cohort`.
        summary_path: the summary CSV, if any.
        datalist: the datalist the subjects came from.

    Returns:
        Subject name -> fused output path, in the cohort's order.

    Raises:
        ValueError: not Subjects, duplicate subjects, or a path-valued optional output.
        Asfe3dInputError: an output or the summary would replace an input, the datalist, another subject's output
            or a file that is not an asfe3d summary.
    """
    settings = Settings() if settings is None else settings
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be an asfe3d.settings.Settings, got {type(settings).__name__}")
    for name in OPTIONAL_OUTPUTS:
        value = getattr(settings.outputs, name)
        if not isinstance(value, bool):
            raise ValueError(f"outputs.{name} must be True or False in cohort mode (one path cannot serve every "
                             f"subject), got {value!r}")
    outputs = _check_cohort(subjects, output_dir)
    _check_paths_against_inputs(subjects, outputs, settings, None if summary_path is None else Path(summary_path),
                                datalist)
    return outputs


def _check_cohort(subjects: Sequence[Subject], output_dir: str | Path | None) -> dict[str, Path]:
    if isinstance(subjects, (str, Path)) or not all(isinstance(s, Subject) for s in subjects):
        raise ValueError(f"subjects must be a list of asfe3d.cohort.Subject, got {type(subjects).__name__}")
    outputs: dict[str, Path] = {}
    owners: dict[str, str] = {}
    for s in subjects:
        if s.subject in outputs:
            raise ValueError(f"duplicate subject {s.subject!r} in the cohort")
        out = subject_output_path(s, output_dir)
        # case-folded: on a case-insensitive file system (macOS, Windows) "a.nii.gz" and "A.nii.gz" are one file
        key = str(out.expanduser().resolve()).casefold()
        if key in owners:
            same = str(subject_output_path(next(x for x in subjects if x.subject == owners[key]), output_dir)
                       .expanduser().resolve()) == str(out.expanduser().resolve())
            why = "" if same else (" (their names differ only in case: one file on a case-insensitive file system "
                                   "such as macOS's or Windows')")
            raise Asfe3dInputError(out, f"subjects {owners[key]!r} and {s.subject!r} would both write this "
                                        f"output{why}; give each its own output")
        owners[key] = s.subject
        outputs[s.subject] = out
    return outputs


def _check_paths_against_inputs(
    subjects: Sequence[Subject], outputs: dict[str, Path], settings: Settings,
    summary_path: Path | None, datalist: str | Path | None,
) -> None:
    """Refuse, before any work, an output or summary that is an input of any subject, the datalist, or another
    subject's output; and a summary that exists but is not an asfe3d summary."""
    from asfe3d.io import OUTPUT_SUFFIXES, check_output_path

    def key(p: Path) -> Path:
        return Path(p).expanduser().resolve()

    for s in subjects:  # an output column's cell with the wrong suffix: refused now, not when the subject is reached
        fused = outputs[s.subject]
        if not fused.name.lower().endswith(OUTPUT_SUFFIXES["nifti"]):
            raise Asfe3dInputError(fused, f"the fused output of subject {s.subject!r} must end in "
                                          f"{' or '.join(OUTPUT_SUFFIXES['nifti'])}")

    protected: dict[Path, str] = {}
    for s in subjects:
        protected[key(s.mri)] = f"the MRI of subject {s.subject!r}"
        protected[key(s.pet)] = f"the PET of subject {s.subject!r}"
    if datalist is not None and not Path(datalist).is_dir():  # a folder datalist's subject folders take the outputs
        protected[key(Path(datalist))] = "the datalist"
    written: dict[Path, str] = {}
    for s in subjects:
        for kind, path in planned_outputs(outputs[s.subject], settings).items():
            size = len(os.fsencode(path.name))
            if size + _TEMP_NAME_EXTRA > _NAME_MAX:
                raise Asfe3dInputError(path, f"the {kind} output of subject {s.subject!r} has a file name of {size} "
                                             f"bytes; with its temporary name's {_TEMP_NAME_EXTRA} more it exceeds the "
                                             f"file system's {_NAME_MAX}: choose a shorter output name")
            k = key(path)
            for inp, what in protected.items():
                if k == inp or inp in k.parents:
                    raise Asfe3dInputError(path, f"the {kind} output of subject {s.subject!r} would overwrite "
                                                 f"{what}; refusing")
            if k in written:
                raise Asfe3dInputError(path, f"the {kind} output of subject {s.subject!r} is also "
                                             f"{written[k]}; refusing")
            written[k] = f"the {kind} output of subject {s.subject!r}"
    if summary_path is not None:
        k = key(summary_path)
        what = protected.get(k) or written.get(k)
        if what is not None:
            raise Asfe3dInputError(summary_path, f"the summary would overwrite {what}; refusing")
        check_output_path(summary_path, overwrite=True, kind="csv")
        if k.is_file():
            with open(k, newline="", encoding="utf-8", errors="replace") as fh:
                header = next(csv.reader(fh), [])
            if tuple(header[:2]) != ("subject", "status"):
                raise Asfe3dInputError(summary_path, "exists and is not an asfe3d summary CSV; refusing to replace "
                                                     "it (choose another --summary)")


@contextlib.contextmanager
def cohort_lock(folder: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on a cohort's output folder for the duration of a run.

    The lock is ``fcntl.flock`` on ``<folder>/.asfe3d-cohort.lock``: the operating system releases it when the
    process ends, however it ends, so a killed run never leaves a stale lock.

    Args:
        folder: the output folder (created if needed).

    Yields:
        The lock file's path.

    Raises:
        Asfe3dInputError: another asfe3d run holds the lock.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".asfe3d-cohort.lock"
    try:  # O_NOFOLLOW: a lock name that is a symlink must not lead the truncation below to another file
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        why = "is a symbolic link, not asfe3d's lock file" if path.is_symlink() else f"cannot be opened ({exc.strerror})"
        raise Asfe3dInputError(path, f"the cohort lock {why}; remove it and rerun") from None
    fh = os.fdopen(fd, "r+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise Asfe3dInputError(folder, f"another asfe3d cohort run ({holder}) is writing to this folder; wait "
                                           "for it to finish") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        yield path
    finally:
        fh.close()


def lock_folder(output_dir: str | Path | None, summary_path: str | Path | None, outputs: dict[str, Path]) -> Path:
    """The folder a cohort run locks (:func:`cohort_lock`): the output folder, else the summary's, else the first
    output's."""
    if output_dir is not None:
        return Path(output_dir)
    if summary_path is not None:
        return Path(summary_path).parent
    return next(iter(outputs.values())).parent


def run_cohort(
    subjects: Sequence[Subject],
    settings: Settings | None = None,
    *,
    output_dir: str | Path | None = None,
    summary_path: str | Path | None = None,
    progress: bool = True,
    rank: int = 0,
    datalist: str | Path | None = None,
    lock: bool = True,
) -> list[SubjectResult]:
    """Fuse every subject of a cohort with :func:`asfe3d.pipeline.fuse_pair`, resumably.

    Args:
        subjects: the cohort (see :func:`read_datalist`).
        settings: the run's settings (``None``: defaults); its optional outputs are switches (per-subject default
            names). ``settings.outputs.overwrite``: redo every subject and replace its outputs (the old ones stay
            until the new set is complete); otherwise a complete subject is skipped (status ``skipped``), an
            interrupted one is redone, and one whose outputs exist without a completion record fails with that
            message.
        output_dir: where fused volumes go as ``<subject>_fused.nii.gz`` (subjects with their own ``output``
            keep it); ``None``: beside each MRI.
        summary_path: the summary CSV, rewritten atomically after each subject; ``None``: no summary file.
        progress: show a tqdm progress bar over subjects.
        rank: the process rank recorded in the summary (set by :mod:`asfe3d.distributed`).
        datalist: the datalist the subjects came from (it is protected like the inputs).
        lock: hold :func:`cohort_lock` on the output folder (``asfe3d.distributed`` takes it once per job).

    Returns:
        One :class:`SubjectResult` per subject, in the cohort's order.

    Raises:
        ValueError: bad arguments (not Subjects, duplicate subjects or outputs, path-valued optional outputs).
        Asfe3dInputError: an output or the summary would replace an input, the datalist, another subject's output or
            a file that is not an asfe3d summary; another run holds the folder's lock.
    """
    from tqdm.auto import tqdm

    if not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank must be a non-negative int, got {rank!r}")
    settings = Settings() if settings is None else settings
    outputs = plan_cohort(subjects, settings, output_dir=output_dir, summary_path=summary_path, datalist=datalist)
    summary_path = None if summary_path is None else Path(summary_path)
    if not outputs:
        return []
    held = cohort_lock(lock_folder(output_dir, summary_path, outputs)) if lock else contextlib.nullcontext()
    results: list[SubjectResult] = []
    with held:
        bar = tqdm(subjects, desc="asfe3d cohort" + (f" (rank {rank})" if rank else ""), unit="subject",
                   disable=not progress, dynamic_ncols=True)
        counts = {s: 0 for s in STATUSES}
        from asfe3d.registration.early import RegisterAhead

        # the next subject's reading and registration run beside this one's work
        with RegisterAhead(subjects, lambda s: _start_early(s, outputs[s.subject], settings)) as ahead:
            for k, subject in enumerate(bar):
                ahead.begin(k)
                output = outputs[subject.subject]
                outcome = run_subject(_cohort_run(subject, output, settings))
                result = _subject_result(subject, output, outcome, rank)
                results.append(result)
                counts[result.status] += 1
                bar.set_postfix(counts, refresh=False)
                if summary_path is not None:
                    write_summary(results, summary_path)
        bar.close()
    logger.info("cohort: %d ok, %d skipped, %d failed", counts["ok"], counts["skipped"], counts["failed"])
    return results


def _start_early(subject: Subject, output: Path, settings: Settings) -> Any:
    """Start a subject's :class:`asfe3d.registration.early.EarlyRegistration` (``None`` when it will be skipped
    as complete)."""
    from asfe3d.registration.early import EarlyRegistration

    if not settings.outputs.overwrite and subject_done(subject, output, settings) is None:
        return None
    return EarlyRegistration.from_settings(subject.mri, subject.pet, settings).start()


def subject_done(subject: Subject, output: Path, settings: Settings | None = None,
                 weights: str | os.PathLike | None = None) -> str | None:
    """Whether a subject's run is complete: ``None`` when it is, else why not (see :func:`check_record`);
    ``weights``: the weight file this run would load, compared by content with the recorded one (the settings'
    own is, when ``settings`` are given)."""
    from asfe3d.io.record import check_record

    planned = planned_outputs(output, settings)
    record = planned.pop("record")
    inputs = {"mri": subject.mri, "pet": subject.pet, **({"weights": weights} if weights is not None else {})}
    return check_record(record, planned, inputs, None if settings is None else settings.as_dict())


@dataclass(frozen=True)
class SubjectRun:
    """One subject's resumable run, for :func:`run_subject` (cohorts and BIDS runs describe theirs this way).

    Attributes:
        name: the subject's name in messages (``sub01``, ``sub-01_ses-bl_trc-FDG``).
        mri: the MRI (or T1w).
        pet: the PET.
        output: the fused volume.
        settings: the settings :func:`~asfe3d.pipeline.fuse_pair` gets.
        planned: every file the run writes (checked for foreign files, cleared of stale temporaries).
        done: ``None`` when the subject's run is complete, else why not.
        ours: the existing planned files that an earlier asfe3d run of this subject wrote (replaceable).
        redo: redo a complete subject and replace files that are not ours (``--overwrite``).
        record_extra: more fields for the completion record.
        prepare: called just before fusing; returns what undoes it if the fusion fails.
        explain: an input error's line, with what only the caller knows (a BIDS run: which JSON file gave the
            metadata value it blames).
    """

    name: str
    mri: Path
    pet: Path
    output: Path
    settings: Settings
    planned: Mapping[str, Path]
    done: Callable[[], str | None]
    ours: Callable[[], set[Path]]
    redo: bool = False
    record_extra: Mapping[str, Any] | None = None
    prepare: Callable[[], Callable[[], None]] | None = None
    explain: Callable[[Asfe3dInputError], str] | None = None


@dataclass
class SubjectOutcome:
    """What :func:`run_subject` did: ``status`` (``ok``, ``skipped``, ``failed``), a ``message``, the
    :class:`~asfe3d.pipeline.FuseResult` when fused, the ``seconds`` spent, whether it failed because files in
    the way were not replaced (``refused``: nothing was run or written), and the error of a run refused for its
    registration (``refusal``, a :class:`~asfe3d.errors.RegistrationRefused` under ``--qc strict``: its QC verdict
    and reasons go to the summary, its images to a report)."""

    status: str
    message: str = ""
    result: Any = None
    seconds: float = 0.0
    refused: bool = False
    refusal: RegistrationRefused | None = None


def run_subject(run: SubjectRun) -> SubjectOutcome:
    """Fuse one subject, resumably: skipped when its run is complete (unless ``run.redo``), refused when a file that
    no asfe3d run of this subject wrote is in the way, stale temporaries cleared, and every failure caught into the
    outcome (one subject never stops a cohort or a BIDS run).

    Args:
        run: the subject's run.

    Returns:
        The :class:`SubjectOutcome`.
    """
    from asfe3d.io import stale_temporaries
    from asfe3d.io.record import redo_hint
    from asfe3d.pipeline import fuse_pair

    t0 = time.perf_counter()
    message = ""
    if not run.redo:
        try:
            reason = run.done()
            if reason is None:
                return SubjectOutcome("skipped", "complete run recorded; not redone", seconds=time.perf_counter() - t0)
            ours = run.ours()
            foreign = [p for p in run.planned.values() if p.exists() and p.resolve() not in ours]
        except OSError as exc:  # its outputs cannot even be looked at (a name too long, no permission): this subject
            text = f"{exc.filename or run.output}: cannot check the earlier outputs ({exc.strerror or exc})"
            logger.error("%s: %s", run.name, text)
            return SubjectOutcome("failed", text, seconds=time.perf_counter() - t0)
        if foreign:
            names = ", ".join(p.name for p in foreign)
            msg = (f"{foreign[0].parent}: {names} exist(s) but are not a complete output of this run of "
                   f"{run.name} ({reason}); not replaced ({redo_hint(run.output, foreign)})")
            logger.error("%s: %s", run.name, msg)
            return SubjectOutcome("failed", msg, seconds=time.perf_counter() - t0, refused=True)
        if any(p.exists() for p in run.planned.values()):
            message = f"redone: {reason}"
            logger.info("%s: %s", run.name, message)
    for stale in (t for p in run.planned.values() for t in stale_temporaries(p)):
        logger.warning("%s: removing %s left by an interrupted run", run.name, stale)
        stale.unlink(missing_ok=True)
    undo = None
    _stop_if_asked()
    try:
        undo = run.prepare() if run.prepare is not None else None
        res = fuse_pair(run.mri, run.pet, run.output, run.settings,
                        record_extra=None if run.record_extra is None else dict(run.record_extra))
    except BaseException as exc:
        if undo is not None:
            undo()
        if not isinstance(exc, Exception):
            raise
        _stop_if_asked()  # a signal's exception that came back as SimpleITK's RuntimeError: not this subject's failure
        if isinstance(exc, Asfe3dInputError):
            text = str(exc) if run.explain is None else run.explain(exc)
            logger.error("%s: %s", run.name, text)
        else:  # one subject's failure must not stop the others
            logger.exception("%s: failed", run.name)
            text = f"{type(exc).__name__}: {exc}"
        text = " ".join(text.split())  # one line in the summary and the report, whatever the library said
        return SubjectOutcome("failed", text, seconds=time.perf_counter() - t0,
                              refusal=exc if isinstance(exc, RegistrationRefused) else None)
    return SubjectOutcome("ok", message, res, time.perf_counter() - t0)


def _stop_if_asked() -> None:
    """Stop the cohort (``KeyboardInterrupt``) when a signal asked for it (:mod:`asfe3d.utils.stop`): its exception
    came back from SimpleITK as a ``RuntimeError`` (one subject "failed", the others went on) or was discarded."""
    from asfe3d.utils.stop import stop_requested

    if stop_requested() is not None:
        raise KeyboardInterrupt


def _cohort_run(subject: Subject, output: Path, settings: Settings) -> SubjectRun:
    """A cohort subject's :class:`SubjectRun`: complete when its record lists every output asked for with the
    inputs unchanged; its own files are those a single run may replace (:func:`asfe3d.io.record.replaceable_outputs`:
    an interrupted run's, a record whose fused volume was deleted)."""
    from asfe3d.io.record import replaceable_outputs

    planned = planned_outputs(output, settings)

    def ours() -> set[Path]:  # as a single run's: a pending record's outputs and record, a record whose fused is gone
        return {p.resolve() for p in replaceable_outputs(output)}

    return SubjectRun(subject.subject, subject.mri, subject.pet, output, settings, planned,
                      done=lambda: subject_done(subject, output, settings), ours=ours,
                      redo=settings.outputs.overwrite)


def _recorded_registration(output: Path) -> dict[str, Any]:
    """The registration a complete subject's record holds (its QC verdict, reasons, metric, start), ``{}`` when it
    cannot be read: a skipped subject's summary row keeps what its run found."""
    from asfe3d.io.record import read_record

    try:
        record = read_record(planned_outputs(output)["record"]) or {}
    except (OSError, ValueError):
        return {}
    registration = record.get("registration")
    return registration if isinstance(registration, dict) else {}


def _subject_result(subject: Subject, output: Path, outcome: SubjectOutcome, rank: int) -> SubjectResult:
    output = output.absolute()  # every row names its output as a path that works from anywhere, ok or not
    if outcome.status == "skipped" or outcome.refusal is not None:
        # what the recorded run found about the registration stays in the summary; a refused one's is this run's
        registration = _recorded_registration(output) if outcome.refusal is None else outcome.refusal.registration
        qc = registration.get("qc") if isinstance(registration.get("qc"), dict) else {}
        reasons = "; ".join(str(r) for r in qc.get("reasons") or [])
        message = outcome.message
        if qc.get("verdict") == "fail" and outcome.status == "skipped":
            message += f"; registration judged failed: {reasons}"
        metric = registration.get("metric")
        return SubjectResult(subject.subject, outcome.status, output, message=message, rank=rank,
                             total=outcome.seconds,
                             qc_verdict=str(qc.get("verdict") or ""), qc_reasons=reasons,
                             registration_metric=float(metric) if isinstance(metric, (int, float)) else math.nan,
                             registration_start=str(registration.get("start") or ""))
    if outcome.status != "ok":
        return SubjectResult(subject.subject, outcome.status, output, message=outcome.message, rank=rank,
                             total=outcome.seconds)
    res, message = outcome.result, outcome.message
    qc = res.registration.get("qc") or {}
    reasons = "; ".join(qc.get("reasons", []))
    if qc.get("verdict") == "fail":
        message = (message + "; " if message else "") + f"registration judged failed: {reasons}"
    from asfe3d.reports.text import anatomical_name

    blank = blank_note(res.fusion, anatomical_name({"input_info": res.inputs}))
    if blank:
        message = (message + "; " if message else "") + blank
    timings = {k: float(res.timings[k]) for k in STEPS if k in res.timings}
    total = float(res.timings.get("total", math.nan))
    early = res.registration.get("early_seconds") if res.registration.get("early") else None
    if isinstance(early, dict):  # read, masked and registered early in a thread: that work is the subject's too
        for name, step in (("read", "load"), ("head_mask", "load"), ("register", "register")):
            seconds = early.get(name)
            if isinstance(seconds, (int, float)) and math.isfinite(seconds):
                timings[step] = timings.get(step, 0.0) + float(seconds)
                total += float(seconds)
    return SubjectResult(
        subject.subject, "ok", Path(res.output).absolute(), registration_metric=float(res.registration.get("metric", math.nan)),
        timings=timings, total=total, message=message, rank=rank,
        qc_verdict=str(qc.get("verdict", "")), qc_reasons=reasons,
        registration_start=str(res.registration.get("start") or ""),
    )


def blank_note(fusion: Any, anat: str = "MRI") -> str:
    """``"fused image: blank (0) in N% of the MRI head, beyond the PET's field of view (no PET there)"`` when at
    least 0.5 % of the head lies beyond it (the record's ``fusion.outside_pet_fov``), else ``""``; the value in
    brackets is the one written there (the record's ``value``: the MRI window's low end, 0 for most T1s)."""
    outside = (fusion or {}).get("outside_pet_fov") if isinstance(fusion, dict) else None
    fraction = outside.get("head_fraction", 0) if isinstance(outside, dict) else 0
    if not isinstance(fraction, (int, float)) or fraction < 0.005:
        return ""
    from asfe3d.reports.text import blank_words

    return (f"fused image: {blank_words(outside, anat)} in {fraction:.0%} of the {anat} head, beyond the PET's "
            "field of view (no PET there)")


def default_summary_path(datalist: str | Path, output_dir: str | Path | None) -> Path:
    """``<output_dir>/summary.csv``, else ``asfe3d_summary.csv`` beside the CSV datalist (inside a datalist folder)."""
    if output_dir is not None:
        return Path(output_dir) / "summary.csv"
    datalist = Path(datalist)
    return (datalist if datalist.is_dir() else datalist.parent) / "asfe3d_summary.csv"


