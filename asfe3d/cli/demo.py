"""``asfe3d demo``: the whole pipeline on a simulated ADNI-style pair built from the MNI152 template."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from asfe3d.cli.options import add_fusion_options, set_threads, settings_from_args, show_progress
from asfe3d.errors import Asfe3dInputError

__all__ = ["MARKER", "add_parser", "check_demo_folder", "run"]

#: the hidden file that marks a folder as the demo's own: its files are replaced on every run
MARKER = ".asfe3d-demo"
#: the files of the pair the demo makes (in ``<out>/inputs``)
_INPUT_NAMES = frozenset({"mri.nii.gz", "pet.nii.gz", "brain_mask.nii.gz", "true_transform.tfm"})


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = sub.add_parser(
        "demo", help="run the whole pipeline on a simulated ADNI-style pair built from the MNI152 template",
        description="Build an MRI (MNI152 T1, 1 mm) and a simulated FDG PET (2 mm, moved by a known rigid "
                    "transform), run the pipeline, and report the registration error, step times and outputs.",
    )
    p.add_argument("--out", type=Path, default=Path("asfe3d_demo"),
                   help="output folder (default: ./asfe3d_demo): new, empty or an earlier demo's; its demo files are "
                        "replaced on every run, a folder holding files of its own is refused")
    p.add_argument("--oblique", action="store_true", help="put the MRI on an oblique, anisotropic grid")
    p.add_argument("--tracer", choices=("fdg", "amyloid"), default="fdg", help="simulated tracer (default: fdg)")
    p.add_argument("--motion-seed", type=int, default=0, help="seed of the simulated head motion (default: 0)")
    add_fusion_options(p)
    p.set_defaults(func=run)


def _earlier_demo(out: Path) -> bool:
    """``out`` holds only what a demo run writes, with a completion record whose MRI is ``out/inputs/mri.nii.gz``
    as that run left it (a demo folder from before :data:`MARKER` was written)."""
    mri = (out / "inputs" / "mri.nii.gz").resolve()
    names = {p.name for p in out.iterdir()}
    if not (out / "inputs").is_dir() or any(n != "inputs" and not n.startswith("demo_fused_") for n in names):
        return False
    if any(p.name not in _INPUT_NAMES for p in (out / "inputs").iterdir()) or not mri.is_file():
        return False
    for record in out.glob("demo_fused_*.json"):
        try:
            given = json.loads(record.read_text())["inputs"]["mri"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(given, dict) and given.get("path") == str(mri) and given.get("size") == mri.stat().st_size:
            return True
    return False


def check_demo_folder(out: Path) -> None:
    """Make ``out`` the demo's folder, or refuse it before any work.

    The demo replaces its own files on every run, so it writes only into a new or empty folder, one marked as an
    earlier demo's (:data:`MARKER`), or an unmarked folder that holds nothing but an earlier demo run's files; the
    folder is then marked.

    Args:
        out: the ``--out`` folder.

    Raises:
        Asfe3dInputError: ``out`` is a file, holds files of its own, or cannot be created or written.
    """
    if out.exists() and not out.is_dir():
        raise Asfe3dInputError(out, "--out is a file, not a folder")
    if out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir()) and not _earlier_demo(out):
        raise Asfe3dInputError(out, f"holds files that no asfe3d demo wrote (no {MARKER} in it); the demo replaces "
                                    "the files of its folder on every run: choose a new or empty --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
        (out / MARKER).write_text("This folder is asfe3d demo's: its files are replaced by every `asfe3d demo`.\n")
    except OSError as exc:
        raise Asfe3dInputError(out, f"cannot write the demo's output folder: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    """Run ``asfe3d demo``: its outputs (in ``--out``) are its own and are replaced on every run; a folder holding
    files of its own is refused (:func:`check_demo_folder`)."""
    import time

    check_demo_folder(args.out)
    set_threads(args)

    import SimpleITK as sitk

    from asfe3d.cli.fuse import print_result
    from asfe3d.data import make_demo_pair
    from asfe3d.pipeline import fuse_pair
    from asfe3d.registration import registration_error_mm

    t0 = time.perf_counter()
    pair = make_demo_pair(args.out / "inputs", seed=args.motion_seed, oblique=args.oblique, tracer=args.tracer)
    t_make = time.perf_counter() - t0
    print(f"demo pair ({t_make:.1f} s): MRI {pair.mri_path}, PET {pair.pet_path}")
    settings = settings_from_args(args).replace(outputs={"registered_pet": True, "rgb": True, "preview": True,
                                                          "transform": True, "overwrite": True})
    result = fuse_pair(pair.mri_path, pair.pet_path, args.out / f"demo_fused_{args.method}.nii.gz", settings,
                       progress=show_progress(args))
    print_result(result)
    err = registration_error_mm(pair.true_transform, result.transform, sitk.ReadImage(str(pair.mask_path)))
    print(f"registration error vs the known motion over the brain: mean {err['mean']:.2f} mm, "
          f"median {err['median']:.2f} mm, max {err['max']:.2f} mm")
    return 0
