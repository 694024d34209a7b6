"""The bundle's "must show" numbers, end to end through the command lines (``python -m tests.bundle.must_show``).

On a demo pair (3 mm, 66 x 78 x 63 voxels, so that 64^3 windows really slide): ``python -m monai.bundle run`` from a
foreign folder with absolute paths, with and without ``--inferer#roi_size [64,64,64]``; both outputs on the MRI's
grid; their difference; the slice variant against ``asfe3d fuse --method asfe --mode slice``; ``ckpt_export``
(scripted, the README's command) against the eager network on whole volumes of 64^3, 96x80x72 and 100x90x37. Takes a few minutes on 2 CPU cores; prints one line per number.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "asfe3d_mri_pet_fusion"
SHIPPED_3D = ROOT / "asfe3d" / "weights" / "asfe3d_mri_pet.pt"


def _sh(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def _grid(fused: Path, mri: Path) -> str:
    a, m = nib.load(str(fused)), nib.load(str(mri))
    same = a.shape == m.shape and np.allclose(a.affine, m.affine, atol=1e-6)
    codes = (int(a.header["qform_code"]), int(a.header["sform_code"])) == \
        (int(m.header["qform_code"]), int(m.header["sform_code"]))
    return f"shape {a.shape} (MRI {m.shape}), affine equal: {same}, header codes equal: {codes}"


def _data(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)


def main(resolution: float = 3.0) -> None:
    """Run every check and print the numbers.

    Args:
        resolution: demo MRI voxel size in mm (3: 66 x 78 x 63 voxels).
    """
    import torch

    from asfe3d.data import make_demo_pair
    from asfe3d.fusion.weights import load_weights
    from asfe3d.networks.nets import ASFEFusion

    work = Path(tempfile.mkdtemp(prefix="asfe3d_must_show_"))
    cwd = work / "elsewhere"
    cwd.mkdir()
    demo = make_demo_pair(work / "demo", resolution=resolution, mri_spacing=(resolution,) * 3,
                          pet_spacing=resolution + 1, seed=0)
    mri, pet = Path(demo.mri_path), Path(demo.pet_path)
    datalist = work / "cohort.csv"
    datalist.write_text(f"subject,mri,pet\ndemo,{mri},{pet}\n")
    configs = BUNDLE / "configs"
    run = [sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(BUNDLE), "--datalist", str(datalist),
           "--device", "cpu"]
    print(f"demo pair: {mri} {nib.load(str(mri)).shape}, {pet} {nib.load(str(pet)).shape}; cwd {cwd}")

    inference = ["--config_file", str(configs / "inference.json")]
    roi64 = ["--inferer#roi_size", "[64,64,64]"]
    # rigid registration (the default) and "none" (the roi is then the only difference between the two runs)
    for reg in ("rigid", "none"):
        a, b = work / f"default_{reg}", work / f"roi64_{reg}"
        _sh(run + inference + ["--registration", reg, "--output_dir", str(a)], cwd)
        _sh(run + inference + ["--registration", reg, "--output_dir", str(b)] + roi64, cwd)
        a, b = a / "demo_fused.nii.gz", b / "demo_fused.nii.gz"
        print(f"[registration {reg}] default (roi 128^3 clipped to the volume): {_grid(a, mri)}")
        print(f"[registration {reg}] --inferer#roi_size [64,64,64]:              {_grid(b, mri)}")
        print(f"[registration {reg}] max |default - roi64| = {np.abs(_data(a) - _data(b)).max():.6g}, mean "
              f"{np.abs(_data(a) - _data(b)).mean():.6g} (fused range {_data(a).min():.4g}..{_data(a).max():.4g})")

    slice_cfg = f"['{configs / 'inference.json'}','{configs / 'inference_slice.json'}']"
    _sh(run + ["--config_file", slice_cfg, "--registration", "none", "--output_dir", str(work / "slice")], cwd)
    _sh([sys.executable, "-m", "asfe3d.cli", "fuse", str(mri), str(pet), "-o", str(work / "cli_slice.nii.gz"),
         "--method", "asfe", "--mode", "slice", "--registration", "none", "--device", "cpu", "--no-progress"], cwd)
    s, c = work / "slice" / "demo_fused.nii.gz", work / "cli_slice.nii.gz"
    print(f"slice variant: {_grid(s, mri)}; max |bundle slice - asfe3d fuse --mode slice| "
          f"(registration none) = {np.abs(_data(s) - _data(c)).max():.6g}")

    ts = work / "model.ts"
    _sh([sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(ts),
         "--ckpt_file", str(BUNDLE / "models" / "model.pt"), "--meta_file", str(configs / "metadata.json"),
         "--config_file", str(configs / "inference.json")], cwd)
    scripted = torch.jit.load(str(ts))
    net = ASFEFusion(**load_weights(SHIPPED_3D)["config"])
    net.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", weights_only=True))
    net.eval()
    for shape in ((64, 64, 64), (96, 80, 72), (100, 90, 37)):
        x = torch.rand(1, 2, *shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            diff = (scripted(x) - net(x)).abs().max().item()
        print(f"ckpt_export (scripted, the README's command) vs eager on a random 1x2x{'x'.join(map(str, shape))} "
              f"volume: max |diff| = {diff:.6g}")
    print(f"files under {work}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
