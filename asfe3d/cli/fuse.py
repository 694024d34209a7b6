"""``asfe3d fuse``: one MRI/PET pair, or a cohort with ``--datalist`` (resumable, summary CSV, torchrun-aware)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from asfe3d.cli.options import (
    add_fusion_options,
    add_input_options,
    add_output_options,
    set_threads,
    settings_from_args,
    show_progress,
)

__all__ = ["add_parser", "run", "print_result", "cohort_settings"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``fuse`` sub-command."""
    p = sub.add_parser(
        "fuse", help="fuse an MRI and a PET volume into one volume on the MRI grid",
        description="Register the PET onto the MRI, check the registration, fuse, and write the fused volume on "
                    "the MRI's grid (same shape, affine and header codes). Inputs: NIfTI, MHA/NRRD, FreeSurfer MGZ or DICOM "
                    "series folders.",
    )
    p.add_argument("mri", nargs="?", type=Path, help="MRI file or DICOM folder (the geometry reference)")
    p.add_argument("pet", nargs="?", type=Path, help="PET file or DICOM folder (4D: frames averaged)")
    p.add_argument("-o", "--output", type=Path, help="fused NIfTI (default: <mri stem>_fused.nii.gz beside the MRI)")
    p.add_argument("--datalist", type=Path,
                   help="cohort mode: a CSV (columns subject, mri, pet[, output]) or a folder of subject folders")
    p.add_argument("--output-dir", type=Path, help="cohort mode: where fused volumes go (default: beside each MRI)")
    p.add_argument("--summary", type=Path, help="cohort mode: summary CSV (default: <output-dir>/summary.csv)")
    p.add_argument("--series", help="DICOM SeriesInstanceUID to take from whichever input folder holds it")
    p.add_argument("--mri-series", help="DICOM SeriesInstanceUID for the MRI folder")
    p.add_argument("--pet-series", help="DICOM SeriesInstanceUID for the PET folder")
    add_input_options(p)
    add_output_options(p)
    add_fusion_options(p)
    p.set_defaults(func=run, before_imports=start_early)


def _series_for(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """Route ``--series`` to the input folder that holds that series."""
    mri_series, pet_series = args.mri_series, args.pet_series
    if args.series:
        import SimpleITK as sitk

        from asfe3d.errors import Asfe3dInputError

        holders = [name for name, path in (("mri", args.mri), ("pet", args.pet))
                   if path is not None and path.is_dir()
                   and args.series in (sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)) or ())]
        if not holders:
            raise Asfe3dInputError(None, f"no input DICOM folder holds series {args.series!r}")
        mri_series = args.series if "mri" in holders else mri_series
        pet_series = args.series if "pet" in holders else pet_series
    return mri_series, pet_series


def print_result(result: Any, stream: Any = None) -> None:
    """Print what one :func:`asfe3d.pipeline.fuse_pair` run did (outputs, inputs, registration and QC, times)."""
    from asfe3d.cohort import blank_note
    from asfe3d.reports.text import anatomical_name, registration_outcome

    stream = stream or sys.stdout
    t = result.timings
    print(f"fused volume: {result.output}", file=stream)
    for kind, path in result.outputs.items():
        if kind != "fused":
            print(f"  {kind}: {path}", file=stream)
    for role in ("mri", "pet"):
        info = result.inputs.get(role, {})
        frames = info.get("frames")
        if frames and frames > 1:
            durations = info.get("frame_durations_s")
            weighted = (f" weighted by their durations ({', '.join(f'{d:g}' for d in durations)} s)"
                        if info.get("frame_weighting") == "duration" and durations else
                        " (equal weights: frame durations not known)")
            how = (f"frame {info['frame_taken']}" if info.get("frame_taken") is not None
                   else f"the mean of {frames} frames{weighted}")
            print(f"{role.upper()}: 4D input with {frames} frames, used {how}", file=stream)
        if info.get("nonfinite_repaired"):
            print(f"{role.upper()}: replaced {info['nonfinite_repaired']} NaN/Inf voxels by 0", file=stream)
        realigned = info.get("frames_realigned")
        if realigned and info.get("frame_motion_mm") is not None:
            motion = ", ".join(f"{m:.1f}" for m in info["frame_motion_mm"])
            print(f"{role.upper()}: frames realigned before averaging; head motion per frame (mm): {motion}",
                  file=stream)
        if info.get("dicom_resampled"):
            what = info["dicom_resampled"]
            reasons = "; ".join(what.get("reasons", [])) if isinstance(what, dict) else str(what)
            print(f"{role.upper()}: DICOM slices resampled onto a regular grid ({reasons})", file=stream)
        units = info.get("pet_units")
        if isinstance(units, dict) and units.get("factor") is not None:
            print(f"{role.upper()}: converted to SUV (body weight): x {units['factor']:.4g} "
                  f"(weight {units.get('weight_kg')} kg, dose {units.get('dose_bq')} Bq, decay correction "
                  f"{units.get('decay_correction')})", file=stream)
    reg = result.registration
    anat = anatomical_name({"input_info": result.inputs})  # a PET/CT study's anatomical input is a CT
    # the overlap check's own measure (PET above 10 % of its 99th percentile), not the QC's head_covered
    fov = ((reg.get("qc") or {}).get("numbers") or {}).get("head_in_pet_fov")
    outside = ((result.fusion or {}).get("outside_pet_fov") or {}).get("head_fraction")
    if isinstance(outside, (int, float)):  # on the MRI's own grid, as the blank share below (the QC's is coarser)
        fov = 1.0 - outside
    fov_text = f"; the PET's field of view holds {fov:.0%} of the head" if isinstance(fov, (int, float)) else ""
    # the overlap check's measure: a brain PET's uptake spans about half a whole head with its scalp and neck
    print(f"registration: {registration_outcome(reg)}; PET signal (above 10 % of its 99th percentile) spans "
          f"{result.overlap:.0%} of the {anat} head{fov_text}", file=stream)
    if reg.get("start") not in (None, "moments", "header"):
        print(f"registration: the first result failed its check; a multi-start search kept the start "
              f"'{reg['start']}' (check the PET header's orientation)", file=stream)
    qc = reg.get("qc")
    if qc:
        reasons = "; ".join(qc.get("reasons", [])) or "all checks passed"
        print(f"registration QC: {qc['verdict']} ({reasons})", file=stream)
    blank = blank_note(result.fusion, anat)
    if blank:
        print(blank, file=stream)
    steps = ", ".join(f"{k} {t[k]:.1f} s" for k in ("load", "register", "resample", "normalise", "fuse", "save")
                      if k in t)
    early = reg.get("early_seconds") if reg.get("early") else None
    ahead = ("; read and registered early, in a thread beside start-up: "
             + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in early.items())) if early else ""
    print(f"time: {steps}; total {t['total']:.1f} s{ahead}; peak memory {result.peak_memory_mb:.0f} MB",
          file=stream)


def _pair_settings(args: argparse.Namespace, mri_series: str | None, pet_series: str | None) -> Any:
    """The settings of a single run."""
    return settings_from_args(args).replace(inputs={"mri_series": mri_series, "pet_series": pet_series})


def start_early(args: argparse.Namespace) -> None:
    """Before torch and MONAI are imported: start reading, masking and registering the pair (or a one-process
    cohort's first subject) in a thread (:class:`asfe3d.registration.early.EarlyRegistration`, kept as
    ``args.early``; :func:`asfe3d.pipeline.fuse_pair` claims it). Nothing is checked or refused here: :func:`run`
    does that as always, and its chain uses the thread's work only where it is exactly its own. Not with
    ``--series`` (which must look into DICOM folders first) nor for a cohort shared by several processes."""
    import os

    args.early = None
    if args.series or (args.datalist is None and (args.mri is None or args.pet is None)):
        return
    weights = getattr(args, "weights", None)
    if weights is not None and not os.path.isfile(weights):
        return  # run() refuses it at once; a registration underway would only load the machine meanwhile
    try:
        from asfe3d.registration.early import EarlyRegistration

        if args.datalist is None:
            mri, pet, settings = args.mri, args.pet, _pair_settings(args, args.mri_series, args.pet_series)
            if not _output_free(args):
                return  # run() refuses it; a registration underway would only keep that refusal waiting
        else:
            from asfe3d.cohort import read_datalist

            subjects = read_datalist(args.datalist)
            if not subjects or int(os.environ.get("WORLD_SIZE") or 1) > 1:
                return
            mri, pet, settings = subjects[0].mri, subjects[0].pet, cohort_settings(args)
        args.early = EarlyRegistration.from_settings(mri, pet, settings).start()
    except Exception as exc:  # a bad option or datalist: run() refuses it with its own message
        import logging

        from asfe3d.errors import Asfe3dInputError

        # a user's mistake is refused by run() (ValueError, TypeError: an unknown setting); anything else is a bug
        # that only costs the head start: said, not hidden at DEBUG
        level = logging.DEBUG if isinstance(exc, (Asfe3dInputError, ValueError, TypeError, OSError)) else logging.WARNING
        logging.getLogger(__name__).log(level, "no early registration: %s: %s", type(exc).__name__, exc)


def _output_free(args: argparse.Namespace) -> bool:
    """Whether the fused output path would be accepted (:func:`asfe3d.io.check_output_path`: its suffix, its
    folder, not an input, not an existing file without ``--overwrite``)."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.io import check_output_path
    from asfe3d.io.record import replaceable_outputs
    from asfe3d.io.volume import default_output_path

    output = args.output if args.output is not None else default_output_path(args.mri)
    try:
        check_output_path(output, overwrite=args.overwrite, inputs=[args.mri, args.pet], kind="nifti",
                          replaceable=replaceable_outputs(output))
    except Asfe3dInputError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    """Run ``asfe3d fuse``."""
    from asfe3d.errors import Asfe3dInputError

    set_threads(args)
    if args.datalist is not None:
        if args.mri is not None or args.pet is not None:
            raise Asfe3dInputError(None, "give either MRI PET or --datalist, not both")
        return _run_cohort(args)
    if args.mri is None or args.pet is None:
        raise Asfe3dInputError(None, "MRI and PET are required (or --datalist)")
    for flag, value in (("--summary", args.summary), ("--output-dir", args.output_dir)):
        if value is not None:  # a cohort option would be ignored here: say so instead
            raise Asfe3dInputError(value, f"{flag} is for cohort runs (--datalist); a single run writes -o/--output")
    from asfe3d.pipeline import fuse_pair

    settings = _pair_settings(args, *_series_for(args))
    result = fuse_pair(args.mri, args.pet, args.output, settings, progress=show_progress(args))
    print_result(result)
    return 0


def cohort_settings(args: argparse.Namespace) -> Any:
    """The :class:`asfe3d.settings.Settings` of a cohort run (refusing single-run-only options)."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.settings import OPTIONAL_OUTPUTS

    if getattr(args, "output", None) is not None:
        raise Asfe3dInputError(args.output, "-o/--output names one file; in cohort mode use --output-dir or an "
                                            "output column in the datalist")
    if getattr(args, "series", None):
        raise Asfe3dInputError(None, "--series is ambiguous in cohort mode; use --mri-series / --pet-series")
    if getattr(args, "pet_sidecar", None) is not None:  # one subject's dose and weight would convert every PET
        raise Asfe3dInputError(args.pet_sidecar, "--pet-sidecar names one PET's sidecar; in cohort mode each PET's "
                                                 "own sidecar is read (<pet stem>.json beside it)")
    settings = settings_from_args(args)
    for name in OPTIONAL_OUTPUTS:
        value = getattr(settings.outputs, name)
        if not isinstance(value, bool):
            flag = {"registered_pet": "--save-registered-pet", "transform": "--save-transform"}.get(name, f"--{name}")
            raise Asfe3dInputError(value, f"{flag} takes no path in cohort mode (each subject gets its own default "
                                          "name next to its fused volume)")
    return settings


def _check_index(index: Path, after: str = "") -> None:
    """Refuse to replace an ``index.html`` that asfe3d did not write (``after``: what was done already)."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.reports import read_report_summary

    if index.exists() and read_report_summary(index) is None:
        raise Asfe3dInputError(index, f"exists and is not an asfe3d report index; not replaced{after}")


def _write_index(results: list[Any], index: Path, summary: Path | None = None) -> Path:
    """The cohort's ``index.html``: every subject with its report's thumbnail, status and QC flags, the group QC
    table, and a link to the cohort's ``summary`` CSV."""
    from asfe3d.pipeline import derived_output_paths
    from asfe3d.reports import IndexEntry, write_index

    _check_index(index, " (the subjects' reports were written)")  # it may have appeared meanwhile
    entries = []
    for r in results:
        report = derived_output_paths(r.output)["report"] if r.output is not None else None
        # the verdict is the card's own badge (a "registration fail" flag beside it said it twice)
        entries.append(IndexEntry(r.subject, report=report if report is not None and report.is_file() else None,
                                  status=r.status, message=r.message, verdict=r.qc_verdict or None))
    return write_index(index, entries, title="asfe3d cohort", downloads=[summary] if summary is not None else [])


def _run_cohort(args: argparse.Namespace) -> int:
    from asfe3d.cohort import STATUSES, default_summary_path, read_datalist
    from asfe3d.distributed import get_dist_info, run_cohort_distributed

    settings = cohort_settings(args)
    subjects = read_datalist(args.datalist)
    summary = args.summary if args.summary is not None else default_summary_path(args.datalist, args.output_dir)
    index = Path(summary.parent if args.output_dir is None else args.output_dir) / "index.html"
    if settings.outputs.report:
        _check_index(index, " (move it, or choose another --output-dir)")  # before any subject is fused
    results = run_cohort_distributed(subjects, settings, output_dir=args.output_dir, summary_path=summary,
                                     progress=show_progress(args), datalist=args.datalist,
                                     threads=getattr(args, "threads", None))
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    if get_dist_info().rank != 0:  # every rank holds every result; one report is enough
        return 1 if counts["failed"] else 0
    if settings.outputs.report:
        print(f"reports: {_write_index(results, index, Path(summary))}")
    flagged = sum(1 for r in results if r.qc_verdict == "fail")
    print(f"cohort: {len(results)} subjects: {counts['ok']} ok, {counts['skipped']} skipped, "
          f"{counts['failed']} failed, {flagged} with a registration judged failed; summary: {summary}")
    for r in results:
        if r.status == "failed":
            print(f"  failed: {r.subject}: {r.message}")
        elif r.qc_verdict == "fail":
            print(f"  registration QC failed: {r.subject}: {r.message}")
    return 1 if counts["failed"] else 0


