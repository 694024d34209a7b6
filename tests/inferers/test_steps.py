"""Tests of :mod:`asfe3d.inferers.steps`: the steps after the network are one frozen object that refuses a bad
setting when it is made, quoting the value (what each step does to an image is tested with the inferer)."""

from __future__ import annotations

import pytest

from asfe3d.inferers import FusionSteps


@pytest.mark.parametrize("kwargs,quoted", [
    ({"detail_fwhm_mm": 0}, "detail_fwhm_mm must be None or a number > 0 \\(mm\\), got 0"),
    ({"detail_fwhm_mm": "6"}, "detail_fwhm_mm must be None or a number > 0 \\(mm\\), got '6'"),
])
def test_bad_band_width_refused(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        FusionSteps(**kwargs)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), True, "1"])
def test_bad_consistency_strength_refused_quoting_the_value(value):
    with pytest.raises(ValueError, match=r"pet_consistency must be a number in \[0, 1\], got ") as err:
        FusionSteps(pet_consistency=value)
    assert str(err.value).endswith(repr(value))


@pytest.mark.parametrize("value", [(1.5,), (0.0, 0.5), (1.5, 1.2), "1.5,0.5", (1.5, True), (float("nan"), 0.5)])
def test_bad_coarse_consistency_refused(value):
    with pytest.raises(ValueError,
                       match=r"pet_consistency_coarse must be None or \(mm > 0, strength in \[0, 1\]\), got"):
        FusionSteps(pet_consistency=0.5, pet_consistency_coarse=value)


@pytest.mark.parametrize("kwargs, match", [
    ({"pet_consistency_min_voxel_mm": -1.0}, "pet_consistency_min_voxel_mm"),
    ({"pet_consistency_optional": "yes"}, "pet_consistency_optional must be True or False, got 'yes'"),
])
def test_bad_consistency_gate_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FusionSteps(pet_consistency=0.5, **kwargs)


@pytest.mark.parametrize("value", [(0.4,), (1.5, 12.0), (0.4, 0.0), (0.4, -6.0), "0.4,12", (0.4, True),
                                   (float("nan"), 12.0)])
def test_bad_fine_consistency_refused_quoting_the_value(value):
    with pytest.raises(ValueError,
                       match=r"pet_consistency_fine must be None or \(strength in \[0, 1\], fwhm_mm > 0\), got") as err:
        FusionSteps(pet_consistency=0.25, pet_consistency_min_voxel_mm=0.95, pet_consistency_fine=value)
    assert str(err.value).endswith(repr(value))


def test_fine_consistency_needs_the_gate():
    with pytest.raises(ValueError, match=r"pet_consistency_fine \(0.4, 12.0\) needs pet_consistency_min_voxel_mm"):
        FusionSteps(pet_consistency=0.25, pet_consistency_fine=(0.4, 12.0))


@pytest.mark.parametrize("kwargs, match", [
    ({"pet_detail_select": 1.5}, r"pet_detail_select must be a number in \[0, 1\], got 1.5"),
    ({"pet_detail_select": True}, r"pet_detail_select must be a number in \[0, 1\], got True"),
    ({"pet_detail_ratio": 0.0}, "pet_detail_ratio must be a number > 0, got 0.0"),
    ({"pet_detail_ratio": float("inf")}, "pet_detail_ratio must be a number > 0, got inf"),
    ({"pet_detail_ratio": "2"}, "pet_detail_ratio must be a number > 0, got '2'"),
    ({"pet_detail_select_min_voxel_mm": -1.0}, "pet_detail_select_min_voxel_mm"),
    ({"pet_detail_floor": -0.5}, "pet_detail_floor must be a number >= 0, got -0.5"),
    ({"pet_detail_floor": "1"}, "pet_detail_floor must be a number >= 0, got '1'"),
    ({"pet_detail_floor_max_voxel_mm": 0.0}, "pet_detail_floor_max_voxel_mm"),
])
def test_bad_detail_select_settings_refused_quoting_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FusionSteps(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"detail_steer": 0.0}, "detail_steer must be None or a number > 0, got 0.0"),
    ({"detail_steer": "0.5"}, "detail_steer must be None or a number > 0, got '0.5'"),
    ({"detail_steer": True}, "detail_steer must be None or a number > 0, got True"),
    ({"detail_steer_max_gain": 0.9}, "detail_steer_max_gain must be a number >= 1, got 0.9"),
    ({"detail_steer_max_gain": float("nan")}, "detail_steer_max_gain must be a number >= 1, got nan"),
    ({"detail_steer_max_voxel_mm": 0}, "detail_steer_max_voxel_mm"),
    ({"detail_steer_max_gain_coarse": (1.5, 0.9)},
     r"detail_steer_max_gain_coarse must be None or \(mm > 0, cap >= 1\), got \(1.5, 0.9\)"),
    ({"detail_steer_max_gain_coarse": (-1, 1.5)}, r"detail_steer_max_gain_coarse must be None or \(mm > 0"),
    ({"detail_steer_max_gain_coarse": 1.5},
     r"detail_steer_max_gain_coarse must be None or \(mm > 0, cap >= 1\), got 1.5"),
])
def test_bad_detail_steer_settings_refused_quoting_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FusionSteps(**kwargs)
