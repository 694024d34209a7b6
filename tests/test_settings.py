"""The one settings object: frozen, grouped, checked once (quoting the value), recorded whole; the command line's
defaults are the settings' defaults, and the command line's options are the settings' flat names."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

from asfe3d import defaults
from asfe3d.errors import Asfe3dInputError
from asfe3d.settings import FLAT_NAMES, OPTIONAL_OUTPUTS, Settings, recorded_setting


def _parser():
    from asfe3d.cli import build_parser

    return build_parser()


@pytest.mark.parametrize("command", [["fuse", "m.nii.gz", "p.nii.gz"], ["demo"], ["bids", "in", "out", "participant"]])
def test_cli_defaults_are_the_settings_defaults(command):
    from asfe3d.cli.options import settings_from_args

    args = _parser().parse_args(command)
    assert settings_from_args(args) == Settings()
    for dest, (group, name) in FLAT_NAMES.items():  # every option a command offers defaults to the field's default
        if hasattr(args, dest):
            field = next(f for f in dataclasses.fields(type(getattr(Settings(), group))) if f.name == name)
            assert getattr(args, dest) == field.default, dest


def test_defaults_live_in_defaults_py():
    s = Settings()
    assert (s.fusion.method, s.fusion.mode, s.fusion.device, s.fusion.slice_axis) == (
        defaults.DEFAULT_METHOD, defaults.DEFAULT_MODE, defaults.DEFAULT_DEVICE, defaults.DEFAULT_SLICE_AXIS)
    assert (s.registration.method, s.registration.qc, s.registration.seed, s.registration.threads,
            s.registration.min_overlap) == (defaults.DEFAULT_REGISTRATION, defaults.DEFAULT_QC, defaults.DEFAULT_SEED,
                                            defaults.DEFAULT_REGISTRATION_THREADS, defaults.DEFAULT_MIN_OVERLAP)
    assert (s.outputs.scale, s.outputs.colormap) == (defaults.DEFAULT_OUTPUT_SCALE, defaults.DEFAULT_COLORMAP)
    assert (s.inputs.frame_realign, s.inputs.frame_reference, s.inputs.nifti_geometry) == (
        defaults.DEFAULT_FRAME_REALIGN, defaults.DEFAULT_FRAME_REFERENCE, defaults.DEFAULT_NIFTI_GEOMETRY)


def test_cli_options_map_onto_settings():
    """Every flat name is a field of its group, and every field of every group has a flat name (one table)."""
    fields = {(group, f.name) for group in ("inputs", "registration", "fusion", "outputs")
              for f in dataclasses.fields(type(getattr(Settings(), group)))}
    assert set(FLAT_NAMES.values()) == fields and len(FLAT_NAMES) == len(fields)
    args = _parser().parse_args(["fuse", "m", "p", "--method", "mean", "--slice-axis", "1", "--roi-size", "8", "9",
                                 "10", "--registration-threads", "0", "--no-frame-realign", "--rgb", "--overwrite"])
    from asfe3d.cli.options import settings_from_args

    s = settings_from_args(args)
    assert (s.fusion.method, s.fusion.slice_axis, s.fusion.roi_size) == ("mean", 1, (8, 9, 10))
    assert s.registration.threads is None and s.inputs.frame_realign is False
    assert s.outputs.rgb is True and s.outputs.overwrite is True


@pytest.mark.parametrize("flat, expected", [
    ({"method": "nope"}, "method: unknown fusion method 'nope'"),
    ({"mode": "2d"}, "mode: must be 'slice' or 'volume', got '2d'"),
    ({"registration": "elastic"}, "registration: must be one of"),
    ({"qc": "loose"}, "qc: must be one of ('warn', 'strict'), got 'loose'"),
    ({"seed": -1}, "seed: must be an integer in [0, 2147483646], got -1"),
    ({"seed": True}, "seed: must be an integer in [0, 2147483646], got True"),
    ({"roi_size": (8, 8)}, "roi_size: must be three integers >= 1, got (8, 8)"),
    ({"detail_injection": -0.5}, "detail_injection: must be a number in [0, 4], got -0.5"),
    ({"detail_injection": float("nan")}, "detail_injection: must be a number in [0, 4], got nan"),
    ({"slice_axis": 3}, "slice_axis: must be 'auto', 0, 1 or 2, got 3"),
    ({"pet_frame": -2}, "pet_frame: must be an integer >= 0, got -2"),
    ({"mri_frame": 1.5}, "mri_frame: must be an integer >= 0, got 1.5"),
    ({"frame_reference": "first"}, "frame_reference: must be 'mean' or a frame index >= 0, got 'first'"),
    ({"pet_units": "bq"}, "pet_units: must be None or 'suv', got 'bq'"),
    ({"nifti_geometry": "both"}, "nifti_geometry: must be 'auto', 'sform' or 'qform', got 'both'"),
    ({"min_overlap": 1.5}, "min_overlap: must be a fraction in [0, 1], got 1.5"),
    ({"registration_threads": 0}, "registration_threads: must be None or an integer in [1, 1024], got 0"),
    ({"registration_threads": 10**11}, "registration_threads: must be None or an integer in [1, 1024], got "
                                       "100000000000"),
    ({"output_scale": "percent"}, "output_scale: must be one of ('mri', 'unit'), got 'percent'"),
    ({"colormap": "nosuchmap"}, "colormap: unknown colour map 'nosuchmap'"),
    ({"device": "tpu"}, "device: must be auto, cpu or cuda[:N], got 'tpu'"),
    ({"rgb": 3}, "rgb: must be True, False or a path, got 3"),
])
def test_bad_values_are_refused_when_made_quoting_them(flat, expected):
    with pytest.raises(Asfe3dInputError) as exc:
        Settings.from_flat(**flat)
    assert expected in str(exc.value)


@pytest.mark.parametrize("flat, expected", [
    # a switch from a config or the bundle's command line is never read by its truth value ("false" is truthy)
    ({"overwrite": "yes"}, "overwrite: must be True or False, got 'yes'"),
    ({"overwrite": None}, "overwrite: must be True or False, got None"),
    ({"allow_nonfinite": "no"}, "allow_nonfinite: must be True or False, got 'no'"),
    ({"dicom_strict": 1}, "dicom_strict: must be True or False, got 1"),
    ({"frame_realign": "0"}, "frame_realign: must be True or False, got '0'"),
    ({"mri_series": ""}, "mri_series: must be None or a non-empty string, got ''"),
    ({"pet_series": 12}, "pet_series: must be None or a non-empty string, got 12"),
    ({"weights": ""}, "weights: must be None or a file path, got ''"),
    ({"pet_sidecar": 3}, "pet_sidecar: must be None or a file path, got 3"),
])
def test_switches_series_and_paths_of_the_wrong_type_are_refused(flat, expected):
    with pytest.raises(Asfe3dInputError) as exc:
        Settings.from_flat(**flat)
    assert str(exc.value) == expected


def test_switches_and_paths_of_the_right_type_are_kept():
    import numpy as np

    s = Settings.from_flat(overwrite=np.True_, allow_nonfinite=True, mri_series="1.2.3", weights="w.pt")
    assert s.outputs.overwrite is True and s.inputs.allow_nonfinite is True and s.inputs.mri_series == "1.2.3"
    assert s.fusion.weights.name == "w.pt"
    assert Settings.from_dict(s.as_dict()) == s
    # the words, as `python -m monai.bundle run ... --overwrite true` passes them (fire keeps "true" a string)
    words = Settings.from_flat(overwrite="false", frame_realign="TRUE", dicom_strict=" False ")
    assert words.outputs.overwrite is False and words.inputs.frame_realign is True
    assert words.inputs.dicom_strict is False


def test_from_dict_names_an_unknown_field_with_the_closest_one():
    with pytest.raises(TypeError, match=r"unknown setting fusion\.methd \(did you mean method\?\)"):
        Settings.from_dict({"fusion": {"methd": "mean"}})
    with pytest.raises(TypeError, match=r"unknown setting outputs\.zzz; the outputs settings are \["):
        Settings.from_dict({"outputs": {"zzz": 1}})
    with pytest.raises(TypeError, match="settings group 'fusion' must be a mapping of its fields, got None"):
        Settings.from_dict({"fusion": None})


def test_frozen_replace_and_round_trip(tmp_path):
    s = Settings.from_flat(method="wavelet", roi_size=[8, 9, 10], rgb=str(tmp_path / "c.nii.gz"), seed=3)
    assert s.fusion.roi_size == (8, 9, 10) and s.outputs.rgb == tmp_path / "c.nii.gz"  # normalised once
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.fusion.method = "mean"
    t = s.replace(outputs={"overwrite": True}, registration={"seed": 4})
    assert (t.outputs.overwrite, t.registration.seed, s.outputs.overwrite, s.registration.seed) == (True, 4, False, 3)
    assert Settings.from_dict(s.as_dict()) == s
    with pytest.raises(Asfe3dInputError, match="seed"):
        s.replace(registration={"seed": -1})
    with pytest.raises(TypeError, match="did you mean colormap"):
        Settings.from_flat(colourmap="hot")
    with pytest.raises(TypeError, match="unknown settings group"):
        s.replace(fusoin={"method": "mean"})


def test_recorded_setting_reads_grouped_and_flat_records():
    grouped = Settings.from_flat(output_scale="unit", colormap="inferno", mri_series="1.2.3").as_dict()
    assert recorded_setting(grouped, "outputs", "scale") == "unit"
    assert recorded_setting(grouped, "inputs", "mri_series") == "1.2.3"
    flat = {"output_scale": "unit", "colormap": "viridis"}  # earlier records, the bundle's
    assert recorded_setting(flat, "outputs", "scale") == "unit"
    assert recorded_setting(flat, "outputs", "colormap") == "viridis"
    assert recorded_setting(None, "outputs", "colormap", "hot") == "hot"


def test_optional_output_paths():
    from pathlib import Path

    s = Settings.from_flat(rgb=True, preview="/x/p.png")
    defaults_ = {kind: Path(f"/d/{kind}") for kind in OPTIONAL_OUTPUTS.values()}
    assert s.outputs.paths(defaults_) == {"registered_pet": None, "rgb": Path("/d/rgb"), "transform": None,
                                          "preview": Path("/x/p.png"), "report": None}


def test_fuse_pair_takes_one_settings_object():
    from asfe3d.pipeline import fuse_pair

    params = inspect.signature(fuse_pair).parameters
    assert list(params) == ["mri", "pet", "output", "settings", "progress", "record_extra"] and len(params) <= 6


def test_stitch_reaches_the_fuser_and_a_bad_value_is_refused():
    from asfe3d.pipeline import _build_fuser

    fuser = _build_fuser(Settings.from_flat(stitch="logits", device="cpu").fusion, False)
    assert fuser.inferer.stitch == "logits" and fuser.describe()["stitch"] == "logits"
    assert _build_fuser(Settings().fusion, False).inferer.stitch == "auto"  # the default (eighteenth addendum)
    assert _build_fuser(Settings.from_flat(stitch="output").fusion, False).inferer.stitch == "output"
    assert Settings.from_flat(stitch="auto").as_dict()["fusion"]["stitch"] == "auto"
    with pytest.raises(Asfe3dInputError, match="stitch.*must be one of auto, output, logits, got 'blend'"):
        Settings.from_flat(stitch="blend")


def test_working_grid_reaches_the_fuser_and_a_bad_value_is_refused():
    """``min_voxel_mm``: ``auto`` is each mode's default, ``None`` the MRI's own grid, a number that grid; the
    command's ``--min-voxel-mm 0`` means the MRI's own grid."""
    from asfe3d.cli import build_parser
    from asfe3d.cli.options import settings_from_args
    from asfe3d.defaults import MIN_VOXEL_MM_BY_MODE
    from asfe3d.pipeline import _build_fuser

    for mode in ("slice", "volume"):
        auto = _build_fuser(Settings.from_flat(mode=mode, device="cpu").fusion, False)
        assert auto.inferer.min_voxel_mm == MIN_VOXEL_MM_BY_MODE[mode]
        own = _build_fuser(Settings.from_flat(mode=mode, min_voxel_mm=None, device="cpu").fusion, False)
        assert own.inferer.min_voxel_mm is None and own.describe()["min_voxel_mm"] is None
    assert _build_fuser(Settings.from_flat(min_voxel_mm=0.8, device="cpu").fusion, False).inferer.min_voxel_mm == 0.8
    parse = build_parser().parse_args
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii", "--min-voxel-mm", "0"])).fusion.min_voxel_mm is None
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii", "--min-voxel-mm", "1.2"])).fusion.min_voxel_mm == 1.2
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii"])).fusion.min_voxel_mm == "auto"
    for bad in (-1.0, float("nan"), True, "fine"):
        with pytest.raises(Asfe3dInputError, match=r"min_voxel_mm: must be 'auto', None or a voxel size > 0 \(mm\), "
                                                   r"got " + re.escape(repr(bad))):
            Settings.from_flat(min_voxel_mm=bad)


def test_consistency_strength_reaches_the_fuser_and_a_bad_value_is_refused():
    """``pet_consistency``: ``auto`` is each mode's default (with volume mode's grid gate), a number is taken on
    every grid; ``--pet-consistency`` reaches the settings; a bad value is refused with the value quoted."""
    from asfe3d.cli import build_parser
    from asfe3d.cli.options import settings_from_args
    from asfe3d.pipeline import _build_fuser

    auto = _build_fuser(Settings.from_flat(device="cpu").fusion, False).inferer
    assert (auto.steps.pet_consistency, auto.steps.pet_consistency_min_voxel_mm, auto.steps.pet_consistency_coarse) == (0.25, 0.95,
                                                                                                      (1.5, 0.5))
    off = _build_fuser(Settings.from_flat(mode="slice", pet_consistency=0, device="cpu").fusion, False).inferer
    assert off.steps.pet_consistency == 0.0
    given = _build_fuser(Settings.from_flat(pet_consistency=0.4, device="cpu").fusion, False).inferer
    assert (given.steps.pet_consistency, given.steps.pet_consistency_min_voxel_mm) == (0.4, None)
    parse = build_parser().parse_args
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii", "--pet-consistency", "0"])).fusion.pet_consistency == 0
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii"])).fusion.pet_consistency == "auto"
    for bad in (-0.1, 1.5, float("nan"), True, "strong"):
        with pytest.raises(Asfe3dInputError, match=r"pet_consistency: must be 'auto' or a number in \[0, 1\], got "
                                                   + re.escape(repr(bad))):
            Settings.from_flat(pet_consistency=bad)


def test_detail_select_strength_reaches_the_fuser_and_a_bad_value_is_refused():
    """``pet_detail_select``: ``auto`` is each mode's default (volume mode 0.5 on grids of 0.95 mm or coarser), a
    number is taken on every grid; ``--pet-detail-select`` reaches the settings; a bad value is refused, quoted."""
    from asfe3d.cli import build_parser
    from asfe3d.cli.options import settings_from_args
    from asfe3d.pipeline import _build_fuser

    auto = _build_fuser(Settings.from_flat(device="cpu").fusion, False).inferer
    assert (auto.steps.pet_detail_select, auto.steps.pet_detail_select_min_voxel_mm) == (0.5, 0.95)
    off = _build_fuser(Settings.from_flat(pet_detail_select=0, device="cpu").fusion, False).inferer
    assert off.steps.pet_detail_select == 0.0
    given = _build_fuser(Settings.from_flat(pet_detail_select=0.3, device="cpu").fusion, False).inferer
    assert (given.steps.pet_detail_select, given.steps.pet_detail_select_min_voxel_mm) == (0.3, None)
    parse = build_parser().parse_args
    args = parse(["fuse", "a.nii", "b.nii", "--pet-detail-select", "0"])
    assert settings_from_args(args).fusion.pet_detail_select == 0
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii"])).fusion.pet_detail_select == "auto"
    for bad in (-0.1, 1.5, float("nan"), True, "strong"):
        with pytest.raises(Asfe3dInputError, match=r"pet_detail_select: must be 'auto' or a number in \[0, 1\], "
                                                   r"got " + re.escape(repr(bad))):
            Settings.from_flat(pet_detail_select=bad)


def test_detail_steer_reaches_the_fuser_and_a_bad_value_is_refused():
    """``detail_steer``: ``auto`` is each mode's default (with its gain cap and grid gate), 0 turns it off, a number
    is ``q0``; ``--detail-steer`` reaches the settings; a bad value is refused, quoted."""
    from asfe3d.cli import build_parser
    from asfe3d.cli.options import settings_from_args
    from asfe3d.defaults import DETAIL_STEER_BY_MODE, DETAIL_STEER_MAX_GAIN_BY_MODE, DETAIL_STEER_MAX_VOXEL_MM_BY_MODE
    from asfe3d.pipeline import _build_fuser

    auto = _build_fuser(Settings.from_flat(device="cpu").fusion, False).inferer
    assert (auto.steps.detail_steer, auto.steps.detail_steer_max_gain, auto.steps.detail_steer_max_voxel_mm) == (
        DETAIL_STEER_BY_MODE["volume"], DETAIL_STEER_MAX_GAIN_BY_MODE["volume"],
        DETAIL_STEER_MAX_VOXEL_MM_BY_MODE["volume"])
    assert _build_fuser(Settings.from_flat(detail_steer=0, device="cpu").fusion, False).inferer.steps.detail_steer is None
    given = _build_fuser(Settings.from_flat(detail_steer=0.4, mode="slice", device="cpu").fusion, False).inferer
    assert (given.steps.detail_steer, given.steps.detail_steer_max_voxel_mm, given.steps.pet_consistency_optional) == (
        0.4, DETAIL_STEER_MAX_VOXEL_MM_BY_MODE["slice"], False)
    assert _build_fuser(Settings.from_flat(device="cpu").fusion, False).inferer.steps.detail_steer_max_voxel_mm is None
    parse = build_parser().parse_args
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii", "--detail-steer", "0.6"])).fusion.detail_steer == 0.6
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii", "--detail-steer", "0"])).fusion.detail_steer is None
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii"])).fusion.detail_steer == "auto"
    for bad in (-0.1, float("inf"), True, "strong"):
        with pytest.raises(Asfe3dInputError, match=r"detail_steer: must be 'auto', None or a number >= 0 \(0: no "
                                                   r"step\), got " + re.escape(repr(bad))):
            Settings.from_flat(detail_steer=bad)


def test_detail_fwhm_mm_reaches_the_fuser_and_a_bad_value_is_refused():
    """``detail_fwhm_mm``: ``auto`` is each mode's default width and grid gate, 0 the network's own width in voxels,
    a number the width on every grid; ``--detail-fwhm-mm`` reaches the settings; a bad value is refused, quoted."""
    from asfe3d.cli import build_parser
    from asfe3d.cli.options import settings_from_args
    from asfe3d.defaults import DETAIL_FWHM_MAX_VOXEL_MM_BY_MODE, DETAIL_FWHM_MM_BY_MODE
    from asfe3d.pipeline import _build_fuser

    auto = _build_fuser(Settings.from_flat(device="cpu").fusion, False).inferer
    assert (auto.steps.detail_fwhm_mm, auto.steps.detail_fwhm_max_voxel_mm) == (
        DETAIL_FWHM_MM_BY_MODE["volume"], DETAIL_FWHM_MAX_VOXEL_MM_BY_MODE["volume"])
    given = _build_fuser(Settings.from_flat(detail_fwhm_mm=8, device="cpu").fusion, False).inferer
    assert (given.steps.detail_fwhm_mm, given.steps.detail_fwhm_max_voxel_mm) == (8.0, None)  # 8 mm on every grid
    own = _build_fuser(Settings.from_flat(detail_fwhm_mm=0, mode="slice", device="cpu").fusion, False).inferer
    assert own.steps.detail_fwhm_mm is None
    parse = build_parser().parse_args
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii", "--detail-fwhm-mm", "8"])).fusion.detail_fwhm_mm == 8
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii", "--detail-fwhm-mm", "0"])).fusion.detail_fwhm_mm is None
    assert settings_from_args(parse(["fuse", "a.nii", "b.nii"])).fusion.detail_fwhm_mm == "auto"
    for bad in (-1.0, 25.0, float("nan"), True, "wide"):
        with pytest.raises(Asfe3dInputError, match=r"detail_fwhm_mm: must be 'auto', None or a width in \[0, 20\] mm "
                                                   r"\(0: the network's own width in voxels\), got " + re.escape(repr(bad))):
            Settings.from_flat(detail_fwhm_mm=bad)


def test_the_record_says_what_the_windows_were_blended_as():
    """``stitch="auto"`` is resolved per image in the completion record's fusion description: logits for a head
    larger than one window, one pass for a volume that fits one."""
    import torch
    from monai.data import MetaTensor

    from asfe3d.pipeline import _build_fuser, _fusion_description

    fuser = _build_fuser(Settings.from_flat(device="cpu").fusion, False)
    affine = torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    head = MetaTensor(torch.zeros(2, 150, 140, 130), affine=affine)
    small = MetaTensor(torch.zeros(2, 40, 40, 40), affine=affine)
    assert _fusion_description(fuser, head, "auto")["stitched"] == "logits"
    assert _fusion_description(fuser, small, "auto")["stitched"] == "one pass"
    output = _build_fuser(Settings.from_flat(stitch="output", device="cpu").fusion, False)
    assert _fusion_description(output, head, "auto")["stitched"] == "output"
    assert "stitched" not in _fusion_description(_build_fuser(Settings.from_flat(method="mean").fusion, False),
                                                 head, "auto")
    slice_mode = _build_fuser(Settings.from_flat(mode="slice", device="cpu").fusion, False)
    assert "stitched" not in _fusion_description(slice_mode, head, "auto")
    # the consistency step's strength on this image's grid: volume mode 0.25 from 0.95 mm, 0.5 from 1.5 mm, 0.4 on
    # finer grids; slice mode on every one
    coarse = MetaTensor(torch.zeros(2, 40, 40, 40), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0],
                                                                                    dtype=torch.float64)))
    fine = MetaTensor(torch.zeros(2, 40, 40, 40), affine=torch.diag(torch.tensor([0.88, 0.88, 0.88, 1.0],
                                                                                  dtype=torch.float64)))
    assert _fusion_description(fuser, head, "auto")["pet_consistency_applied"] == 0.25
    assert _fusion_description(fuser, fine, "auto")["pet_consistency_applied"] == 0.4
    # with its Gaussian's width: 12 mm on grids finer than 0.95 mm in volume mode, 6 mm elsewhere, none without a step
    assert [_fusion_description(fuser, x, "auto")["pet_consistency_fwhm_mm_applied"] for x in (fine, head, coarse)] == [
        12.0, 6.0, 6.0]
    off = _build_fuser(Settings.from_flat(pet_consistency=0.0, device="cpu").fusion, False)
    assert _fusion_description(off, fine, "auto")["pet_consistency_fwhm_mm_applied"] is None
    assert _fusion_description(fuser, coarse, "auto")["pet_consistency_applied"] == 0.5
    assert _fusion_description(slice_mode, head, "auto")["pet_consistency_applied"] == 0.5
    # the choose-the-larger-detail step's strength on this image's grid (the consistency step's gate), per mode
    from asfe3d.defaults import PET_DETAIL_SELECT_BY_MODE

    assert _fusion_description(fuser, fine, "auto")["pet_detail_select_applied"] == 0.0
    assert _fusion_description(fuser, head, "auto")["pet_detail_select_applied"] == PET_DETAIL_SELECT_BY_MODE["volume"]
    assert _fusion_description(fuser, coarse, "auto")["pet_detail_select_applied"] == PET_DETAIL_SELECT_BY_MODE["volume"]
    # its floor: volume mode 0.5 on grids finer than 1.5 mm where the step is taken, none elsewhere or in slice mode
    assert [_fusion_description(fuser, x, "auto")["pet_detail_floor_applied"] for x in (fine, head, coarse)] == [
        0.0, 0.5, 0.0]
    assert _fusion_description(slice_mode, coarse, "auto")["pet_detail_floor_applied"] == 0.0
    assert _fusion_description(slice_mode, head, "auto")["pet_detail_select_applied"] == 0.0
    assert _fusion_description(slice_mode, coarse, "auto")["pet_detail_select_applied"] == PET_DETAIL_SELECT_BY_MODE["slice"]
    # the steered injection's factor for this image: 1 for blank images (nothing to read), and 1 on coarse grids
    steered = _build_fuser(Settings.from_flat(detail_steer=0.3, device="cpu").fusion, False)
    assert _fusion_description(steered, head, "auto")["detail_steer_applied"] == 1.0
    assert _fusion_description(steered, coarse, "auto")["detail_steer_applied"] == 1.0
    # the factor the fusion step kept in the fused image's metadata is what the record says (not read again)
    kept = MetaTensor(torch.zeros(1, 40, 40, 40), meta={"detail_steer_applied": 1.3})
    assert _fusion_description(steered, head, "auto", kept)["detail_steer_applied"] == 1.3


def test_the_network_is_built_once_per_fusion_settings():
    """The pipeline's fuser cache is keyed by the fusion settings themselves (one validated, hashable object), not by
    a copy of their fields: equal settings share one network, a changed step builds another."""
    from asfe3d.pipeline import _build_fuser

    a = _build_fuser(Settings.from_flat(device="cpu").fusion, False)
    assert _build_fuser(Settings.from_flat(device="cpu").fusion, False) is a
    other = _build_fuser(Settings.from_flat(device="cpu", pet_consistency=0.3).fusion, False)
    assert other is not a and other.inferer.steps.pet_consistency == 0.3
    kwargs = Settings.from_flat(device="cpu", roi_size=[64, 64, 64]).fusion.network_kwargs()
    assert kwargs["roi_size"] == (64, 64, 64) and "method" not in kwargs
    from asfe3d.fusion import mode_steps

    assert kwargs["steps"] == mode_steps("volume")  # every step on the mode's default


def test_pet_sidecar_may_be_metadata_as_a_mapping():
    """A BIDS App passes the PET's merged metadata itself: kept as a JSON dict, recorded, read back."""
    meta = {"FrameDuration": [60, 540], "Units": "Bq/mL"}
    s = Settings.from_flat(pet_sidecar=meta)
    assert s.inputs.pet_sidecar == meta and s.inputs.pet_sidecar is not meta
    assert Settings.from_dict(s.as_dict()).inputs.pet_sidecar == meta
    with pytest.raises(Asfe3dInputError, match="mapping of JSON values"):
        Settings.from_flat(pet_sidecar={"when": object()})


def test_numpy_values_are_plain_and_round_trip() -> None:
    """Probe 47 #1/#6: ``seed=np.int64(3)`` was kept as numpy (as_dict failed json.dumps; the record then held the
    string "3", which from_dict refused); ``np.float32(0.5)`` was refused as not a number."""
    import json

    import numpy as np

    s = Settings.from_flat(seed=np.int64(3), pet_consistency=np.float32(0.5), roi_size=np.array([32, 32, 32]),
                           min_overlap=np.float64(0.25))
    text = json.dumps(s.as_dict())
    assert type(s.registration.seed) is int and s.registration.seed == 3 and s.fusion.pet_consistency == 0.5
    assert Settings.from_dict(json.loads(text)) == s
    with pytest.raises(Asfe3dInputError, match=r"min_voxel_mm: must be .* got \[1.0, 2.0\]"):
        Settings.from_flat(min_voxel_mm=np.array([1.0, 2.0]))
    side = Settings.from_flat(pet_sidecar={"FrameDuration": np.array([60, 540]), "BodyWeight": np.float32(70.5)})
    assert json.loads(json.dumps(side.as_dict()))["inputs"]["pet_sidecar"] == {"FrameDuration": [60, 540],
                                                                             "BodyWeight": 70.5}  # (review 49 #15)


def test_output_switches_as_words_and_replace_names_the_field() -> None:
    """Probe 47 #5/#13: ``rgb="false"`` asked for a file named ``false``; ``replace`` with a typo gave Python's bare
    "unexpected keyword argument"."""
    s = Settings.from_flat(rgb="false", preview="True", report="TRUE", overwrite="false")
    assert s.outputs.rgb is False and s.outputs.preview is True and s.outputs.report is True
    assert Settings.from_flat(method="mean", registration="none", rgb=True).outputs.rgb is True  # the docstring's
    with pytest.raises(TypeError, match=r"unknown setting outputs.overwite \(did you mean overwrite\?\)"):
        s.replace(outputs={"overwite": True})
