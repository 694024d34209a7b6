"""BIDS derivatives: fuse every T1w/PET pair of a BIDS dataset and write the results as a derivative dataset.

Layout of ``OUTPUT_DIR`` (names follow the BIDS derivatives conventions; ``<p>`` is
``sub-<s>[_ses-<t>][_task-..][_acq-..][_trc-<tracer>][_rec-..][_run-..]``, the PET's own entities)::

    dataset_description.json                    DatasetType "derivative", GeneratedBy asfe3d, DatasetLinks raw
    sub-<s>.html                                the subject's report (one section per pair)
    index.html                                  every subject with a thumbnail and its flags
    sub-<s>/[ses-<t>/]pet/
        <p>_space-T1w_desc-fused_pet.nii.gz     the fused volume on the T1w grid
        <p>_space-T1w_desc-fused_pet.json       its sidecar = the run's completion record, written last
        <p>_space-T1w_desc-registered_pet.nii.gz  the PET resampled onto the T1w grid
        <p>_space-T1w_desc-registered_pet.json
        <p>_from-pet_to-T1w_mode-image_xfm.tfm  the ITK transform (maps T1w points to PET points, i.e. resamples
                                                the PET into T1w space, as fMRIPrep's ``from-X_to-Y`` files do)

The fused sidecar holds ``Sources`` (BIDS URIs ``bids:raw:<path>``, ``raw`` being linked in
``dataset_description.json``), the method and weights, the registration's numbers and verdict, timings and the
inputs' fingerprints. It is :func:`asfe3d.pipeline.fuse_pair`'s completion record, so a pair counts as done only
when that record says ``complete``, lists every output, each output exists unchanged, the inputs are unchanged
and the registered PET's sidecar exists (written before the fused one). Existing files that no asfe3d record
lists are never replaced without ``overwrite``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asfe3d.bids.layout import BidsIssue, BidsPair, find_pairs
from asfe3d.errors import Asfe3dInputError
from asfe3d.settings import OPTIONAL_OUTPUTS, Settings

__all__ = [
    "BIDS_VERSION",
    "PairResult",
    "derivative_paths",
    "write_dataset_description",
    "pair_done",
    "run_bids",
    "write_reports",
    "written_units",
]

logger = logging.getLogger("asfe3d")

#: the BIDS version the derivatives follow
BIDS_VERSION = "1.10.0"
#: the ``DatasetLinks`` name of the input dataset in ``Sources`` URIs
RAW_LINK = "raw"
_MARKER = "asfe3d"  # key marking the registered-PET sidecar as ours
#: the ``Units`` of a PET converted to body-weight SUV (``--pet-units suv``), as ``input_info``'s ``converted_to``
#: says: ``SUVbw (g/ml)``
SUV_UNITS = "g/ml"


@dataclass
class PairResult:
    """What happened to one pair (or a subject without PET) in a BIDS run.

    Attributes:
        subject: the subject label.
        session: the session label or ``None``.
        name: the pair's file-name prefix (``sub-01_ses-bl_trc-FDG``) or ``sub-<s>`` for a subject-level issue.
        status: ``ok``, ``skipped`` (already complete), ``no-pet`` or ``failed``.
        message: why it failed or was skipped.
        outputs: kind -> path of the pair's derivatives.
        seconds: time spent on the pair in this run.
        pair: the pair (``None`` for ``no-pet``).
        kept: a failed pair whose earlier complete derivatives were left in place (a rerun with other settings or
            changed inputs, refused without ``--overwrite``): its report section still shows them.
        section: the report section of a pair refused for its registration (``--qc strict``), drawn when it was
            refused (its images are not on disk): the MRI, the PET where the refused transform put it, the QC.
        qc_verdict: the registration's quality verdict (``pass``, ``warn``, ``fail``; a skipped pair's from its
            record; ``""`` when none).
        qc_reasons: its reasons, joined by ``"; "``.
        warnings: what the summary must say about the derivatives on disk although the pair did not fail (a
            dynamic PET averaged with equal weights for want of ``FrameDuration``).
    """

    subject: str
    session: str | None
    name: str
    status: str
    message: str = ""
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    pair: BidsPair | None = None
    kept: bool = False
    section: Any = None
    qc_verdict: str = ""
    qc_reasons: str = ""
    warnings: list[str] = field(default_factory=list)


def derivative_paths(pair: BidsPair, output_dir: str | Path) -> dict[str, Path]:
    """The derivative files of a pair.

    Args:
        pair: the pair.
        output_dir: the derivative dataset's root.

    Returns:
        ``fused``, ``fused_json`` (the completion record), ``registered_pet``, ``registered_json`` and
        ``transform`` paths.
    """
    folder = Path(output_dir) / pair.folder
    p = pair.prefix
    return {
        "fused": folder / f"{p}_space-T1w_desc-fused_pet.nii.gz",
        "fused_json": folder / f"{p}_space-T1w_desc-fused_pet.json",
        "registered_pet": folder / f"{p}_space-T1w_desc-registered_pet.nii.gz",
        "registered_json": folder / f"{p}_space-T1w_desc-registered_pet.json",
        "transform": folder / f"{p}_from-pet_to-T1w_mode-image_xfm.tfm",
    }


def _version() -> str:
    from asfe3d import __version__

    return __version__


def _bids_uri(path: Path, bids_dir: Path) -> str:
    """The BIDS URI of a raw file: its path in the dataset as named there, not where a link leads (a datalad or
    git-annex dataset's files are links into ``.git/annex``; a file linked to outside the dataset stopped the whole
    run with a traceback); with its folders resolved when only that lies inside (a dataset reached through a linked
    folder), else the absolute path."""
    import os

    named = Path(os.path.abspath(path))  # the folders resolved, the file's own name kept (not where it links)
    for file, root in ((named, Path(os.path.abspath(bids_dir))), (named.parent.resolve() / named.name,
                                                                 bids_dir.resolve())):
        try:
            return f"bids:{RAW_LINK}:{Path(file).relative_to(root).as_posix()}"
        except ValueError:
            continue
    return os.path.abspath(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _linked_exists(linked: Any) -> bool:
    """Whether the input dataset a description links (a ``file://`` URI, or the bare path earlier versions wrote)
    is still there. One that is gone was moved or renamed: its derivatives may follow it, since each pair's record
    compares its inputs by size and modification time, relative to the record when the folders moved together."""
    from urllib.parse import unquote, urlparse

    if not isinstance(linked, str):
        return True
    where = unquote(urlparse(linked).path) if linked.startswith("file:") else linked
    return Path(where).exists()


def _derivative_name(bids_dir: Path) -> str:
    """The derivative dataset's ``Name``: ``asfe3d MRI/PET fusion of <the input dataset's Name>``."""
    source = _read_json(bids_dir / "dataset_description.json")
    name = source.get("Name") if isinstance(source, dict) else None
    return f"asfe3d MRI/PET fusion{f' of {name}' if name else ''}"


def _not_the_moved_dataset(output_dir: Path, bids_dir: Path, old_name: Any, new_name: str) -> str:
    """Why ``bids_dir`` is not the dataset these derivatives were made from, moved (``""`` when it may be): another
    dataset ``Name``, or participants of the derivatives that it lacks."""
    if old_name != new_name:
        return f"the derivatives are {old_name!r}, this dataset would give {new_name!r}"
    missing = sorted(p.name for p in output_dir.glob("sub-*") if p.is_dir() and not (bids_dir / p.name).is_dir())
    if missing:
        return f"it has no {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
    return ""


def write_dataset_description(output_dir: str | Path, bids_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write (or check) ``OUTPUT_DIR/dataset_description.json`` of the derivative dataset.

    An existing description written by asfe3d for the same input dataset, or for one that no longer exists where
    it was and that this one may be, moved (the same ``Name``, every participant of the derivatives in it), is kept
    (and refreshed with the new link); one written by another tool, or by asfe3d for another input dataset, is
    refused unless ``overwrite``.

    Args:
        output_dir: the derivative dataset's root (created if needed).
        bids_dir: the input dataset (linked as ``DatasetLinks.raw``).
        overwrite: replace a description that is not asfe3d's or names another input dataset.

    Returns:
        The description's path.

    Raises:
        Asfe3dInputError: an existing description that may not be replaced, or an output folder that is a file.
    """
    from asfe3d.io import atomic_output

    output_dir, bids_dir = Path(output_dir), Path(bids_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise Asfe3dInputError(output_dir, "OUTPUT_DIR exists and is not a folder")
    path = output_dir / "dataset_description.json"
    raw = bids_dir.resolve().as_uri()  # a URI, as BIDS asks of DatasetLinks (file:///...)
    if path.exists() and not overwrite:
        old = _read_json(path)
        generated = old.get("GeneratedBy") if isinstance(old, dict) else None
        ours = isinstance(generated, list) and any(isinstance(g, dict) and g.get("Name") == "asfe3d"
                                                   for g in generated)
        if not ours:
            raise Asfe3dInputError(path, "exists and was not written by asfe3d; choose another OUTPUT_DIR or pass "
                                         "--overwrite")
        linked = (old.get("DatasetLinks") or {}).get(RAW_LINK)
        if linked not in (None, raw, str(bids_dir.resolve())):  # (earlier versions wrote the bare path)
            if _linked_exists(linked):
                raise Asfe3dInputError(path, f"these derivatives were made from {linked}, not {raw}; choose another "
                                             "OUTPUT_DIR or pass --overwrite")
            unlike = _not_the_moved_dataset(output_dir, bids_dir, old.get("Name"), _derivative_name(bids_dir))
            if unlike:
                raise Asfe3dInputError(path, f"these derivatives were made from {linked}, which is not there any more, "
                                             f"and {bids_dir} is not that dataset moved ({unlike}); give that dataset, "
                                             "another OUTPUT_DIR, or --overwrite")
            logger.info("%s: the input dataset moved from %s; the link is renewed", path, linked)
    description = {
        "Name": _derivative_name(bids_dir),
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "asfe3d", "Version": _version(),
                         "Description": "MRI/PET fusion on the T1w grid (PET registered to the T1w, fused); "
                                        f"command: {_command_line()}"}],
        "SourceDatasets": [{"URL": bids_dir.resolve().as_uri()}],
        "DatasetLinks": {RAW_LINK: raw},
    }
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    ignore = output_dir / ".bidsignore"
    if not ignore.exists() or ignore.read_text(encoding="utf-8", errors="replace").startswith(_BIDSIGNORE_HEAD):
        with atomic_output(ignore, overwrite=True) as tmp:
            tmp.write_text(_BIDSIGNORE, encoding="utf-8")
    return path


_BIDSIGNORE_HEAD = "# asfe3d derivatives"
#: what the (legacy) BIDS validator would flag as "not included": derivative entities and the reports
_BIDSIGNORE = (f"{_BIDSIGNORE_HEAD}: BIDS-Derivatives names the raw-data validator does not know, and the reports\n"
               "*_desc-fused_pet.*\n*_desc-registered_pet.*\n*_xfm.tfm\n*.html\n*.png\n")


def _command_line() -> str:
    """The command that is running, as a user would type it."""
    import shlex
    import sys

    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("asfe3d", "__main__.py"):
        argv[0] = "asfe3d"
    return shlex.join(argv)


def pair_done(pair: BidsPair, paths: Mapping[str, Path], settings: Settings | None = None,
              sidecar: Mapping[str, Any] | None = None) -> str | None:
    """Whether a pair's derivatives are complete: ``None`` when they are, else the reason they are not.

    Complete means: the fused sidecar is an asfe3d completion record that says ``complete``, made with settings
    that give the same outputs (``settings``: the pair's, :func:`_pair_settings`; the PET's BIDS metadata is one
    of them), its inputs are unchanged, it lists the fused volume, the registered PET and the transform (by path),
    each exists with its recorded size, and the registered PET's sidecar exists.

    Args:
        pair: the pair.
        paths: its :func:`derivative_paths`.
        settings: the pair's settings (``None``: not compared).
        sidecar: the registered PET's sidecar as this run writes it (``None``: not compared; else the one on disk
            must equal it).

    Returns:
        ``None`` or a short reason.
    """
    from asfe3d.io.record import check_record, output_changed, read_record

    reason = check_record(paths["fused_json"], {}, {"mri": pair.t1w, "pet": pair.pet},
                          None if settings is None else settings.as_dict())
    if reason is not None:
        return reason
    record = read_record(paths["fused_json"]) or {}
    recorded = {Path(e["path"]).resolve(): e for e in (record.get("outputs") or {}).values()}
    for kind in ("fused", "registered_pet", "transform"):
        p = paths[kind].resolve()
        if p not in recorded:
            return f"the {kind} output {p.name} is not listed in the completion record"
        if not p.is_file():
            return f"the {kind} output {p.name} is missing"
        if output_changed(recorded[p], p):
            return f"the {kind} output {p.name} changed since it was written"
    side = _read_json(paths["registered_json"])
    if not isinstance(side, dict) or _MARKER not in side:
        return f"the registered PET's sidecar {paths['registered_json'].name} is missing"
    if sidecar is not None and side != json.loads(json.dumps(sidecar)):
        return f"the registered PET's sidecar {paths['registered_json'].name} does not describe this run's image"
    return None


def _ours(pair: BidsPair, paths: Mapping[str, Path], settings: Settings) -> set[Path]:
    """The existing derivative files of a pair that a rerun may replace without ``--overwrite``: those an
    interrupted or unfinished asfe3d run of these settings and inputs wrote (listed in its record, or marked).

    A complete run of other settings or other inputs (another ``--method``, an edited T1w, a corrected sidecar) is
    an earlier result, not this run's: none of its files are replaced without ``--overwrite`` (as in cohort mode).
    """
    from asfe3d.io.record import check_record, read_record

    ours: set[Path] = set()
    record = read_record(paths["fused_json"])
    if record is not None and record.get("status") == "complete" and paths["fused"].exists():
        if check_record(paths["fused_json"], {}, {"mri": pair.t1w, "pet": pair.pet}, settings.as_dict()) is not None:
            return ours
    if record is not None:
        ours.add(paths["fused_json"].resolve())
        for entry in (record.get("outputs") or {}).values():
            if isinstance(entry, dict) and entry.get("path"):
                ours.add(Path(entry["path"]).resolve())
    side = _read_json(paths["registered_json"])
    if isinstance(side, dict) and _MARKER in side:
        ours.add(paths["registered_json"].resolve())
    return ours


def _own_uri(path: Path, root: Path) -> str:
    return f"bids::{path.resolve().relative_to(root.resolve()).as_posix()}"


def written_units(pair: BidsPair, settings: Settings) -> str | None:
    """The units of the registered PET as asfe3d writes it (for its sidecar's ``Units`` and ``bids.pet_units``).

    Args:
        pair: the pair (its PET sidecar's ``Units``).
        settings: the run's settings: ``inputs.pet_units == "suv"`` converts the PET to body-weight SUV.

    Returns:
        :data:`SUV_UNITS` when the PET is converted to SUV, else the PET sidecar's ``Units`` (``None`` if absent).
    """
    if settings.inputs.pet_units == "suv":
        return SUV_UNITS
    return pair.metadata.get("Units") or None


def _registered_sidecar(pair: BidsPair, paths: Mapping[str, Path], bids_dir: Path, root: Path,
                        settings: Settings) -> dict[str, Any]:
    meta = pair.metadata
    side: dict[str, Any] = {
        "Description": "PET resampled onto the T1w grid (linear interpolation) with the transform "
                       f"{paths['transform'].name}",
        "Sources": [_bids_uri(pair.pet, bids_dir), _bids_uri(pair.t1w, bids_dir),
                    _own_uri(paths["transform"], root)],
        "SpatialReference": _bids_uri(pair.t1w, bids_dir),
    }
    for key in ("TracerName", "TracerRadionuclide", "Units", "DecayCorrectionFactor", "ImageDecayCorrected"):
        if key in meta:
            side[key] = meta[key]
    side[_MARKER] = {"version": _version(), "kind": "registered_pet"}
    units = written_units(pair, settings)
    if units is not None and units != meta.get("Units"):  # converted (--pet-units suv): the voxels' units
        side["Units"] = units
        side[_MARKER]["converted_from"] = meta.get("Units")
    return side


def _fused_extra(pair: BidsPair, paths: Mapping[str, Path], bids_dir: Path, settings: Settings,
                 root: Path) -> dict[str, Any]:
    method = settings.fusion.method
    weights = settings.fusion.weights
    extra: dict[str, Any] = {
        "Description": "Fusion of the PET (registered to the T1w) with the T1w, on the T1w grid, by asfe3d",
        "Sources": [_bids_uri(pair.t1w, bids_dir), _bids_uri(pair.pet, bids_dir),
                    _own_uri(paths["registered_pet"], root), _own_uri(paths["transform"], root)],
        "SpatialReference": _bids_uri(pair.t1w, bids_dir),
        "bids": {"subject": pair.subject, "session": pair.session, **pair.entities,
                 **({"t1w_choice": pair.note} if pair.note else {})},
    }
    units = written_units(pair, settings)  # the registered PET's units, not necessarily the input's
    if units is not None:
        extra["bids"]["pet_units"] = units
        if pair.metadata.get("Units") and pair.metadata["Units"] != units:
            extra["bids"]["pet_input_units"] = pair.metadata["Units"]
    extra["FusionMethod"] = method
    if method == "asfe":
        extra["FusionWeights"] = str(weights) if weights else "shipped"
    extra["RegistrationMethod"] = settings.registration.method
    if pair.metadata.get("TracerName"):
        extra["TracerName"] = pair.metadata["TracerName"]
    return extra


def _pair_settings(pair: BidsPair, paths: dict[str, Path], settings: Settings) -> Settings:
    """A pair's settings: its PET's BIDS metadata (the sidecar with the inheritance principle applied: units, dose
    and times for ``--pet-units suv``, frame durations) and its output names."""
    return settings.replace(
        inputs={"pet_sidecar": dict(pair.metadata) if pair.metadata else None},
        outputs={"registered_pet": paths["registered_pet"], "transform": paths["transform"], "overwrite": True})


def _recorded_settings(pair_settings: Settings, overwrite: bool, reports: bool) -> dict[str, Any]:
    """A pair's settings as its record (the derivative sidecar) and report show them: what the user asked for, not
    the pair run's own ``overwrite`` (always on: the pair replaces its own files, :func:`_ours` judges whose they are)
    nor its ``report`` (the reports are the subject's pages, written when ``reports``); output paths absolute. The
    outputs themselves are the same: the record's comparison leaves these keys out
    (:func:`asfe3d.io.record.settings_difference`)."""
    recorded = pair_settings.as_dict()
    outputs = dict(recorded["outputs"])
    outputs["overwrite"], outputs["report"] = bool(overwrite), bool(reports)
    for key in ("registered_pet", "transform"):
        if isinstance(outputs.get(key), (str, Path)) and outputs[key] is not False:
            outputs[key] = str(Path(outputs[key]).resolve())
    recorded["outputs"] = outputs
    return recorded


def _complete_on_disk(paths: Mapping[str, Path]) -> bool:
    """Whether a pair's derivatives on disk are a complete asfe3d run (of whatever settings and inputs)."""
    from asfe3d.io.record import read_record

    record = read_record(paths["fused_json"])
    return (record is not None and record.get("status") == "complete"
            and all(paths[k].is_file() for k in ("fused", "registered_pet", "transform")))


def _start_early(pair: BidsPair, paths: dict[str, Path], settings: Settings) -> Any:
    """Start a pair's :class:`asfe3d.registration.early.EarlyRegistration` (``None`` when it will be skipped)."""
    from asfe3d.registration.early import EarlyRegistration

    pair_settings = _pair_settings(pair, paths, settings)
    if not settings.outputs.overwrite and pair_done(pair, paths, pair_settings) is None:
        return None
    return EarlyRegistration.from_settings(pair.t1w, pair.pet, pair_settings).start()


def _run_pair(pair: BidsPair, paths: dict[str, Path], bids_dir: Path, root: Path, settings: Settings,
              reports: bool = False) -> PairResult:
    """One pair through :func:`asfe3d.cohort.run_subject` (the resumable run-one-subject cohorts use): complete when
    :func:`pair_done`; a rerun may replace the files its record lists and its marked sidecar only when that
    record is not a complete run of other settings or inputs (:func:`_ours`). The registered PET's
    sidecar is written after the fusion's outputs and record: a run killed before it leaves the pair's earlier
    sidecar, which then does not describe this run (:func:`pair_done` compares it), or none, and the pair is redone
    (it was written first, so that a run killed during the fusion left a sidecar saying ``g/ml`` beside the earlier
    image in Bq/mL, and a plain rerun took the pair for complete)."""
    from asfe3d.cohort import SubjectRun, run_subject
    from asfe3d.io import atomic_output
    from asfe3d.io.record import read_record

    pair_settings = _pair_settings(pair, paths, settings)
    sidecar = _registered_sidecar(pair, paths, bids_dir, root, settings)
    outcome = run_subject(SubjectRun(
        pair.prefix, pair.t1w, pair.pet, paths["fused"], pair_settings, paths,
        done=lambda: pair_done(pair, paths, pair_settings, sidecar),
        ours=lambda: _ours(pair, paths, pair_settings), redo=settings.outputs.overwrite,
        record_extra={**_fused_extra(pair, paths, bids_dir, settings, root),
                      "settings": _recorded_settings(pair_settings, settings.outputs.overwrite, reports)},
        explain=lambda error: _name_sidecar(error, pair)))
    status, message = outcome.status, outcome.message
    if status == "ok":
        try:
            with atomic_output(paths["registered_json"], overwrite=True) as tmp:
                tmp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            status, message = "failed", f"{paths['registered_json']}: cannot be written ({exc.strerror or exc})"
            logger.error("%s: %s", pair.prefix, message)
    result = PairResult(pair.subject, pair.session, pair.prefix, status, message,
                        outputs=dict(paths), seconds=outcome.seconds, pair=pair,
                        kept=outcome.refused and _complete_on_disk(paths))
    if outcome.result is not None and "record" in outcome.result.outputs:
        result.outputs["fused_json"] = Path(outcome.result.outputs["record"])
    if reports and outcome.refusal is not None:
        result.section = _refusal_section(pair, outcome.refusal, pair_settings)
    # the verdict of what is on disk (fused now or skipped as complete): the summary counts and names the failed
    # ones, as cohorts do (it said "3 fused, 0 failed" beside a registration judged failed)
    record = (read_record(paths["fused_json"]) or {}) if status in ("ok", "skipped") else {}
    registration = record.get("registration") if record \
        else (outcome.refusal.registration if outcome.refusal is not None else None)
    result.warnings = _input_warnings(record)
    qc = registration.get("qc") if isinstance(registration, dict) and isinstance(registration.get("qc"), dict) else {}
    result.qc_verdict = str(qc.get("verdict") or "")
    result.qc_reasons = "; ".join(str(r) for r in qc.get("reasons") or [])
    return result


def _name_sidecar(error: Asfe3dInputError, pair: BidsPair) -> str:
    """``error``'s line with the JSON file that gave the metadata value it blames (a
    :class:`~asfe3d.errors.MetadataError`'s ``key``): the pipeline sees the PET's merged metadata and names the
    image, while the file to fix may be an inherited one (``trc-FDG_pet.json`` at the dataset's root)."""
    key = getattr(error, "key", None)
    source = pair.metadata_sources.get(key) if key is not None else None
    return f"{error} ({key} from {source})" if source is not None else str(error)


def _input_warnings(record: Mapping[str, Any]) -> list[str]:
    """What a pair's completion ``record`` says was done to its inputs that the summary must name: a dynamic PET
    whose frames were averaged with equal weights because no ``FrameDuration`` gave their lengths (BIDS requires it
    for PET; with frames of unequal length, short early frames then weigh as much as long late ones)."""
    info = (record.get("input_info") or {}).get("pet") or {}
    frames = info.get("frames")
    if isinstance(frames, int) and frames > 1 and info.get("frame_taken") is None \
            and info.get("frame_weighting") != "duration":
        return [f"the PET's {frames} frames were averaged with equal weights: its sidecar gives no FrameDuration "
                "(required by BIDS for PET); add it, or take one frame with --pet-frame"]
    return []


def _refusal_section(pair: BidsPair, refusal: Any, settings: Settings) -> Any:
    """The report section of a pair refused for its registration, drawn now (``None`` when it cannot be drawn: the
    report then shows the error alone)."""
    from asfe3d.pipeline import refusal_record
    from asfe3d.reports import refusal_section

    try:
        return refusal_section(refusal, refusal_record(refusal, pair.t1w, pair.pet, settings), title=pair.label,
                               anchor=pair.prefix)
    except Exception:  # noqa: BLE001 - a report must not fail the run
        logger.exception("%s: report section of the refusal failed", pair.prefix)
        return None


def _subject_report(subject: str, results: Sequence[PairResult], root: Path, overwrite: bool) -> Path | None:
    """Write ``OUTPUT_DIR/sub-<s>.html`` from the subject's derivatives on disk (one section per pair)."""
    from asfe3d.io.record import read_record
    from asfe3d.reports import failed_section, read_report_summary, render_pair_section, write_report

    path = root / f"sub-{subject}.html"
    if path.exists() and read_report_summary(path) is None and not overwrite:
        logger.warning("%s exists and is not an asfe3d report; not replaced (pass --overwrite)", path)
        return None
    sections = []
    for r in results:
        if r.pair is None:
            continue
        title = r.pair.label
        if r.status in ("ok", "skipped") or r.kept:  # what is on disk (a refused rerun left the earlier result)
            record = read_record(r.outputs["fused_json"]) or {}
            try:
                sections.append(render_pair_section(
                    mri_image=r.pair.t1w, pet_on_mri_image=r.outputs["registered_pet"],
                    fused_image=r.outputs["fused"], result=record, title=title, anchor=r.pair.prefix,
                ))
            except Exception as exc:  # noqa: BLE001 - a report must not fail the run
                logger.exception("%s: report section failed", r.pair.prefix)
                sections.append(failed_section(title, f"report could not be drawn: {type(exc).__name__}: {exc}",
                                               anchor=r.pair.prefix))
        elif r.section is not None:  # refused for its registration in this run: drawn then
            sections.append(r.section)
        else:
            sections.append(failed_section(title, r.message, anchor=r.pair.prefix,
                                           result={"inputs": {"mri": str(r.pair.t1w), "pet": str(r.pair.pet)}}))
    if not sections:
        return None
    t0 = time.perf_counter()
    write_report(path, sections, title=f"sub-{subject}", overwrite=True)
    logger.info("report %s (%.1f s)", path, time.perf_counter() - t0 + sum(s.seconds for s in sections))
    return path


def run_bids(
    bids_dir: str | Path,
    output_dir: str | Path,
    settings: Settings | None = None,
    *,
    participant_labels: Sequence[str] | None = None,
    session_labels: Sequence[str] | None = None,
    reports: bool = True,
    progress: bool = False,
) -> list[PairResult]:
    """Fuse every T1w/PET pair of a BIDS dataset into a BIDS derivative dataset, resumably.

    Args:
        bids_dir: the input BIDS dataset.
        output_dir: the derivative dataset's root (created).
        settings: the run's :class:`asfe3d.settings.Settings` (``None``: defaults); each pair's own paths (the
            registered PET, the transform, the PET's sidecar) are set here. ``settings.outputs.overwrite``: redo
            every pair and replace its files even when they are not asfe3d's; otherwise complete pairs are skipped
            and only asfe3d's own (incomplete) files are replaced.
        participant_labels: subjects to process (``sub-`` optional); ``None``: all.
        session_labels: sessions to process; ``None``: all.
        reports: write ``sub-<s>.html`` per subject (redrawn when one of its pairs was fused in this run or the
            report is missing) and ``index.html``.
        progress: show a progress bar over pairs.

    Returns:
        One :class:`PairResult` per pair, then one per subject/session without PET (``no-pet``) and per PET that
        could not be paired (``failed``).

    Raises:
        Asfe3dInputError: a bad dataset, label, output folder or existing description (see
            :func:`find_pairs`, :func:`write_dataset_description`).
        TypeError: ``settings`` is not a :class:`~asfe3d.settings.Settings`.
        ValueError: optional outputs asked for in ``settings`` (the runner sets each pair's outputs itself).
    """
    from tqdm.auto import tqdm

    settings = Settings() if settings is None else settings
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be an asfe3d.settings.Settings, got {type(settings).__name__}")
    asked = sorted(name for name in OPTIONAL_OUTPUTS if getattr(settings.outputs, name) is not False)
    if asked:
        raise ValueError(f"run_bids sets each pair's outputs itself; do not ask for outputs {asked}")
    overwrite = settings.outputs.overwrite
    bids_dir, root = Path(bids_dir).expanduser(), Path(output_dir).expanduser()
    _check_output_root(root, bids_dir, make=False)  # before the dataset is indexed (minutes on a large one)
    pairs, issues = find_pairs(bids_dir, participant_labels=participant_labels, session_labels=session_labels)
    _check_output_root(root, bids_dir)
    write_dataset_description(root, bids_dir, overwrite=overwrite)
    for issue in issues:
        if issue.kind == "no-pet":  # the command's summary lists these: INFO, not a second warning of each
            logger.info("%s", issue.message)
    results: list[PairResult] = []
    from asfe3d.registration.early import RegisterAhead

    # the next pair's reading and registration run beside this one's work
    with RegisterAhead(pairs, lambda p: _start_early(p, derivative_paths(p, root), settings)) as ahead:
        for k, pair in enumerate(tqdm(pairs, desc="asfe3d bids", unit="pair", disable=not progress,
                                      dynamic_ncols=True)):
            ahead.begin(k)
            results.append(_run_pair(pair, derivative_paths(pair, root), bids_dir, root, settings, reports))
    results.extend(_issue_result(i) for i in issues)
    if reports:
        write_reports(results, root, overwrite=overwrite)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "no-pet", "failed")}
    logger.info("bids: %s", ", ".join(f"{n} {s}" for s, n in counts.items()))
    return results


def _check_output_root(root: Path, bids_dir: Path, make: bool = True) -> None:
    """Refuse an output folder that would mix with the dataset (anywhere inside it but ``derivatives/``: a rerun
    would take its own outputs for inputs) or that cannot be made or written, before any work; ``make``: make it
    (else only check that it could be made and written)."""
    import os

    from asfe3d.io import check_writable_folder

    out, ds = root.resolve(), bids_dir.resolve()
    if out == ds:
        raise Asfe3dInputError(root, "OUTPUT_DIR must not be BIDS_DIR (use e.g. BIDS_DIR/derivatives/asfe3d)")
    if out.is_relative_to(ds) and not out.is_relative_to(ds / "derivatives"):
        raise Asfe3dInputError(root, "OUTPUT_DIR is inside the BIDS dataset but not under its derivatives/ folder "
                                     "(a rerun would read its own outputs as inputs); use BIDS_DIR/derivatives/asfe3d")
    if not make:
        if root.exists() and not root.is_dir():
            raise Asfe3dInputError(root, "the output folder is not a writable folder")
        try:
            check_writable_folder(root / "dataset_description.json")
        except Asfe3dInputError as exc:
            raise Asfe3dInputError(root, f"cannot create the output folder ({exc.problem})") from None
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Asfe3dInputError(root, f"cannot create the output folder ({exc.strerror or exc})") from None
    if not root.is_dir() or not os.access(root, os.W_OK | os.X_OK):
        raise Asfe3dInputError(root, "the output folder is not a writable folder")


def _issue_result(issue: BidsIssue) -> PairResult:
    name = f"sub-{issue.subject}" + (f"_ses-{issue.session}" if issue.session else "")
    if issue.kind == "no-pet":
        return PairResult(issue.subject, issue.session, name, "no-pet", issue.message)
    return PairResult(issue.subject, issue.session, name, "failed", issue.message)


def write_reports(results: Sequence[PairResult], root: str | Path, *, overwrite: bool = False) -> Path:
    """Write the subjects' reports (when needed) and ``index.html`` for a BIDS run's results.

    A subject's report is (re)drawn when any of its pairs was fused or failed in this run, or when the report is
    missing; subjects whose pairs were all skipped keep their report. The index lists this run's subjects and
    every other subject whose asfe3d report is in ``root`` (runs of other participants).

    Args:
        results: what :func:`run_bids` returned.
        root: the derivative dataset's root.
        overwrite: replace reports that are not asfe3d's.

    Returns:
        The index's path.
    """
    from asfe3d.reports import IndexEntry, write_index

    root = Path(root)
    by_subject: dict[str, list[PairResult]] = {}
    for r in results:
        by_subject.setdefault(r.subject, []).append(r)
    entries = []
    for subject, rs in sorted(by_subject.items()):
        path = root / f"sub-{subject}.html"
        with_pairs = [r for r in rs if r.pair is not None]
        if with_pairs and (not path.exists() or any(r.status == "ok" or (r.status == "failed" and not r.kept)
                                                    for r in with_pairs)):
            _subject_report(subject, with_pairs, root, overwrite)
        statuses = {r.status for r in rs}
        # pairs fused now or complete from an earlier run are both "ok" on the index
        status = "failed" if "failed" in statuses else "no-pet" if statuses == {"no-pet"} else "ok"
        messages = [r.message for r in rs if r.status in ("failed", "no-pet") and r.message]
        flags = [f"{len(with_pairs)} pairs"] if len(with_pairs) > 1 else []
        entries.append(IndexEntry(name=f"sub-{subject}", report=path if path.exists() else None, status=status,
                                  message="; ".join(messages), flags=flags))
    # subjects of earlier runs (another --participant-label, one job per participant): their reports stay listed
    from asfe3d.reports import read_report_summary

    for path in sorted(root.glob("sub-*.html")):
        label = path.stem[len("sub-"):]
        summary = None if label in by_subject else read_report_summary(path)
        if summary is None or summary.get("kind") == "index":
            continue
        status = "failed" if summary.get("status") == "failed" else "ok"
        entries.append(IndexEntry(name=path.stem, report=path, status=status,
                                  message="not in this run: its report from an earlier run"))
    description = _read_json(root / "dataset_description.json")
    name = description.get("Name") if isinstance(description, dict) and isinstance(description.get("Name"), str) \
        else f"asfe3d: {root.name}"
    return write_index(root / "index.html", entries, title=name)
