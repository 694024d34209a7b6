"""``asfe3d evaluate``: score asfe and the classic baselines on 2D HMIF pairs or 3D MRI/PET volume pairs.

Examples::

    asfe3d evaluate --hmif /data/hmif/PET-MRI --out docs/results --name hmif_pet_val            # validation split
    asfe3d evaluate --pairs pairs.csv --out results --name sim3d --save-fused results/fused     # volumes

Writes ``<out>/<name>_metrics.csv`` (one row per case x method), ``<out>/<name>_summary.md`` (means, best in bold,
wins of asfe against each baseline, per-metric gaps) and ``<out>/<name>_figure.png`` (inputs and outputs of a few
cases), and prints the summary. Bad input (a missing file, an output that cannot be written, a bad option value or
usage): one line ``asfe3d: error: <path or option>: <problem>`` on stderr, exit code 2, before any work.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asfe3d.defaults import DEFAULT_ROI_SIZE
from asfe3d.errors import Asfe3dInputError, InputErrorParser

__all__ = ["build_parser", "main"]



def build_parser() -> argparse.ArgumentParser:
    """The parser of ``asfe3d evaluate``; its usage mistakes raise :class:`~asfe3d.errors.Asfe3dInputError`."""
    p = InputErrorParser(
        prog="asfe3d evaluate",
        description="Fuse pairs with every method and score them with the 11 fusion metrics (gray/luma images in "
                    "[0, 1]; volumes inside the head mask, plus the through-plane consistency TPC).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hmif", type=Path, metavar="DIR",
                     help="HMIF-style task folder: DIR/MRI/*.png and DIR/PET|SPECT|CT/*.png with the same names")
    src.add_argument("--pairs", type=Path, metavar="CSV",
                     help="CSV of volume pairs with columns subject, mri, pet and optionally mask, brain, pet_defect "
                          "and defect (paths relative to the CSV; docs/evaluation.md)")
    p.add_argument("--out", type=Path, required=True, help="folder for the CSV, the markdown table and the figure")
    p.add_argument("--name", default="evaluation", help="file name prefix of the outputs (default: evaluation)")
    p.add_argument("--methods", default=",".join(("mean", "max", "wavelet", "laplacian", "highpass", "asfe")),
                   help="comma-separated methods (default: mean,max,wavelet,laplacian,highpass,asfe; for volumes asfe = "
                        "asfe-slice and asfe-volume, which may also be named alone)")
    p.add_argument("--split", choices=("val", "train", "all"), default="val",
                   help="HMIF pairs to score (default: val, the part training holds out)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="HMIF split: held-out fraction (default 0.2)")
    p.add_argument("--gap", type=int, default=2, help="HMIF split: slices dropped between the parts (default 2)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    p.add_argument("--weights-2d", type=Path, default=None, help="2D network weights (default: the shipped ones: image weights for --hmif, slice-mode weights for volumes)")
    p.add_argument("--weights-3d", type=Path, default=None, help="3D network weights (default: the shipped ones)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--roi-size", type=int, nargs=3, default=DEFAULT_ROI_SIZE, metavar=("X", "Y", "Z"),
                   help=f"sliding-window size of asfe-volume (default {' '.join(map(str, DEFAULT_ROI_SIZE))}: the windows "
                        "asfe3d fuse uses)")
    p.add_argument("--roi-mm", type=float, default=None, metavar="MM",
                   help="asfe-volume's window in mm where the grid is known, at most --roi-size voxels (0 = the "
                        "window in voxels only; default: what asfe3d fuse uses)")
    p.add_argument("--stitch", choices=("auto", "output", "logits"), default=None,
                   help="how asfe-volume blends its overlapping windows: the fused windows (output) or the network's "
                        "stem-stride logits, finished once over the volume (logits; auto where the network allows "
                        "it); default: what asfe3d fuse uses")
    p.add_argument("--min-voxel-mm", type=float, default=None, metavar="MM",
                   help="volumes: the finest grid the networks run on (mm; 0 = the MRI's own grid; default: what "
                        "asfe3d fuse uses)")
    p.add_argument("--max-voxel-mm", type=float, default=None, metavar="MM",
                   help="volumes: the coarsest grid the networks run on (mm; along coarser axes the pair is fused on "
                        "a finer grid and brought back; 0 = the MRI's own grid; default: what asfe3d fuse uses)")
    p.add_argument("--pet-consistency", type=float, default=None, metavar="S",
                   help="volumes: strength in [0, 1] of the consistency step after the networks (the fused image's "
                        "band coarser than the PET's resolution moved towards the PET; 0 = none; a number is taken "
                        "on every grid; default: what asfe3d fuse uses, 0.5 in slice mode; in volume mode 0.25 on "
                        "grids of 0.95-1.5 mm and 0.5 on coarser ones)")
    p.add_argument("--detail-steer", type=float, default=None, metavar="Q0",
                   help="volumes: q0 of the steered detail injection, the last step (a PET whose band below its "
                        "resolution follows the MRI's little gets up to 1.5 times the injection, 1.75 in volume mode "
                        "on grids finer than 1.5 mm; 0 = none; default: what asfe3d fuse uses)")
    p.add_argument("--detail-fwhm-mm", type=float, default=None, metavar="MM",
                   help="volumes: the width (FWHM, mm) of the networks' detail band, on every grid (0 = the "
                        "network's own width in voxels; default: what asfe3d fuse uses)")
    p.add_argument("--pet-detail-select", type=float, default=None, metavar="S",
                   help="volumes: strength in [0, 1] of the choose-the-larger-detail step after the consistency step "
                        "(where the PET's band below its resolution is K times the MRI's, the fused band becomes the "
                        "PET's; 0 = none; a number is taken on every grid; default: what asfe3d fuse uses, 0.5 in "
                        "volume mode on grids of 0.95 mm or coarser and 1 in slice mode on grids of 1.5 mm or "
                        "coarser)")
    p.add_argument("--pet-detail-ratio", type=float, default=None, metavar="K",
                   help="volumes: K > 0 of that step (default: what asfe3d fuse uses)")
    p.add_argument("--registration", choices=("rigid", "affine", "deformable", "none"), default="rigid",
                   help="volumes: PET-to-MRI registration (none = PET already aligned, only resampled; default rigid)")
    p.add_argument("--seed", type=int, default=0, help="registration sampling seed (default 0)")
    p.add_argument("--save-fused", type=Path, default=None, metavar="OUTDIR",
                   help="also write every fused image under OUTDIR/<method>/ (PNG with the input's name; "
                        "NIfTI <subject>.nii.gz on the MRI grid for volumes)")
    p.add_argument("--no-defect", action="store_true",
                   help="skip the defect transfer DT (it fuses every case twice: with and without a focal PET defect)")
    p.add_argument("--defect-fwhm-mm", type=float, default=None, metavar="MM",
                   help="blur the placed 12 mm defect by a Gaussian of this FWHM (mm), as a PET of that resolution "
                        "images a lesion (default: cut in sharp); a pair's own defect is used as it is")
    p.add_argument("--pet-fwhm-mm", type=float, default=None, metavar="MM",
                   help="the PET's resolution (FWHM, mm): where DETAIL and PETC split their bands and where the "
                        "highpass baseline takes the MRI's band (default 6; a PET reconstructed or smoothed to 8 mm "
                        "is measured with 8)")
    p.add_argument("--figure-cases", type=int, default=3, help="cases shown in the figure (default 3; 0 = none)")
    p.add_argument("--title", default=None, help="heading of the markdown summary")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-v", "--verbose", action="store_true", help="one progress line per case on stderr")
    return p


def _check_args(args: argparse.Namespace) -> None:
    """Refuse option values out of range, before any work.

    Raises:
        Asfe3dInputError: ``<option>: must be ..., got <value>`` for the first bad value.
    """
    if args.limit is not None and args.limit < 1:
        raise Asfe3dInputError("--limit", f"must be >= 1, got {args.limit!r}")
    finite = math.isfinite
    checks = (  # (flag, value, holds, what it must be)
        ("--min-voxel-mm", args.min_voxel_mm, lambda v: v >= 0 and finite(v), "a voxel size >= 0 (mm)"),
        ("--roi-mm", args.roi_mm, lambda v: v >= 0 and finite(v), "a size >= 0 (mm)"),
        ("--max-voxel-mm", args.max_voxel_mm, lambda v: v >= 0 and finite(v), "a voxel size >= 0 (mm)"),
        ("--pet-consistency", args.pet_consistency, lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        ("--pet-detail-select", args.pet_detail_select, lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        ("--pet-detail-ratio", args.pet_detail_ratio, lambda v: v > 0 and finite(v), "a number > 0"),
        ("--detail-steer", args.detail_steer, lambda v: v >= 0 and finite(v), "a number >= 0"),
        ("--detail-fwhm-mm", args.detail_fwhm_mm, lambda v: 0 <= v <= 20, "a width in [0, 20] (mm)"),
        ("--defect-fwhm-mm", args.defect_fwhm_mm, lambda v: v > 0 and finite(v), "a width > 0 (mm)"),
        ("--pet-fwhm-mm", args.pet_fwhm_mm, lambda v: v > 0 and finite(v), "a width > 0 (mm)"),
    )
    for flag, value, holds, what in checks:
        if value is not None and not holds(value):
            raise Asfe3dInputError(flag, f"must be {what}, got {value!r}")
    if args.figure_cases < 0:
        raise Asfe3dInputError("--figure-cases", f"must be >= 0, got {args.figure_cases!r}")
    if not 0.0 <= args.val_fraction < 1.0:
        raise Asfe3dInputError("--val-fraction", f"must be in [0, 1), got {args.val_fraction!r}")
    if args.gap < 0:
        raise Asfe3dInputError("--gap", f"must be >= 0, got {args.gap!r}")
    if min(args.roi_size) < 1:
        raise Asfe3dInputError("--roi-size", f"must be positive, got {args.roi_size!r}")
    if "/" in args.name or "\\" in args.name or not args.name.strip() or args.name != args.name.strip():
        raise Asfe3dInputError("--name", f"must be a plain file name prefix, got {args.name!r}")


def _figure_indices(n: int, k: int) -> list[int]:
    """``k`` case indices spread evenly over ``n`` cases."""
    import numpy as np

    if k <= 0 or n == 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(k, n))})


def _run(args: argparse.Namespace) -> int:
    from asfe3d.evaluation import evaluate as ev
    from asfe3d.io import check_output_path, check_writable_folder

    if args.hmif is not None:
        items = ev.hmif_case_pairs(args.hmif, args.split, args.val_fraction, args.gap)
        ndim, load = 2, ev.load_hmif_case
        names = [p.name for p in items]
        source = f"{args.hmif} ({args.split} split, {len(items)} pairs" + (f", first {args.limit}" if args.limit else "") + ")"
    else:
        items = ev.read_pairs_csv(args.pairs)
        ndim = 3

        def load(row):  # noqa: ANN001, ANN202 - a closure over the CLI settings
            return ev.load_volume_case(row, registration=args.registration, seed=args.seed)

        names = [r["subject"] for r in items]
        source = f"{args.pairs} ({len(items)} volume pairs, registration {args.registration})"
    if args.limit is not None:
        items, names = items[: args.limit], names[: args.limit]
    try:
        methods = ev.expand_methods(args.methods, ndim)
    except ValueError as exc:
        raise Asfe3dInputError(None, f"--methods: {exc}") from None

    outputs = {k: args.out / f"{args.name}_{k}" for k in ("metrics.csv", "summary.md", "figure.png", "front.png",
                                                          "planes.png")}
    if args.figure_cases == 0:
        outputs.pop("figure.png")
    if ndim == 2:
        outputs.pop("planes.png")
    planned = list(outputs.values())
    if args.save_fused is not None:
        planned += [ev.fused_output_path(args.save_fused, m, n, ndim) for m in methods for n in names]
    for path in planned:  # refuse bad outputs before any work
        check_output_path(path, overwrite=args.overwrite)
    for path in {Path(p).parent: p for p in reversed(planned)}.values():  # folders that cannot be made or written
        check_writable_folder(path)  # (a file where --out or --save-fused names a folder, /proc, read-only...)

    weights_2d = args.weights_2d
    if weights_2d is None and ndim == 2:  # 2D image pairs: the image weights, not the volumes' slice-mode ones
        from asfe3d.fusion.weights import shipped_weights

        weights_2d = shipped_weights("image")
    try:
        fusers = _build_fusers(args, methods, weights_2d)
    except ValueError as exc:  # weights of the other dimension, a device this machine lacks: the user's options
        if isinstance(exc, Asfe3dInputError):
            raise
        text = str(exc)
        option = ("--device" if "device" in text.lower() else "--weights-3d" if "mode 'volume'" in text
                  else "--weights-2d" if "mode 'slice'" in text else None)
        raise Asfe3dInputError(option, text) from None
    _evaluate(args, items, load, methods, fusers, outputs, ndim, source)
    return 0


def _build_fusers(args: argparse.Namespace, methods: Sequence[str], weights_2d: Any) -> dict[str, Any]:
    from asfe3d.evaluation import evaluate as ev

    def given(value: Any, zero_is_none: bool = False) -> Any:  # not given: the command's default; 0: none/own grid
        return "auto" if value is None else (value or None) if zero_is_none else value

    options = ev.NetworkOptions(
        device=args.device, roi_size=tuple(args.roi_size), stitch=args.stitch,
        min_voxel_mm=given(args.min_voxel_mm, True), max_voxel_mm=given(args.max_voxel_mm, True),
        roi_mm=given(args.roi_mm, True), pet_consistency=given(args.pet_consistency),
        pet_detail_select=given(args.pet_detail_select), pet_detail_ratio=given(args.pet_detail_ratio),
        detail_steer=given(args.detail_steer, True), detail_fwhm_mm=given(args.detail_fwhm_mm, True))
    return ev.build_fusers(methods, weights_2d=weights_2d, weights_3d=args.weights_3d, options=options,
                           pet_fwhm_mm=args.pet_fwhm_mm)


def _evaluate(args: argparse.Namespace, items: list[Any], load: Any, methods: Sequence[str],
              fusers: dict[str, Any], outputs: dict[str, Path], ndim: int, source: str) -> None:
    """Score every pair, then write the outputs. Every output (the tables and figures too) is written to a hidden
    staging folder and put in place only when every pair is done and every file is made, each destination checked
    before the first is moved: a run that fails (or is interrupted) keeps an earlier run's files, also with
    ``--overwrite`` (the fused files were replaced pair by pair, then deleted by the failure; the tables were
    replaced before the figures and the fused files, so a failure between them left a mixed set)."""
    import shutil
    import tempfile

    from asfe3d.evaluation import evaluate as ev
    from asfe3d.io import check_output_path

    show = set(_figure_indices(len(items), args.figure_cases))
    rows, panels = [], []
    if args.save_fused is not None:  # beside the fused files' folder: their moves are renames
        home = Path(args.save_fused)
        home.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{home.name}.asfe3d-stage", dir=home.parent)).resolve()
    else:  # inside --out, which was checked writable (its parent need not be: --out /tmp)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".asfe3d-stage", dir=args.out)).resolve()
    staged: list[tuple[Path, Path]] = []  # (staged file, final path)
    try:
        for i, item in enumerate(items):
            case = load(item)
            res = ev.evaluate_case(case, fusers, defect=not args.no_defect, defect_fwhm_mm=args.defect_fwhm_mm,
                                   pet_fwhm_mm=args.pet_fwhm_mm)
            rows.extend(res.rows)
            if args.save_fused is not None:
                for path in ev.save_fused_case(case, res.fused, stage / "fused", overwrite=True):
                    staged.append((path, Path(args.save_fused) / Path(path).resolve().relative_to(stage / "fused")))
            if i in show:
                panels.extend(ev.figure_panels(case, res.fused))
            if i == 0 and "planes.png" in outputs:  # the first volume, every method beside it
                from asfe3d.evaluation.front import save_planes_figure

                save_planes_figure(case.mri, case.other, res.fused, stage / "planes.png", title=case.name,
                                   overwrite=True, spacing=case.spacing)
                staged.append((stage / "planes.png", outputs["planes.png"]))
            if args.verbose:
                times = ", ".join(f"{r['method']} {r['seconds']:.2f}s" for r in res.rows)
                print(f"[{i + 1}/{len(items)}] {case.name}: {times}", file=sys.stderr)
        summary, made = _write_results(args, rows, panels, methods, outputs, ndim, source, stage / "tables")
        staged += [(stage / "tables" / outputs[key].name, outputs[key]) for key in made if key != "planes.png"]
        for _src, dst in staged:  # one that appeared meanwhile: refused before any file is moved
            check_output_path(dst, overwrite=args.overwrite)
        for src, dst in staged:  # every pair done and every file made: they go in place (renames)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if args.overwrite:  # an earlier run's figure of this name that this run does not draw would describe other data
        for key in ("figure.png", "front.png", "planes.png"):
            stale = args.out / f"{args.name}_{key}"
            if key not in made and stale.is_file():
                stale.unlink()
                print(f"removed {stale} (an earlier run's; this run draws none)", file=sys.stderr)
    print(summary)


def _write_results(args: argparse.Namespace, rows: list[Any], panels: list[Any], methods: Sequence[str],
                   outputs: dict[str, Path], ndim: int, source: str, folder: Path) -> tuple[str, set[str]]:
    """The metrics CSV, the summary, the figure and the front figure of a finished run, written into ``folder``
    under their final names; returns the summary and the output keys this run makes."""
    from asfe3d.evaluation import evaluate as ev

    notes = [f"Input: {source}.",
             "Metrics on the gray/luma (Y of YCrCb) images in [0, 1]" + (", inside the head mask." if ndim == 3 else ", whole image.")]
    if args.pet_fwhm_mm is not None:
        notes.append(f"DETAIL and PETC split their bands at {args.pet_fwhm_mm:g} mm (the PET's resolution given).")
    summary = ev.markdown_summary(rows, title=args.title, notes=notes)
    folder.mkdir(parents=True, exist_ok=True)
    here = {key: folder / path.name for key, path in outputs.items()}
    ev.write_rows_csv(rows, here["metrics.csv"], overwrite=True)
    here["summary.md"].write_text(summary, encoding="utf-8")
    made = {"metrics.csv", "summary.md", "planes.png"} & set(outputs)
    if "figure.png" in outputs and panels:
        ev.save_figure(panels, methods, here["figure.png"], overwrite=True, title=args.title)
        made.add("figure.png")
    means = ev.mean_table(rows)
    finite = [v for v in means.values() if math.isfinite(v.get("DETAIL", math.nan))
              and math.isfinite(v.get("PETC", math.nan))]
    if finite:  # no pair with a brain region (DETAIL, PETC NaN): no front to draw (it ended in a traceback)
        from asfe3d.evaluation.front import save_front_figure

        save_front_figure(means, here["front.png"], title=args.title, overwrite=True)
        made.add("front.png")
    return summary, made


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``asfe3d evaluate``.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 on bad input or usage (one ``asfe3d: error: ...`` line on stderr).
    """
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        _check_args(args)
        return _run(args)
    except Asfe3dInputError as exc:
        print(f"asfe3d: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
