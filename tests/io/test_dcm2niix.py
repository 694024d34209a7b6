"""asfe3d's resampling of tilted / gapped DICOM series agrees with dcm2niix's (skipped without dcm2niix).

Run as a script to print the agreement table: ``python -m tests.io.test_dcm2niix``.

Series: a smooth CT-like analytic phantom sampled at each slice's pixels (96 x 110 pixels of 1.8 mm), 40 slices,
(a) a GE-style 18.5 degree gantry tilt at 3 mm steps, (b) gaps drawn from 1.1 to 7 mm, (c) both. dcm2niix writes
its corrected volume (``_Tilt_1`` / ``_Eq_1`` / ``_Tilt_Eq_1``); asfe3d's volume is resampled (linear) onto that
grid and compared on the voxels both cover; both are also compared with the phantom itself at the voxel centres.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.io import read_volume
from asfe3d.io.convert import LPS_TO_RAS, sitk_image_from_ras_affine
from tests.io.helpers import write_ct_series

NX, NY, SX, SY = 96, 110, 1.8, 1.8
CASES = {"tilt": "_Tilt_1", "gap": "_Eq_1", "tiltgap": "_Tilt_Eq_1"}
pytestmark = pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix is not installed")


def phantom(pts_lps: np.ndarray) -> np.ndarray:
    """Smooth CT-like values at LPS points ``(..., 3)``: a soft ellipsoid with three blobs, air outside."""
    r = np.linalg.norm(pts_lps / np.array([70.0, 85.0, 60.0]), axis=-1)
    v = 1000.0 / (1 + np.exp((r - 1) * 25))
    for cen, s, a in [((20, 10, 5), 15, 400), ((-25, -15, -10), 10, -300), ((0, 30, 20), 8, 600)]:
        v += a * np.exp(-np.sum((pts_lps - np.array(cen)) ** 2, axis=-1) / (2 * s * s))
    return v - 1000 * (r > 1.15)


def depths_for(case: str) -> np.ndarray:
    if case == "tilt":
        return np.arange(40) * 3.0
    rng = np.random.default_rng(0)
    return np.concatenate([[0.0], np.cumsum(rng.uniform(1.1, 7.0, size=39))])


def make_series(folder: Path, case: str) -> None:
    tilt = 18.5 if "tilt" in case else 0.0
    origin = np.array([-(NX - 1) * SX / 2, -(NY - 1) * SY / 2 - 20, -80.0])
    positions = [origin + np.array([0.0, d * np.tan(np.radians(tilt)), d]) for d in depths_for(case)]
    ii, jj = np.meshgrid(np.arange(NX), np.arange(NY), indexing="ij")
    arr = np.stack([phantom(p + ii[..., None] * SX * np.array([1.0, 0, 0]) + jj[..., None] * SY * np.array([0, 1.0, 0]))
                    for p in positions], axis=-1)
    write_ct_series(folder, np.round(arr).astype(np.int16), positions, np.eye(3), (SX, SY),
                    f"1.2.826.0.1.3680043.2.1125.9{len(case)}", gantry_tilt=tilt)


def compare(case: str, work: Path) -> dict[str, float]:
    """Convert one case with both tools and measure their agreement."""
    src, out = work / case / "dicom", work / case / "d2n"
    make_series(src, case)
    out.mkdir(parents=True)
    subprocess.run(["dcm2niix", "-z", "y", "-b", "n", "-o", str(out), "-f", case, str(src)], check=True,
                   capture_output=True)
    ref_img = nib.load(out / f"{case}{CASES[case]}.nii.gz")
    ref = np.asarray(ref_img.get_fdata(dtype=np.float32))
    mine = read_volume(src, role="CT")
    ref_sitk = sitk_image_from_ras_affine(ref, ref_img.affine)
    on_ref = sitk.GetArrayFromImage(sitk.Resample(mine.image, ref_sitk, sitk.Transform(), sitk.sitkLinear, np.nan,
                                                  sitk.sitkFloat32)).transpose(2, 1, 0)
    filled = np.zeros(mine.shape_xyz, np.float32)
    filled[mine.array_xyz() == mine.info["dicom_resampled"]["fill_value"]] = 1  # outside every slice (or air)
    fill_img = sitk.GetImageFromArray(filled.transpose(2, 1, 0))
    fill_img.CopyInformation(mine.image)
    fill_on_ref = sitk.GetArrayFromImage(sitk.Resample(fill_img, ref_sitk, sitk.Transform(), sitk.sitkLinear, 1.0,
                                                       sitk.sitkFloat32)).transpose(2, 1, 0)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in ref.shape], indexing="ij"), axis=-1).reshape(-1, 3)
    ras = ijk @ ref_img.affine[:3, :3].T + ref_img.affine[:3, 3]
    truth = phantom(ras @ LPS_TO_RAS.T).reshape(ref.shape)
    inside = np.isfinite(on_ref) & (fill_on_ref == 0) & (ref > -999) & (truth > -999)
    diff = on_ref[inside] - ref[inside]
    # geometry: the grids' axes (up to order and sign: dcm2niix flips rows) and the box they cover
    def box(aff: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        c = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
        pts = (c @ aff.T)[:, :3]
        return np.stack([pts.min(axis=0), pts.max(axis=0)])

    axes_mine = mine.affine_ras[:3, :3] / np.linalg.norm(mine.affine_ras[:3, :3], axis=0)
    spacing_ref = np.linalg.norm(ref_img.affine[:3, :3], axis=0)
    axes_ref = ref_img.affine[:3, :3] / spacing_ref
    return {
        "voxels_compared": int(inside.sum()),
        "mean_abs_diff": float(np.abs(diff).mean()),
        "p99_abs_diff": float(np.percentile(np.abs(diff), 99)),
        "corr": float(np.corrcoef(on_ref[inside], ref[inside])[0, 1]),
        "asfe3d_vs_truth_mae": float(np.abs(on_ref[inside] - truth[inside]).mean()),
        "dcm2niix_vs_truth_mae": float(np.abs(ref[inside] - truth[inside]).mean()),
        "value_range": float(np.ptp(ref[inside])),
        "axis_angle_deg": float(np.degrees(np.arccos(np.clip(np.abs(axes_mine.T @ axes_ref).max(axis=1), 0, 1))).max()),
        "box_diff_mm": float(np.abs(box(mine.affine_ras, mine.shape_xyz) - box(ref_img.affine, ref.shape)).max()),
        "asfe3d_spacing": [round(float(s), 4) for s in mine.image.GetSpacing()],
        "dcm2niix_spacing": [round(float(s), 4) for s in spacing_ref],
        "asfe3d_grid": list(mine.shape_xyz),
        "dcm2niix_grid": list(ref.shape),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_agrees_with_dcm2niix(tmp_path, case):
    m = compare(case, tmp_path)
    assert m["voxels_compared"] > 100_000
    assert m["corr"] > 0.99 and m["mean_abs_diff"] < 0.02 * m["value_range"]
    assert m["axis_angle_deg"] < 0.01 and m["box_diff_mm"] < 0.5
    # not worse than dcm2niix against the phantom itself
    assert m["asfe3d_vs_truth_mae"] <= 1.1 * m["dcm2niix_vs_truth_mae"] + 0.5


if __name__ == "__main__":  # pragma: no cover - measurement script
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        logging.disable(logging.WARNING)
        for name in sorted(CASES):
            print(name, compare(name, Path(tmp)), flush=True)
    sys.exit(0)
