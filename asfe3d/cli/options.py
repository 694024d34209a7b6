"""Option builders and checks shared by the sub-commands (``fuse``, ``demo``, ``bids``).

Choices come from the registries (:data:`asfe3d.fusion.BUILTIN_METHODS`, the registration methods), so a new
method shows up in every command at once. Nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from asfe3d.defaults import QC_MODES, REGISTRATION_CHOICES

__all__ = [
    "add_fusion_options",
    "add_input_options",
    "add_output_options",
    "input_kwargs",
    "fusion_kwargs",
    "output_kwargs",
    "setup_logging",
    "set_threads",
]



def _optional_path(parser: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    parser.add_argument(flag, nargs="?", const=True, default=False, metavar="PATH", help=help_text)


def add_fusion_options(p: argparse.ArgumentParser) -> None:
    """Options every command that fuses shares (method, registration, QC, device...)."""
    from asfe3d.defaults import DEFAULT_METHOD, DEFAULT_MODE
    from asfe3d.fusion.base import available_methods

    p.add_argument("--method", choices=available_methods(), default=DEFAULT_METHOD,
                   help=f"fusion method (default: {DEFAULT_METHOD})")
    p.add_argument("--mode", choices=("slice", "volume"), default=DEFAULT_MODE,
                   help="asfe only: 2D network slice by slice (SliceInferer) or 3D network over the volume "
                        f"(SlidingWindowInferer); default: {DEFAULT_MODE}")
    p.add_argument("--weights", type=Path, help="asfe only: weight file instead of the shipped one")
    p.add_argument("--registration", choices=REGISTRATION_CHOICES, default="auto",
                   help="PET-to-MRI registration (default: auto = rigid, or none for two DICOM series that share one "
                        "FrameOfReferenceUID, already aligned by the scanner; rigid forces a registration)")
    p.add_argument("--qc", choices=QC_MODES, default="warn",
                   help="registration quality check: warn = write the outputs and print a one-line warning when "
                        "the registration looks failed (default); strict = refuse (exit 2, no output)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N] (default: auto)")
    p.add_argument("--slice-axis", default="auto", choices=("auto", "0", "1", "2"),
                   help="asfe slice mode: voxel axis to slice along; auto = the MRI's axial axis")
    p.add_argument("--roi-size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="asfe volume mode: sliding-window size (default: the whole volume in one pass up to 12 M "
                        "voxels, else 128 128 128)")
    p.add_argument("--colormap", default="hot", help="PET colour map for --rgb and --preview (default: hot)")
    p.add_argument("--output-scale", choices=("mri", "unit"), default="mri",
                   help="fused intensities: mri = back through the MRI's normalisation window; unit = [0, 1]")
    p.add_argument("--seed", type=int, default=0, help="registration sampling seed, >= 0 (default: 0)")
    p.add_argument("--registration-threads", type=int, default=1, metavar="N",
                   help="ITK threads for the registration: 1 (default) gives bitwise-reproducible outputs; 0 = all "
                        "cores (faster, outputs vary in their last digits between runs)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the network (default: torch's, one per core); on a machine busy with "
                        "other work, --threads 1 avoids OpenMP threads waiting on each other (up to 10x faster)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log progress on stderr (-v: steps and registration; -vv: debug)")


def _frame_reference(text: str) -> str | int:
    if text == "mean":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'mean' or a frame index, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a frame index must be >= 0, got {value}")
    return value


def add_input_options(p: argparse.ArgumentParser, *, sidecar: bool = True) -> None:
    """How the inputs are read: DICOM geometry, NIfTI geometry, PET units, dynamic PET frames, NaN/Inf.

    Args:
        p: the sub-command's parser.
        sidecar: offer ``--pet-sidecar`` (BIDS runs find each PET's sidecar themselves).
    """
    p.add_argument("--pet-frame", type=int, help="take this 0-based frame of a 4D PET instead of the frame mean")
    p.add_argument("--mri-frame", type=int, help="take this 0-based frame of a 4D MRI (a 4D MRI is refused without)")
    p.add_argument("--no-frame-realign", action="store_true",
                   help="average a dynamic PET's frames as they are (default: realign them rigidly first)")
    p.add_argument("--frame-reference", type=_frame_reference, default="mean", metavar="mean|N",
                   help="realign a dynamic PET's frames to their mean (default) or to frame N")
    p.add_argument("--pet-units", choices=("suv",), default=None,
                   help="convert the PET from Bq/ml to body-weight SUV (weight, dose, times and half-life from the "
                        "DICOM header or the JSON sidecar); the registered PET is saved in SUV")
    if sidecar:
        p.add_argument("--pet-sidecar", type=Path, help="the PET's JSON sidecar (BIDS or dcm2niix) for --pet-units")
    p.add_argument("--dicom-strict", action="store_true",
                   help="refuse DICOM series with gaps or gantry tilt (default: resample them onto a regular grid, "
                        "as dcm2niix does, with a warning)")
    p.add_argument("--nifti-geometry", choices=("auto", "sform", "qform"), default="auto",
                   help="which NIfTI geometry to use when qform and sform disagree (default: auto = refuse an "
                        "ambiguous header, prefer the sform when the codes say so)")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="replace NaN/Inf voxels by 0 (with a warning) instead of refusing the input")


def input_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The reading options as ``fuse_pair`` keyword arguments."""
    return {
        "pet_frame": args.pet_frame, "mri_frame": args.mri_frame, "frame_realign": not args.no_frame_realign,
        "frame_reference": args.frame_reference, "pet_units": args.pet_units,
        "pet_sidecar": getattr(args, "pet_sidecar", None),
        "dicom_strict": args.dicom_strict, "nifti_geometry": args.nifti_geometry,
        "allow_nonfinite": args.allow_nonfinite,
    }


def add_output_options(p: argparse.ArgumentParser, *, paths: bool = True) -> None:
    """The optional outputs (``--rgb``, ``--preview``...) and ``--overwrite``.

    Args:
        p: the sub-command's parser.
        paths: whether each flag may take a path (single runs) or is a plain switch (cohorts, BIDS).
    """
    add = _optional_path if paths else (lambda parser, flag, text: parser.add_argument(
        flag, action="store_true", help=text))
    add(p, "--save-registered-pet", "also write the PET resampled onto the MRI grid")
    add(p, "--rgb", "also write a colour (RGB) volume: PET colour map fused over the MRI in Y of YCrCb")
    add(p, "--preview", "also write a tri-planar PNG (MRI / registered PET / fused)")
    add(p, "--save-transform", "also write the transform (.tfm, maps MRI points to PET points)")
    add(p, "--report", "also write a self-contained HTML report: how the PET sits on the MRI, the fused and colour "
                       "images, the registration verdict, timings, inputs and settings (cohorts: and an index.html)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace this command's earlier outputs (the old files stay until the new set is complete)")


def fusion_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The fusion settings shared by ``fuse``, ``demo``, cohorts and BIDS runs, as ``fuse_pair`` keyword arguments."""
    return {
        "method": args.method, "mode": args.mode, "weights": args.weights, "registration": args.registration,
        "qc": args.qc, "device": args.device,
        "slice_axis": args.slice_axis if args.slice_axis == "auto" else int(args.slice_axis),
        "roi_size": None if args.roi_size is None else tuple(args.roi_size), "colormap": args.colormap,
        "output_scale": args.output_scale, "seed": args.seed, "progress": not args.no_progress,
        "registration_threads": None if args.registration_threads == 0 else args.registration_threads,
    }


def output_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The optional-output flags as ``fuse_pair`` keyword arguments (``True``, ``False`` or a path)."""
    return {
        "save_registered_pet": args.save_registered_pet, "save_rgb": args.rgb, "preview": args.preview,
        "save_transform": args.save_transform, "report": args.report,
    }


def setup_logging(verbose: int) -> None:
    """Warnings only by default (so a bad input gives exactly one line on stderr); ``-v`` info, ``-vv`` debug.

    Python warnings from the libraries (torch, MONAI, nibabel) go through logging at DEBUG, and ITK's own warning
    window is switched off, so library noise never reaches stderr unless ``-vv`` asks for it.
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="asfe3d: %(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("asfe3d").setLevel(level)
    logging.captureWarnings(True)
    py_warnings = logging.getLogger("py.warnings")
    py_warnings.setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)
    if verbose < 2:
        warnings.simplefilter("ignore")
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalWarningDisplay(verbose >= 2)
    except ImportError:  # pragma: no cover - SimpleITK is a dependency
        pass


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (refusing bad values before any work)."""
    from asfe3d.errors import Asfe3dInputError

    if getattr(args, "registration_threads", 1) < 0:
        raise Asfe3dInputError(None, f"--registration-threads must be >= 0, got {args.registration_threads}")
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise Asfe3dInputError(None, f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
