"""``asfe3d bids``: a BIDS App that fuses every T1w/PET pair of a BIDS dataset into BIDS derivatives.

Usage (the BIDS Apps convention)::

    asfe3d bids BIDS_DIR OUTPUT_DIR participant [--participant-label L ...] [--session-label S ...]
                [fusion options as for ``asfe3d fuse``] [--no-reports] [--overwrite]

Writes ``OUTPUT_DIR/dataset_description.json``, the derivatives under ``OUTPUT_DIR/sub-<s>/[ses-<t>/]pet/``, a
report per subject ``OUTPUT_DIR/sub-<s>.html`` and ``OUTPUT_DIR/index.html`` (see :mod:`asfe3d.bids`). Reruns
skip complete pairs. Exit codes: 0 when every pair is fused or already complete (subjects without PET are skipped
with a message), 1 when any pair failed, 2 for bad input or usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]

ANALYSIS_LEVELS = ("participant",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``bids`` sub-command to the ``asfe3d`` parser.

    Args:
        sub: the ``asfe3d`` parser's sub-parsers.
    """
    from asfe3d.cli.options import add_fusion_options, add_input_options

    p = sub.add_parser(
        "bids", help="BIDS App: fuse every T1w/PET pair of a BIDS dataset into BIDS derivatives, with reports",
        description="Find each subject's (and session's) T1w (anat/*_T1w.nii[.gz]) and PET (pet/*_pet.nii[.gz]), "
                    "fuse them with the same options as 'asfe3d fuse', and write BIDS derivatives "
                    "(sub-<s>[/ses-<t>]/pet/<...>_space-T1w_desc-fused_pet.nii.gz with JSON sidecars, the "
                    "registered PET and the transform), a report per subject (sub-<s>.html) and index.html. "
                    "Reruns skip complete pairs.",
    )
    p.add_argument("bids_dir", type=Path, help="the root of the input BIDS dataset")
    p.add_argument("output_dir", type=Path, help="where the derivatives go (e.g. BIDS_DIR/derivatives/asfe3d)")
    p.add_argument("analysis_level", choices=ANALYSIS_LEVELS, help="participant (the only level)")
    p.add_argument("--participant-label", "--participant_label", nargs="+", metavar="L", dest="participant_label",
                   help="subjects to process, with or without 'sub-' (default: all)")
    p.add_argument("--session-label", "--session_label", nargs="+", metavar="S", dest="session_label",
                   help="sessions to process, with or without 'ses-' (default: all)")
    p.add_argument("--no-reports", action="store_true", help="do not write sub-<s>.html and index.html")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every pair and replace its files, even files that asfe3d did not write")
    add_input_options(p, sidecar=False)
    add_fusion_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``asfe3d bids`` from parsed arguments.

    Args:
        args: the ``bids`` sub-command's namespace.

    Returns:
        0 when no pair failed, 1 otherwise.

    Raises:
        Asfe3dInputError: a bad dataset, label or output folder (the CLI prints it on one line, exit 2).
    """
    from asfe3d.bids import run_bids
    from asfe3d.cli.options import set_threads, settings_from_args, show_progress

    set_threads(args)
    results = run_bids(args.bids_dir, args.output_dir, settings_from_args(args),
                       participant_labels=args.participant_label, session_labels=args.session_label,
                       reports=not args.no_reports, progress=show_progress(args))
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "no-pet", "failed")}
    pairs = len(results) - counts["no-pet"]  # every PET considered, failed ones too (no T1w, an ambiguous T1w)
    flagged = sum(1 for r in results if r.status in ("ok", "skipped") and r.qc_verdict == "fail")
    print(f"bids: {pairs} pairs: {counts['ok']} fused, {counts['skipped']} already complete, "
          f"{counts['failed']} failed, {flagged} with a registration judged failed; {counts['no-pet']} "
          f"subject/session(s) without PET skipped; derivatives in {args.output_dir}")
    for r in results:
        if r.status in ("failed", "no-pet"):
            print(f"  {r.status}: {r.message}", file=sys.stdout if r.status == "no-pet" else sys.stderr)
        elif r.qc_verdict == "fail":  # written anyway (--qc warn), or kept from an earlier run: named every time
            print(f"  registration QC failed: {r.name}: {r.qc_reasons}", file=sys.stderr)
        for warning in r.warnings:
            print(f"  warning: {r.name}: {warning}", file=sys.stderr)
    if not args.no_reports:
        print(f"reports: {Path(args.output_dir) / 'index.html'}")
    return 1 if counts["failed"] else 0
