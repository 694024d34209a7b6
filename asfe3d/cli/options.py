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

from asfe3d import defaults
from asfe3d.settings import FLAT_NAMES

__all__ = [
    "add_fusion_options",
    "add_input_options",
    "add_output_options",
    "settings_from_args",
    "ARG_SETTINGS",
    "setup_logging",
    "set_threads",
    "show_progress",
]

#: command-line option (argparse ``dest``) -> the settings group and field it sets: the command line's names are the
#: settings' flat names (:data:`asfe3d.settings.FLAT_NAMES`), so one table joins the two
ARG_SETTINGS = FLAT_NAMES
#: the command-line option of each setting that has one (named in refusals as the user typed it)
OPTION_OF_SETTING = {name: "--no-frame-realign" if name == "frame_realign" else f"--{name.replace('_', '-')}"
                     for name in FLAT_NAMES if name != "min_overlap"}



def _optional_path(parser: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    parser.add_argument(flag, nargs="?", const=True, default=False, metavar="PATH", help=help_text)


def add_fusion_options(p: argparse.ArgumentParser) -> None:
    """Options every command that fuses shares (method, registration, QC, device...); defaults from
    :mod:`asfe3d.defaults`."""
    from asfe3d.fusion.base import available_methods

    p.add_argument("--method", choices=available_methods(), default=defaults.DEFAULT_METHOD,
                   help=f"fusion method (default: {defaults.DEFAULT_METHOD})")
    p.add_argument("--mode", choices=defaults.MODES, default=defaults.DEFAULT_MODE,
                   help="asfe only: 2D network slice by slice (SliceInferer) or 3D network over the volume "
                        f"(SlidingWindowInferer); default: {defaults.DEFAULT_MODE}")
    p.add_argument("--weights", type=Path, help="asfe only: weight file instead of the shipped one")
    p.add_argument("--registration", choices=defaults.REGISTRATION_CHOICES, default=defaults.DEFAULT_REGISTRATION,
                   help=f"PET-to-MRI registration (default: {defaults.DEFAULT_REGISTRATION}; auto = rigid, or none "
                        "for two DICOM series that share one FrameOfReferenceUID, already aligned by the scanner, or "
                        "affine when one NIfTI is in a template space (MNI152...) and the other is not; rigid "
                        "forces a rigid registration)")
    p.add_argument("--qc", choices=defaults.QC_MODES, default=defaults.DEFAULT_QC,
                   help="registration quality check: warn = write the outputs and print a one-line warning when "
                        "the registration looks failed; strict = refuse (exit 2, no fused image; with --report, the "
                        "refusal's report and a record saying refused); default: "
                        f"{defaults.DEFAULT_QC}")
    p.add_argument("--device", default=defaults.DEFAULT_DEVICE,
                   help=f"auto (CUDA when present), cpu or cuda[:N] (default: {defaults.DEFAULT_DEVICE})")
    p.add_argument("--slice-axis", default=defaults.DEFAULT_SLICE_AXIS, type=_slice_axis, choices=defaults.SLICE_AXES,
                   help="asfe slice mode: voxel axis to slice along; auto = the MRI's axial axis (default: "
                        f"{defaults.DEFAULT_SLICE_AXIS})")
    p.add_argument("--roi-size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="asfe volume mode: sliding-window size (default: 128 128 128, the size the shipped weights "
                        "were chosen with; a larger window is faster but gives a different image)")
    p.add_argument("--stitch", choices=defaults.STITCH_MODES, default=defaults.DEFAULT_STITCH,
                   help="asfe volume mode: what the overlapping windows are blended as: output = the fused windows; "
                        "logits = the network's coarse logits, finished once over the volume (about 0.5 s and "
                        "0.3-0.5 GB less on a whole head; docs/training.md, 'Eighteenth round'); auto = logits where "
                        f"the network and the windows allow it, else output (default: {defaults.DEFAULT_STITCH})")
    p.add_argument("--min-voxel-mm", type=_min_voxel_mm, default="auto", metavar="MM",
                   help="asfe: the finest voxel size (mm) the network runs on; along axes where the MRI is finer, the "
                        "pair is fused on a grid of about MM and the MRI's finer detail added back; 0 = always the "
                        "MRI's own grid (default: auto = 1 mm in slice mode, the MRI's own grid in volume mode)")
    p.add_argument("--pet-consistency", type=_auto_or_number, default="auto", metavar="S",
                   help="asfe: the strength (0-1) of the consistency step after the network: the fused image's band "
                        "coarser than the PET's resolution moved towards the PET; 0 turns it off (default: auto = "
                        "0.5 in slice mode and 0.6875 there on MRI grids of 1.5 mm or coarser; in volume mode 0.25 "
                        "on MRI grids of 0.95-1.5 mm, 0.5 on coarser ones and 0.4 at 12 mm instead of 6 on finer "
                        "ones; a number is taken on every grid, at 6 mm)")
    p.add_argument("--pet-detail-select", type=_auto_or_number, default="auto", metavar="S",
                   help="asfe: the strength (0-1) of the choose-the-larger-detail step after the consistency step: "
                        "where the PET's band below its resolution is twice the MRI's, S of the fused band there "
                        "becomes the PET's (a sharp PET change on a coarse grid keeps its edge); 0 turns it off "
                        "(default: auto = 0.5 in volume mode on MRI grids of 0.95 mm or coarser, where the PET's band "
                        "must also clear half its own spread in the brain on grids finer than 1.5 mm, and 1 in slice "
                        "mode on grids of 1.5 mm or coarser; a number is taken on every grid, with no such floor)")
    p.add_argument("--detail-steer", type=_auto_or_number, default="auto", metavar="Q0",
                   help="asfe: the steered detail injection, the last step: where the PET's band below its "
                        "resolution follows the MRI's little (a noisy PET; the share q is read from the two images), "
                        "the MRI's detail band is added at min(cap, q / Q0) times the network's gain (on every "
                        "MRI grid in both modes; the cap 1.75 in volume mode on MRI grids finer than 1.5 mm, else "
                        "1.5); 0 turns it off (default: auto = the mode's default, Q0 0.5 in both "
                        "modes, docs/training.md, thirty-first addendum)")
    p.add_argument("--detail-fwhm-mm", type=_auto_or_number, default="auto", metavar="MM",
                   help="asfe: the width (FWHM, mm) of the MRI detail band the network adds and the steps after it "
                        "split at, e.g. your PET's resolution if it is far from 6 mm; 0 = the network's own width in "
                        "voxels (default: auto = 6 mm in volume mode on MRI grids with an axis finer than 0.8 mm, "
                        "elsewhere the network's own width)")
    p.add_argument("--pet-smooth-mm", type=float, default=0.0, metavar="MM",
                   help="smooth the registered PET by a Gaussian of MM FWHM on the MRI's grid before fusing (every "
                        "method), for a noisy PET (low-dose or short frames): more of the MRI's anatomy is kept, a "
                        "small sharp PET change loses contrast (docs/evaluation.md, 'PETs we have not simulated'); "
                        "the registered PET written is not smoothed (default: 0, none)")
    p.add_argument("--detail-injection", type=float, default=None, metavar="G",
                   help="asfe: share of the MRI's detail band (below about 6 mm) added to the fused image, 0-4; 0 "
                        "turns it off, e.g. for a noisy MRI (default: the weights' own: 0.8 for the shipped 3D weights, 0.95 for the slice-mode ones)")
    p.add_argument("--colormap", default=defaults.DEFAULT_COLORMAP,
                   help=f"PET colour map for --rgb and --preview (default: {defaults.DEFAULT_COLORMAP})")
    p.add_argument("--output-scale", choices=defaults.OUTPUT_SCALES, default=defaults.DEFAULT_OUTPUT_SCALE,
                   help="fused intensities: mri = back through the MRI's normalisation window; unit = [0, 1] "
                        f"(default: {defaults.DEFAULT_OUTPUT_SCALE})")
    p.add_argument("--seed", type=int, default=defaults.DEFAULT_SEED,
                   help=f"registration sampling seed, >= 0 (default: {defaults.DEFAULT_SEED})")
    p.add_argument("--registration-threads", type=_registration_threads, default=defaults.DEFAULT_REGISTRATION_THREADS,
                   metavar="N", help="ITK threads for the registration: 1 (default) gives bitwise-reproducible "
                                     "outputs; 0 = all cores (faster, outputs vary in their last digits between runs)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the network (default: torch's, one per core); on a machine busy with "
                        "other work, --threads 1 avoids OpenMP threads waiting on each other (up to 10x faster)")
    p.add_argument("--no-progress", action="store_true",
                   help="hide progress bars (they are shown only when stderr is a terminal)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log progress on stderr (-v: steps and registration; -vv: asfe3d's debug and the libraries' "
                        "warnings; -vvv: also the libraries' debug logs)")


def _slice_axis(text: str) -> str | int:
    return text if text == "auto" else int(text) if text in ("0", "1", "2") else text


def _count(text: str, what: str) -> int:
    """An integer >= 0 from the command line, refused in one line naming ``what`` it should be."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def _auto_or_number(text: str) -> str | float:
    """``auto`` or a number; anything else is left for the settings to refuse with the value quoted."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        return text


def _min_voxel_mm(text: str) -> str | float | None:
    """``auto``, ``0`` (the MRI's own grid: ``None``) or a voxel size in mm; anything else is left for the settings
    to refuse with the value quoted."""
    value = _auto_or_number(text)
    return None if value == 0 else value


def _registration_threads(text: str) -> int | None:
    """``0`` means every core (``None`` in the settings)."""
    value = _count(text, "an integer >= 0")
    return None if value == 0 else value


def _frame_reference(text: str) -> str | int:
    return text if text == "mean" else _count(text, "'mean' or a frame index >= 0")


def add_input_options(p: argparse.ArgumentParser, *, sidecar: bool = True) -> None:
    """How the inputs are read: DICOM geometry, NIfTI geometry, PET units, dynamic PET frames, NaN/Inf.

    Args:
        p: the sub-command's parser.
        sidecar: offer ``--pet-sidecar`` (BIDS runs find each PET's sidecar themselves).
    """
    p.add_argument("--pet-frame", type=int, help="take this 0-based frame of a 4D PET instead of the frame mean")
    p.add_argument("--mri-frame", type=int, help="take this 0-based frame of a 4D MRI (a 4D MRI is refused without)")
    p.add_argument("--no-frame-realign", action="store_false", dest="frame_realign",
                   default=defaults.DEFAULT_FRAME_REALIGN,
                   help="average a dynamic PET's frames as they are (default: realign them rigidly first)")
    p.add_argument("--frame-reference", type=_frame_reference, default=defaults.DEFAULT_FRAME_REFERENCE,
                   metavar="mean|N",
                   help=f"realign a dynamic PET's frames to their mean or to frame N (default: "
                        f"{defaults.DEFAULT_FRAME_REFERENCE})")
    p.add_argument("--pet-units", choices=defaults.PET_UNITS_CHOICES, default=None,
                   help="convert the PET from Bq/ml to body-weight SUV (weight, dose, times and half-life from the "
                        "DICOM header or the JSON sidecar); the registered PET is saved in SUV")
    if sidecar:
        p.add_argument("--pet-sidecar", type=Path, help="the PET's JSON sidecar (BIDS or dcm2niix) for --pet-units")
    p.add_argument("--dicom-strict", action="store_true",
                   help="refuse DICOM series with gaps or gantry tilt (default: resample them onto a regular grid, "
                        "as dcm2niix does, with a warning)")
    p.add_argument("--nifti-geometry", choices=defaults.NIFTI_GEOMETRIES, default=defaults.DEFAULT_NIFTI_GEOMETRY,
                   help="which NIfTI geometry to use when qform and sform disagree (default: auto = refuse an "
                        "ambiguous header, prefer the sform when the codes say so; applies to both inputs, a file "
                        "with only one of the two uses it)")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="replace NaN/Inf voxels by 0 (with a warning) instead of refusing the input")


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
                   help="replace this command's earlier outputs, those its completion record lists (the old files "
                        "stay until the new set is complete; a file asfe3d did not write is never replaced)")


def settings_from_args(args: argparse.Namespace) -> Any:
    """The run's :class:`asfe3d.settings.Settings` from the parsed options (:data:`ARG_SETTINGS`); what a command
    does not offer keeps its default.

    Args:
        args: the parsed command line.

    Returns:
        The settings, checked.

    Raises:
        Asfe3dInputError: a bad value (one line naming the option and quoting the value).
    """
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.settings import Settings

    try:
        return Settings.from_flat(**{dest: getattr(args, dest) for dest in ARG_SETTINGS if hasattr(args, dest)})
    except Asfe3dInputError as exc:  # the setting's name as the user typed it: --roi-size, not roi_size
        name, sep, rest = exc.problem.partition(": ")
        if exc.path is None and sep and name in OPTION_OF_SETTING and hasattr(args, name):
            raise Asfe3dInputError(None, f"{OPTION_OF_SETTING[name]}: {rest}") from None
        raise


def setup_logging(verbose: int) -> None:
    """Warnings only by default (so a bad input gives exactly one line on stderr); ``-v`` info, ``-vv`` asfe3d's
    debug, ``-vvv`` every library's debug too.

    Python warnings from the libraries (torch, MONAI, nibabel) go through logging at DEBUG, and ITK's own warning
    window is switched off, so library noise never reaches stderr unless ``-vv`` asks for it.
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    # other libraries' loggers (matplotlib's font manager, PIL...) stay at WARNING up to -vv: their debug chatter
    # buried asfe3d's own lines; -vvv lets it through
    logging.basicConfig(level=logging.DEBUG if verbose >= 3 else logging.WARNING,
                        format="asfe3d: %(levelname)s: %(message)s", stream=sys.stderr)
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

    if getattr(args, "threads", None) is not None:
        from asfe3d.settings import MAX_THREADS

        if not 1 <= args.threads <= MAX_THREADS:  # torch.set_num_threads overflows on a huge value
            raise Asfe3dInputError(None, f"--threads: must be an integer in [1, {MAX_THREADS}], got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


def show_progress(args: argparse.Namespace, stream: Any = None) -> bool:
    """Whether to draw progress bars: not with ``--no-progress``, and only on a terminal (a bar redrawn into a log
    file or a pipe is noise: a job's stderr keeps only what the user must read).

    Args:
        args: the parsed command line.
        stream: where the bars would go (``None``: ``sys.stderr``).
    """
    import sys

    stream = sys.stderr if stream is None else stream
    if getattr(args, "no_progress", False):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False
