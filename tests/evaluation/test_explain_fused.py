"""``scripts/explain_fused.py``: the per-region fit of a fused image, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.evaluation.conftest import load_script


@pytest.fixture(scope="module")
def ef():
    return load_script("explain_fused")


def test_fit_recovers_each_regions_recipe(ef):
    from asfe3d.metrics.bands import band_split

    rng = np.random.default_rng(0)
    shape = (24, 26, 20)
    mri, pet = rng.random(shape), rng.random(shape)
    head = np.ones(shape, bool)
    brain = np.zeros(shape, bool)
    brain[4:20, 5:21, 4:16] = True
    detail = band_split(mri, 1.0, 6.0)[1]
    fused = np.where(brain, 0.9 * pet + 0.1 * mri + 1.2 * detail, 0.5 * mri + 1.0 * detail + 0.05)
    fit = ef.fit_regions(fused, mri, pet, brain, head, 1.0)
    assert fit["brain"]["pet"] == pytest.approx(0.9, abs=1e-6)
    assert fit["brain"]["detail"] == pytest.approx(1.2, abs=1e-6)
    assert fit["rest"]["mri"] == pytest.approx(0.5, abs=1e-6) and fit["rest"]["const"] == pytest.approx(0.05, abs=1e-6)
    assert fit["brain"]["share"] + fit["rest"]["share"] == pytest.approx(1.0)


def test_fit_refuses_mismatched_shapes_and_empty_regions(ef):
    a = np.zeros((8, 8, 8))
    with pytest.raises(ValueError, match="share one shape"):
        ef.fit_regions(a, a, a[:4], a > 0, a == 0, 1.0)
    with pytest.raises(ValueError, match="region 'brain' has 0 voxels"):
        ef.fit_regions(a, a, a, a > 0, a == 0, 1.0)


def test_main_refuses_missing_pairs_and_bad_width(ef, tmp_path, capsys):
    assert ef.main(["--pairs", str(tmp_path / "nope.csv"), "--case", "x"]) == 2
    assert capsys.readouterr().err.strip() == f"asfe3d: error: {tmp_path / 'nope.csv'}: no such file"
    (tmp_path / "p.csv").write_text("subject,mri,pet\n", encoding="utf-8")
    assert ef.main(["--pairs", str(tmp_path / "p.csv"), "--case", "x", "--fwhm", "-1"]) == 2
    assert "--fwhm: must be > 0 mm, got -1.0" in capsys.readouterr().err
