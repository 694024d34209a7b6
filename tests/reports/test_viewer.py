"""The interactive NiiVue viewer: opt-in, inlined once, volumes in their units at 2 mm, loads in headless Chromium."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from asfe3d.reports import write_report
from asfe3d.reports.pair import render_pair_section
from asfe3d.reports.viewer import niivue_script, viewer_volume
from tests.reports.test_reports import RESULT, _volumes


def _section(viewer: bool, title: str = "ses-1"):
    mri, pet, fused = _volumes(shape=(24, 26, 12), zooms=(1.0, 1.0, 2.5))
    return render_pair_section(mri_image=mri, pet_on_mri_image=pet, fused_image=fused, result=RESULT,
                               pet_as_read_image=pet, title=title, viewer=viewer)


def test_viewer_volume_keeps_units_and_places_blocks() -> None:
    data = np.random.default_rng(0).uniform(-1000, 1500, (9, 8, 6)).astype(np.float32)
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    affine[:3, 3] = [-10, -20, 5]
    out = nib.Nifti1Image.from_bytes(gzip.decompress(viewer_volume(nib.Nifti1Image(data, affine), 2.0)))
    assert out.get_data_dtype() == np.int16 and out.shape == (4, 4, 6)  # 2x2x1 blocks, the odd edge dropped
    block = data[:8, :8].reshape(4, 2, 4, 2, 6).mean(axis=(1, 3))
    np.testing.assert_allclose(out.get_fdata(), block, atol=2500 / 65535 * 2)  # int16 steps of the range
    np.testing.assert_allclose(out.affine[:3, :3], np.diag([2.0, 2.0, 2.5]))
    np.testing.assert_allclose(out.affine[:3, 3], [-9.5, -19.5, 5.0])  # the centre of the first block
    with pytest.raises(ValueError, match="viewer_mm must be a number > 0"):
        viewer_volume(nib.Nifti1Image(data, affine), 0)


def test_viewer_is_opt_in_and_inlined_once(tmp_path: Path) -> None:
    plain = write_report(tmp_path / "plain.html", [_section(False)], title="sub-01").read_text(encoding="utf-8")
    assert "niivue" not in plain.lower()
    page = write_report(tmp_path / "viewer.html", [_section(True), _section(True, "ses-2")], title="sub-01")
    text = page.read_text(encoding="utf-8")
    assert text.count(niivue_script()[:200]) == 1  # the bundle once for two viewers
    assert text.count('class="viewer"') == 2 and not re.search(r'(src|href)="(https?:|file:|/)', text)
    configs = [json.loads(m.replace("<\\/", "</")) for m in re.findall(r"const cfg = (\{.*?\});\n", text)]
    assert len(configs) == 2 and [v["name"] for v in configs[0]["volumes"]] == ["mri.nii.gz", "pet.nii.gz",
                                                                                  "fused.nii.gz"]
    pet = nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(
        configs[0]["volumes"][1]["url"].split(",", 1)[1])))
    assert pet.shape[2] == 12 and 150 < float(pet.get_fdata().max()) <= 251  # PET values, not [0, 1]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium")
def test_viewer_loads_in_headless_chromium(tmp_path: Path) -> None:
    page = write_report(tmp_path / "viewer.html", [_section(True)], title="sub-01")
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--use-angle=swiftshader",
                          "--enable-unsafe-swiftshader", "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
                         capture_output=True, encoding="utf-8", errors="replace", timeout=180).stdout
    states = re.findall(r'class="viewer" id="[^"]+" data-state="([^"]*)"', dom)
    assert states == ["ready"], states
