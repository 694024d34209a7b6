"""``scripts/wins_feasibility.py``: the family of hand-made fusions it searches, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.evaluation.conftest import load_script


@pytest.fixture(scope="module")
def wf():
    return load_script("wins_feasibility")


def _pair(shape=(20, 22, 18), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(np.float32), rng.random(shape).astype(np.float32)


def test_parse_point_fills_defaults(wf):
    p = wf.parse_point("g=1.2,w=0.1")
    assert p["g"] == 1.2 and p["w"] == 0.1 and p["fwhm"] == 6.0 and p["mx"] == 0.0


@pytest.mark.parametrize("spec, match", [("q=1", "unknown parameter 'q'"), ("g=abc", "g='abc'")])
def test_parse_point_bad(wf, spec, match):
    with pytest.raises(ValueError, match=match):
        wf.parse_point(spec)


def test_plain_point_is_the_highpass_method(wf):
    from asfe3d.fusion import get_fuser

    mri, pet = _pair()
    ours = wf.PointFusion(wf.parse_point("g=1"))(mri, pet, spacing=(1.5, 1.5, 2.0))
    ref = get_fuser("highpass")(mri, pet, spacing=(1.5, 1.5, 2.0))
    np.testing.assert_allclose(np.clip(ours, 0, 1), np.clip(np.asarray(ref), 0, 1), atol=1e-6)  # both clipped as scored


def test_mri_weight_and_gated_max(wf):
    mri, pet = _pair(seed=1)
    lin = wf.PointFusion(wf.parse_point("g=1,w=0.2"))(mri, pet)
    base = wf.PointFusion(wf.parse_point("g=1"))(mri, pet)
    np.testing.assert_allclose(lin - base, 0.2 * (mri - pet), atol=1e-5)
    pet0 = np.zeros_like(pet)  # no uptake anywhere: the gate is fully open, the max with 0.8 * MRI applies
    gated = wf.PointFusion(wf.parse_point("g=1,mx=0.8,tg=0.2"))(mri, pet0)
    assert np.all(gated >= 0.8 * mri - 1e-6)
    pet1 = np.ones_like(pet)  # uptake everywhere: the gate is shut, nothing changes
    np.testing.assert_allclose(wf.PointFusion(wf.parse_point("g=1,mx=0.8,tg=0.2"))(mri, pet1),
                               wf.PointFusion(wf.parse_point("g=1"))(mri, pet1), atol=1e-6)


def test_main_refuses_missing_inputs(wf, tmp_path, capsys):
    rc = wf.main(["--pairs", str(tmp_path / "nope.csv"), "--baseline", str(tmp_path / "b.csv"),
                  "--out", str(tmp_path / "o.csv")])
    assert rc == 2
    assert capsys.readouterr().err.strip() == f"asfe3d: error: {tmp_path / 'nope.csv'}: no such file"


def test_main_refuses_existing_output(wf, tmp_path, capsys):
    for name in ("p.csv", "b.csv", "o.csv"):
        (tmp_path / name).write_text("x\n", encoding="utf-8")
    rc = wf.main(["--pairs", str(tmp_path / "p.csv"), "--baseline", str(tmp_path / "b.csv"),
                  "--out", str(tmp_path / "o.csv")])
    assert rc == 2 and "exists" in capsys.readouterr().err
    assert (tmp_path / "o.csv").read_text(encoding="utf-8") == "x\n"
