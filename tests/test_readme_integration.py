"""The README's MONAI integration example runs as written (on a small demo pair, in a temporary folder)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet() -> str:
    text = README.read_text()
    block = re.search(r"<!-- integration-example:start -->\s*```python\n(.*?)```\s*<!-- integration-example:end -->",
                      text, re.S)
    assert block, "README lost its integration example"
    return block.group(1)


def test_readme_integration_example_runs(small_pair, tmp_path, monkeypatch, capsys):
    shutil.copy(small_pair.mri_path, tmp_path / "sub01_mri.nii.gz")
    shutil.copy(small_pair.pet_path, tmp_path / "sub01_pet.nii.gz")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_snippet(), str(README), "exec"), namespace)  # noqa: S102 - our own README
    out = Path(namespace["data"]["outputs"]["fused"])
    assert out.resolve() == (tmp_path / "fused" / "sub01_mri_fused.nii.gz").resolve()
    ref, fused = nib.load(tmp_path / "sub01_mri.nii.gz"), nib.load(out)
    assert fused.shape == ref.shape
    np.testing.assert_allclose(fused.affine, ref.affine, atol=1e-5)
    # both inferers produced full volumes on the MRI grid
    image = namespace["data"]["image"]
    for name in ("volumetric", "slicewise"):
        assert tuple(namespace[name].shape) == (1, 1, *image.shape[1:]), name
        assert 0.0 <= float(namespace[name].min()) and float(namespace[name].max()) <= 1.0
    assert str(out) in capsys.readouterr().out
    # "the command's network step": with FusionOutputd, the volumetric prediction is the Fused transform's image
    import torch

    from asfe3d.bundle import FusionOutputd
    from asfe3d.transforms import Fused

    data = namespace["data"]
    pred = FusionOutputd(keys="pred", image_key="image")({"pred": namespace["volumetric"], "image": data["image"],
                                                          "mri": data["mri"]})["pred"]
    command = Fused(keys="image", output_key="fused", method="asfe", mode="volume")({"image": data["image"]})["fused"]
    assert torch.equal(pred.as_tensor(), command.as_tensor())
