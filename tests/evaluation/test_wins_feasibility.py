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


def test_outside_share_and_gain(wf):
    mri, pet = _pair(seed=2)
    pet0 = np.zeros_like(pet)  # no uptake: the support mask is fully "outside", wo of the MRI is shown there
    half = wf.PointFusion(wf.parse_point("g=1,t=0.2,wo=0.5"))(mri, pet0)
    plain = wf.PointFusion(wf.parse_point("g=1"))(mri, pet0)
    np.testing.assert_allclose(half, 0.5 * mri + 0.5 * plain, atol=1e-5)
    np.testing.assert_allclose(wf.PointFusion(wf.parse_point("g=1,k=1.1"))(mri, pet),
                               1.1 * wf.PointFusion(wf.parse_point("g=1"))(mri, pet), atol=1e-5)


def test_cache_never_serves_another_pets_result(wf):
    """The defect PET differs from the normal one only in a small ball: the cached laplacian must follow it."""
    from asfe3d.fusion import get_fuser

    mri, pet = _pair(seed=3)
    defect = pet.copy()
    defect[8:10, 9:11, 7:9] *= 0.7
    point = wf.PointFusion(wf.parse_point("g=1,lap=1"))
    first, second = point(mri, pet), point(mri, defect)
    np.testing.assert_allclose(second, np.asarray(get_fuser("laplacian")(mri, defect)), atol=1e-5)
    assert not np.allclose(first, second)


def test_random_points_are_in_range_and_parse(wf):
    rng = np.random.default_rng(0)
    for _ in range(50):
        spec = wf.random_point(rng)
        p = wf.parse_point(spec)
        for key, (_, lo, hi) in wf.RANGES.items():
            assert p[key] == wf.PARAMS[key] or lo <= p[key] <= hi, (spec, key)
        assert not (p["tg"] and not p["mx"])
    around = wf.parse_point("g=1,w=0.1,mx=0.5")
    moved = wf.parse_point(wf.random_point(rng, around, scale=0.5))
    assert moved["lap"] == 0 and moved["t"] == 0 and moved["mx"] > 0  # unused parameters stay unused


def test_main_refuses_refine_without_random(wf, tmp_path, capsys):
    for name in ("p.csv", "b.csv"):
        (tmp_path / name).write_text("x\n", encoding="utf-8")
    rc = wf.main(["--pairs", str(tmp_path / "p.csv"), "--baseline", str(tmp_path / "b.csv"),
                  "--out", str(tmp_path / "o.csv"), "--refine", "3"])
    assert rc == 2 and "--refine 3" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_high_pass_modulation_scales_the_detail_by_the_pet(wf):
    from asfe3d.metrics.bands import band_split

    mri, pet = _pair(seed=4)
    lo, de = band_split(mri, 1.0, 6.0)
    full = wf.PointFusion(wf.parse_point("g=1,hpm=1"))(mri, pet)
    ratio = np.clip(pet / np.maximum(lo, 0.02), 0, 3)
    np.testing.assert_allclose(full, pet + de * ratio, atol=1e-5)
    rng = np.random.default_rng(1)  # refining keeps a parameter that random draws never use
    assert wf.parse_point(wf.random_point(rng, wf.parse_point("g=1,hpm=0.5")))["hpm"] == 0.5
