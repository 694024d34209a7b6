"""``scripts/compare_fused.py``: two fused volumes side by side; its mistakes are one line, before any volume is read."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tests.evaluation.conftest import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("compare_fused")


def _volume(path, shape=(12, 14, 10), seed=0):
    data = np.random.default_rng(seed).uniform(0, 100, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return str(path)


def test_mistakes_are_one_line_exit_2(script, tmp_path, capsys) -> None:
    """Review 32 #9: a missing input ended in nibabel's traceback, a grid mismatch after all three volumes were
    read, and usage mistakes in argparse's own two-line format."""
    mri, a, b = (_volume(tmp_path / f"{n}.nii.gz", seed=i) for i, n in enumerate("mab"))
    other = _volume(tmp_path / "other.nii.gz", shape=(12, 14, 11))
    (tmp_path / "taken.png").write_bytes(b"mine")
    (tmp_path / "text.nii.gz").write_text("not an image")
    cases = [
        ([mri, a, str(tmp_path / "none.nii.gz"), str(tmp_path / "o.png")], f"{tmp_path / 'none.nii.gz'}: file not found"),
        ([mri, a, other, str(tmp_path / "o.png")], f"{other}: the three volumes must share one grid"),
        ([mri, a, str(tmp_path / "text.nii.gz"), str(tmp_path / "o.png")], "text.nii.gz: cannot be read as an image"),
        ([mri, a, b, str(tmp_path / "taken.png")], "taken.png: exists; pass --overwrite to replace it"),
        ([mri, a, b, str(tmp_path / "o.jpg")], "o.jpg: the figure is written as PNG"),
        ([mri, a, b, str(tmp_path / "o.png"), "--labels", "x"], "--labels: needs two comma-separated names, got 'x'"),
        ([mri, a], "the following arguments are required: b, out (see compare_fused.py --help)"),
    ]
    for argv, expected in cases:
        assert script.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("asfe3d: error: ") and expected in err and err.count("\n") == 1, err
    assert (tmp_path / "taken.png").read_bytes() == b"mine" and not (tmp_path / "o.png").exists()

    assert script.main([mri, a, b, str(tmp_path / "o.png"), "--labels", "before,after"]) == 0
    assert (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob("*.part.png"))
