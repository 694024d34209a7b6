"""The ``asfe3d`` command.

Sub-commands: ``fuse`` (one pair, or a cohort with ``--datalist``), ``demo`` (the whole pipeline on a simulated
ADNI-style pair), ``train``, ``evaluate`` and ``benchmark``. Heavy libraries are imported inside the commands, so
``asfe3d --help`` answers at once.

Exit codes: 0 success; 2 bad input or usage (one line on stderr naming the file and the problem); 1 a failure
inside asfe3d (with its traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser"]

METHODS = ("mean", "max", "wavelet", "laplacian", "asfe")


def _optional_path(parser: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    parser.add_argument(flag, nargs="?", const=True, default=False, metavar="PATH", help=help_text)


def add_fusion_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``fuse`` and ``demo``."""
    p.add_argument("--method", choices=METHODS, default="asfe", help="fusion method (default: asfe)")
    p.add_argument("--mode", choices=("slice", "volume"), default="slice",
                   help="asfe only: 2D network slice by slice (SliceInferer) or 3D network over the volume "
                        "(SlidingWindowInferer); default: slice")
    p.add_argument("--weights", type=Path, help="asfe only: weight file instead of the shipped one")
    p.add_argument("--registration", choices=("rigid", "affine", "deformable", "none"), default="rigid",
                   help="PET-to-MRI registration (default: rigid)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N] (default: auto)")
    p.add_argument("--slice-axis", default="auto", choices=("auto", "0", "1", "2"),
                   help="asfe slice mode: voxel axis to slice along; auto = the MRI's axial axis")
    p.add_argument("--roi-size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="asfe volume mode: sliding-window size (default: the whole volume in one pass up to 12 M "
                        "voxels, else 128 128 128)")
    p.add_argument("--colormap", default="hot", help="PET colour map for --rgb and --preview (default: hot)")
    p.add_argument("--output-scale", choices=("mri", "unit"), default="mri",
                   help="fused intensities: mri = back through the MRI's normalisation window; unit = [0, 1]")
    p.add_argument("--seed", type=int, default=0, help="registration sampling seed (default: 0)")
    p.add_argument("--registration-threads", type=int, default=1, metavar="N",
                   help="ITK threads for the registration: 1 (default) gives bitwise-reproducible outputs; 0 = all "
                        "cores (faster, outputs vary in their last digits between runs)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the network (default: torch's, one per core); on a machine busy with "
                        "other work, --threads 1 avoids OpenMP threads waiting on each other (up to 10x faster)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log progress on stderr (-v: steps and registration; -vv: debug)")


def _add_fuse(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuse", help="fuse an MRI and a PET volume into one volume on the MRI grid",
        description="Register the PET onto the MRI, fuse, and write the fused volume on the MRI's grid "
                    "(same shape, affine and header codes). Inputs: NIfTI, MHA/NRRD or DICOM series folders.",
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
    p.add_argument("--pet-frame", type=int, help="take this 0-based frame of a 4D PET instead of the frame mean")
    _optional_path(p, "--save-registered-pet", "also write the PET resampled onto the MRI grid")
    _optional_path(p, "--rgb", "also write a colour (RGB) volume: PET colour map fused over the MRI in Y of YCrCb")
    _optional_path(p, "--preview", "also write a tri-planar PNG (MRI / registered PET / fused)")
    _optional_path(p, "--save-transform", "also write the transform (.tfm, maps MRI points to PET points)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="replace NaN/Inf voxels by 0 (with a warning) instead of refusing the input")
    add_fusion_options(p)
    p.set_defaults(func=_cmd_fuse)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline on a simulated ADNI-style pair built from the MNI152 template",
        description="Build an MRI (MNI152 T1, 1 mm) and a simulated FDG PET (2 mm, moved by a known rigid "
                    "transform), run the pipeline, and report the registration error, step times and outputs.",
    )
    p.add_argument("--out", type=Path, default=Path("asfe3d_demo"), help="output folder (default: ./asfe3d_demo)")
    p.add_argument("--oblique", action="store_true", help="put the MRI on an oblique, anisotropic grid")
    p.add_argument("--tracer", choices=("fdg", "amyloid"), default="fdg", help="simulated tracer (default: fdg)")
    p.add_argument("--motion-seed", type=int, default=0, help="seed of the simulated head motion (default: 0)")
    add_fusion_options(p)
    p.set_defaults(func=_cmd_demo)


def _add_passthrough(sub: argparse._SubParsersAction, name: str, module: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, add_help=False)
    p.set_defaults(func=None, passthrough=module)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``asfe3d`` command."""
    parser = argparse.ArgumentParser(prog="asfe3d", description="MONAI-native 3D MRI/PET fusion (ASFE-Fusion).")
    from asfe3d import __version__

    parser.add_argument("--version", action="version", version=f"asfe3d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fuse(sub)
    _add_demo(sub)
    _add_passthrough(sub, "train", "asfe3d.training.cli", "train the fusion network (2D on HMIF, 3D on simulated volumes)")
    _add_passthrough(sub, "evaluate", "asfe3d.evaluation.cli", "score asfe and the classic baselines on pairs")
    _add_passthrough(sub, "benchmark", "asfe3d.networks.benchmark", "time the networks (params, seconds, memory)")
    return parser


def _setup_logging(verbose: int) -> None:
    """Warnings only by default (so a bad input gives exactly one line on stderr); ``-v`` info, ``-vv`` debug."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="asfe3d: %(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("asfe3d").setLevel(level)


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


def fusion_kwargs(args: argparse.Namespace) -> dict:
    """The fusion settings shared by ``fuse``, ``demo`` and cohort runs, as ``fuse_pair`` keyword arguments."""
    return {
        "method": args.method, "mode": args.mode, "weights": args.weights, "registration": args.registration,
        "device": args.device, "slice_axis": args.slice_axis if args.slice_axis == "auto" else int(args.slice_axis),
        "roi_size": None if args.roi_size is None else tuple(args.roi_size), "colormap": args.colormap, "output_scale": args.output_scale,
        "seed": args.seed, "progress": not args.no_progress,
        "registration_threads": None if args.registration_threads == 0 else args.registration_threads,
    }


def _print_result(result, stream=None) -> None:
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
            how = (f"frame {info['frame_taken']}" if info.get("frame_taken") is not None
                   else f"mean of {frames} frames")
            print(f"{role.upper()}: 4D input with {frames} frames, used the {how}", file=stream)
        if info.get("nonfinite_repaired"):
            print(f"{role.upper()}: replaced {info['nonfinite_repaired']} NaN/Inf voxels by 0", file=stream)
    reg = result.registration
    print(f"registration: {reg['method']}, Mattes MI {reg['metric']:.4f}, {reg['iterations']} iterations; "
          f"PET covers {result.overlap:.0%} of the MRI head", file=stream)
    steps = ", ".join(f"{k} {t[k]:.1f} s" for k in ("load", "register", "resample", "normalise", "fuse", "save"))
    print(f"time: {steps}; total {t['total']:.1f} s; peak memory {result.peak_memory_mb:.0f} MB", file=stream)


def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "registration_threads", 1) < 0:
        raise SystemExit(f"asfe3d: error: --registration-threads must be >= 0, got {args.registration_threads}")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"asfe3d: error: --threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


def _cmd_fuse(args: argparse.Namespace) -> int:
    _set_threads(args)
    if args.datalist is not None:
        if args.mri is not None or args.pet is not None:
            raise SystemExit("asfe3d fuse: error: give either MRI PET or --datalist, not both")
        from asfe3d.cohort import run_cohort_cli

        return run_cohort_cli(args)
    if args.mri is None or args.pet is None:
        raise SystemExit("asfe3d fuse: error: MRI and PET are required (or --datalist)")
    from asfe3d.pipeline import fuse_pair

    mri_series, pet_series = _series_for(args)
    result = fuse_pair(
        args.mri, args.pet, args.output, mri_series=mri_series, pet_series=pet_series, pet_frame=args.pet_frame,
        save_registered_pet=args.save_registered_pet, save_rgb=args.rgb, preview=args.preview,
        save_transform=args.save_transform, overwrite=args.overwrite, allow_nonfinite=args.allow_nonfinite,
        **fusion_kwargs(args),
    )
    _print_result(result)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    _set_threads(args)

    import SimpleITK as sitk

    from asfe3d.data import make_demo_pair
    from asfe3d.pipeline import fuse_pair
    from asfe3d.registration import registration_error_mm

    t0 = time.perf_counter()
    pair = make_demo_pair(args.out / "inputs", seed=args.motion_seed, oblique=args.oblique, tracer=args.tracer)
    t_make = time.perf_counter() - t0
    print(f"demo pair ({t_make:.1f} s): MRI {pair.mri_path}, PET {pair.pet_path}")
    result = fuse_pair(
        pair.mri_path, pair.pet_path, args.out / f"demo_fused_{args.method}.nii.gz", save_registered_pet=True,
        save_rgb=True, preview=True, save_transform=True, overwrite=True, **fusion_kwargs(args),
    )
    _print_result(result)
    err = registration_error_mm(pair.true_transform, result.transform, sitk.ReadImage(str(pair.mask_path)))
    print(f"registration error vs the known motion over the brain: mean {err['mean']:.2f} mm, "
          f"median {err['median']:.2f} mm, max {err['max']:.2f} mm")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``asfe3d`` command.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    passthrough = getattr(args, "passthrough", None)
    if passthrough is None and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from asfe3d.errors import Asfe3dInputError

    try:
        if passthrough is not None:
            import importlib

            return int(importlib.import_module(passthrough).main(rest) or 0)
        _setup_logging(args.verbose)
        return int(args.func(args) or 0)
    except Asfe3dInputError as exc:
        print(f"asfe3d: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asfe3d: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
