"""MD5 of every output's data for fixed runs of ``asfe3d fuse``: the byte-identity check of a redesign step.

Builds small inputs (the demo pair and a 3-subject cohort from :func:`asfe3d.data.make_demo_pair` at 3 mm), runs
the command line (a stable interface across refactors) with fixed settings, and prints one line per output file:
``<run>/<file>  <md5>``. NIfTI files are hashed on their header block and their data array (not the gzip bytes,
whose header holds a time); ``.tfm`` and ``.png`` files on their bytes. Completion records (``.json``) and reports
hold timings and times, so they are left out. Run it before and after a change and ``diff`` the two listings::

    PYTHONPATH=$PWD python scripts/output_md5.py /tmp/md5_work > before.txt
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

#: (run name, extra command-line arguments); every run also gets the common settings in ``COMMON``
RUNS = (
    ("demo_volume", ["--method", "asfe", "--mode", "volume", "--rgb", "--save-registered-pet", "--save-transform",
                     "--preview"]),
    ("demo_slice", ["--method", "asfe", "--mode", "slice", "--rgb"]),
    ("demo_slice_axis1", ["--method", "asfe", "--mode", "slice", "--slice-axis", "1"]),
    ("demo_wavelet_unit", ["--method", "wavelet", "--output-scale", "unit", "--rgb", "--colormap", "inferno"]),
    ("demo_volume_roi", ["--method", "asfe", "--mode", "volume", "--roi-size", "32", "40", "24"]),
)
COMMON = ["--device", "cpu", "--threads", "2", "--no-progress", "--seed", "0"]


def file_md5(path: Path) -> str:
    """MD5 of a file's data: NIfTI header block + array bytes; other files' bytes."""
    digest = hashlib.md5()
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib
        import numpy as np

        img = nib.load(str(path))
        digest.update(img.header.binaryblock)
        digest.update(np.ascontiguousarray(np.asanyarray(img.dataobj)).tobytes())
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _fuse(args: list[str], env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "asfe3d.cli", "fuse", *args, *COMMON]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")


def main(argv: list[str] | None = None) -> int:
    """Build the inputs (once), run every case, print the MD5 listing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="work folder (inputs kept between calls; outputs replaced)")
    parser.add_argument("--resolution", type=float, default=3.0, help="MNI template voxel size, mm (default 3)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    inputs = args.work / "inputs"
    if not (inputs / "cohort.csv").is_file():
        from asfe3d.data import make_demo_pair

        rows = ["subject,mri,pet"]
        for seed in (0, 1, 2, 3):
            pair = make_demo_pair(inputs / f"s{seed}", seed=seed, resolution=args.resolution)
            if seed:
                rows.append(f"sub{seed},{pair.mri_path},{pair.pet_path}")
        (inputs / "cohort.csv").write_text("\n".join(rows) + "\n")
    out = args.work / "outputs"
    for name, extra in RUNS:
        (out / name).mkdir(parents=True, exist_ok=True)
        _fuse([str(inputs / "s0" / "mri.nii.gz"), str(inputs / "s0" / "pet.nii.gz"), "-o",
               str(out / name / "fused.nii.gz"), "--overwrite", *extra], env)
    _fuse(["--datalist", str(inputs / "cohort.csv"), "--output-dir", str(out / "cohort"), "--overwrite",
           "--rgb", "--save-registered-pet", "--save-transform"], env)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if path.suffix in (".json", ".html", ".csv") or path.name.startswith("."):
            continue
        print(f"{path.relative_to(out)}  {file_md5(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
