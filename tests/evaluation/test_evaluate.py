"""Tests of the evaluation building blocks (method lists, cases, scoring, win counting, tables, outputs)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from asfe3d.errors import Asfe3dInputError
from asfe3d.evaluation import (
    EvalCase,
    NetworkOptions,
    build_fusers,
    count_wins,
    evaluate_case,
    expand_methods,
    hmif_case_pairs,
    load_hmif_case,
    markdown_summary,
    mean_table,
    read_pairs_csv,
    save_fused_case,
    win_table,
)
from asfe3d.metrics import METRIC_NAMES, fusion_metrics


def test_expand_methods():
    assert expand_methods("mean,asfe", 2) == ["mean", "asfe"]
    assert expand_methods("mean, asfe,mean", 3) == ["mean", "asfe-slice", "asfe-volume"]
    assert expand_methods(["asfe-volume", "asfe"], 3) == ["asfe-volume", "asfe-slice"]
    with pytest.raises(ValueError, match="'asfe-volume' for 2D"):
        expand_methods("asfe-volume", 2)
    with pytest.raises(ValueError, match="'fancy'"):
        expand_methods("mean,fancy", 3)
    with pytest.raises(ValueError, match="no fusion method"):
        expand_methods(" , ", 2)
    with pytest.raises(ValueError, match="ndim"):
        expand_methods("mean", 4)


def test_a_registered_method_is_evaluated_beside_the_others():
    """Review 32 #5: a method added with register_method was taken by `asfe3d fuse --method` and refused by
    `asfe3d evaluate --methods` ("unknown method"); it is now built, scored and given its wins row."""
    import asfe3d.fusion.base as base
    from asfe3d.fusion import FusionMethod, register_method

    @register_method("pet_leaning")
    class PetLeaning(FusionMethod):
        name = "pet_leaning"

        def fuse_arrays(self, mri, pet):
            return 0.3 * mri + 0.7 * pet

    try:
        _score_a_registered_method(PetLeaning)
    finally:  # the registration ends with the test (the built-in methods register themselves in the same dict)
        base._REGISTRY.pop("pet_leaning", None)


def _score_a_registered_method(cls):
    assert expand_methods("mean,pet_leaning", 3) == ["mean", "pet_leaning"]
    fusers = build_fusers(["mean", "pet_leaning"])
    assert isinstance(fusers["pet_leaning"], cls)
    rng = np.random.default_rng(0)
    mri, pet = rng.random((16, 16)), rng.random((16, 16))
    means = {name: fusion_metrics(fuser(mri, pet), mri, pet) for name, fuser in fusers.items()}
    wins = win_table(means)
    assert list(wins) == ["pet_leaning"] and set(wins["pet_leaning"]) == {"mean"}
    with pytest.raises(ValueError, match="unknown method 'fancy' for 3D inputs; choose from .*pet_leaning"):
        expand_methods("fancy", 3)


def _table(**methods: list[float]) -> dict[str, dict[str, float]]:
    return {m: dict(zip(METRIC_NAMES, vals)) for m, vals in methods.items()}


def test_count_wins_hand_made_table():
    means = _table(
        asfe=[5, 50, 10, 4, 3, 1.2, 0.8, 0.9, 0.6, 1.4, 15],
        mean=[4, 60, 10, 3, 2, 1.0, 0.9, 0.8, 0.5, 1.5, 16],  # asfe wins EN AG MI SCD VIF Qabf; ties SF
        max=[6, 70, 20, 5, 4, 1.5, 0.9, 1.0, 0.7, 1.6, 17],  # asfe wins nothing
    )
    assert count_wins(means, "asfe", "mean") == ["EN", "AG", "MI", "SCD", "VIF", "Qabf"]
    assert count_wins(means, "mean", "asfe") == ["SD", "CC", "SSIM", "PSNR"]  # the tie (SF) is nobody's win
    assert count_wins(means, "asfe", "max") == []
    assert count_wins(means, "max", "asfe") == list(METRIC_NAMES)
    assert win_table(means) == {"asfe": {"mean": 6, "max": 0}}
    # TPC is lower-is-better
    tpc = {"asfe-volume": {"TPC": 1.0}, "asfe-slice": {"TPC": 1.5}}
    assert count_wins(tpc, "asfe-volume", "asfe-slice", metrics=["TPC"]) == ["TPC"]
    with pytest.raises(ValueError, match="'nope'"):
        count_wins(means, "asfe", "nope")
    with pytest.raises(ValueError, match="no value"):
        count_wins(tpc, "asfe-volume", "asfe-slice")


def test_markdown_summary_bold_wins_and_gaps():
    rows = []
    for case, shift in (("a.png", 0.0), ("b.png", 2.0)):
        for m, vals in _table(asfe=[5, 50, 10, 4, 3, 1.2, 0.8, 0.9, 0.6, 1.4, 15],
                               mean=[4, 60, 10, 3, 2, 1.0, 0.9, 0.8, 0.5, 1.5, 16]).items():
            rows.append({"case": case, "method": m, **{k: v + shift for k, v in vals.items()}, "seconds": 0.1})
    means = mean_table(rows)
    assert means["asfe"]["EN"] == pytest.approx(6.0) and means["mean"]["PSNR"] == pytest.approx(17.0)
    md = markdown_summary(rows, title="T", notes=["note"])
    assert md.startswith("## T\n\nnote\n")
    assert "Means over 2 case(s)" in md
    asfe_line = next(line for line in md.splitlines() if line.startswith("| asfe | **6.000** | 51.00 |"))
    assert "| mean | 5.000 | **61.00** |" in md  # best per column in bold, for whichever method has it
    assert asfe_line.count("**") == 2 * 7  # EN SF(tie) AG MI SCD VIF Qabf
    assert "| asfe | 6/11 | - |" in md or "| asfe | - | 6/11 |" in md
    assert "| asfe | mean | +1 | -10 |" in md
    assert "leave cases out" not in md
    # a column with cases left out (DETAIL NaN where a case has no brain region) says over how many it is
    for r in rows:
        r["DETAIL"] = 0.5 if r["case"] == "a.png" else float("nan")
    assert "Means that leave cases out (NaN there): DETAIL over 1 of the 2." in markdown_summary(rows)
    with pytest.raises(ValueError, match="at least one row"):
        mean_table([])


def test_hmif_splits_and_loading(hmif_dir):
    val = hmif_case_pairs(hmif_dir)  # last of 5 slices per case; 2 dropped as the gap
    assert [p.name for p in val] == ["7014.png", "8014.png"]
    assert len(hmif_case_pairs(hmif_dir, "train")) == 4
    assert len(hmif_case_pairs(hmif_dir, "all")) == 10
    case = load_hmif_case(val[0])
    assert case.mri.shape == case.other.shape == (32, 32) and case.rgb.shape == (32, 32, 3)
    with pytest.raises(ValueError, match="'test'"):
        hmif_case_pairs(hmif_dir, "test")
    with pytest.raises(Asfe3dInputError, match="no pairs"):
        hmif_case_pairs(hmif_dir, "val", val_fraction=0.0)
    with pytest.raises(Asfe3dInputError, match="not found"):
        hmif_case_pairs(hmif_dir / "nope")


def test_evaluate_case_2d_with_untrained_network(hmif_dir, tmp_path):
    from asfe3d.fusion import AsfeFusionMethod
    from tests.evaluation.conftest import tiny_net

    fusers = build_fusers(["mean", "max"])
    fusers["asfe"] = AsfeFusionMethod(net=tiny_net(2), device="cpu")
    case = load_hmif_case(hmif_case_pairs(hmif_dir)[0])
    res = evaluate_case(case, fusers)
    assert [r["method"] for r in res.rows] == ["mean", "max", "asfe"]
    for row in res.rows:
        fused = res.fused[row["method"]]
        assert fused.shape == (32, 32) and 0.0 <= fused.min() and fused.max() <= 1.0
        assert row == pytest.approx({**row, **fusion_metrics(fused, case.mri, case.other)}, nan_ok=True)
        assert "TPC" not in row and row["seconds"] >= 0
    np.testing.assert_allclose(res.fused["mean"], (case.mri + case.other) / 2, atol=1e-6)
    # saved: colour PNG named like the input, under OUTDIR/<method>/
    written = save_fused_case(case, res.fused, tmp_path / "fused")
    assert sorted(p.relative_to(tmp_path / "fused").as_posix() for p in written) == [
        "asfe/7014.png", "max/7014.png", "mean/7014.png"]
    with Image.open(tmp_path / "fused" / "mean" / "7014.png") as img:
        assert img.mode == "RGB" and img.size == (32, 32)
    with pytest.raises(Asfe3dInputError, match="already exists"):
        save_fused_case(case, res.fused, tmp_path / "fused")


def test_evaluate_case_3d_slices_along_the_case_axis_and_tpc():
    from asfe3d.fusion import AsfeFusionMethod
    from tests.evaluation.conftest import tiny_net

    rng = np.random.default_rng(0)
    mri = rng.random((32, 5, 32)).astype(np.float32)  # 32 x 32 slices along axis 1
    pet = rng.random((32, 5, 32)).astype(np.float32)
    fusers = {"mean": build_fusers(["mean"])["mean"],
              "asfe-slice": AsfeFusionMethod(net=tiny_net(2), device="cpu")}
    seen = []
    net = fusers["asfe-slice"].net
    net.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape[2:])))
    res = evaluate_case(EvalCase("s", mri, pet, axis=1), fusers)
    assert set(seen) == {(32, 32)}  # slices along the case's axis 1 (32 x 32), given per call
    assert fusers["asfe-slice"].slice_axis == 2  # the method itself is not changed by the call
    assert all(np.isfinite(r["TPC"]) for r in res.rows)
    assert all(np.isnan(r["DT"]) for r in res.rows)  # 5 voxels thick: no room for the 12 mm defect
    with pytest.raises(ValueError, match="at least one fusion method"):
        evaluate_case(EvalCase("s", mri, pet), {})


def test_evaluate_case_gives_a_slice_wise_method_the_grid_spacing_too():
    """A method working in mm gets the case's voxel size in either mode (the slice axis is bound first)."""
    from asfe3d.fusion import FusionMethod

    class Recorder(FusionMethod):
        name = "recorder"
        uses_spacing = True

        def __init__(self, mode):
            self.mode, self.calls = mode, []

        def fuse_arrays(self, mri, pet, **options):
            self.calls.append(options)
            return (mri + pet) / 2

    rng = np.random.default_rng(1)
    mri, pet = (rng.random((8, 6, 7)).astype(np.float32) for _ in range(2))
    fusers = {"slice": Recorder("slice"), "volume": Recorder("volume")}
    evaluate_case(EvalCase("s", mri, pet, axis=1, spacing=(0.7, 0.8, 0.9)), fusers, defect=False)
    assert fusers["slice"].calls == [{"slice_axis": 1, "spacing": (0.7, 0.8, 0.9)}]
    assert fusers["volume"].calls == [{"spacing": (0.7, 0.8, 0.9)}]


def test_build_fusers_missing_weights(tmp_path):
    with pytest.raises(Asfe3dInputError, match="weight file not found"):
        build_fusers(["asfe"], weights_2d=tmp_path / "none.pt")


def test_read_pairs_csv(volume_csv, tmp_path):
    rows = read_pairs_csv(volume_csv)
    assert [r["subject"] for r in rows] == ["s1", "s2"]
    assert rows[0]["mri"] == volume_csv.parent / "s1_mri.nii.gz" and rows[0]["mask"] is None
    assert rows[1]["mask"] == volume_csv.parent / "s2_mask.nii.gz"
    bad = tmp_path / "bad.csv"
    for text, match in [
        ("subject,mri,PET\na,b,c\n", "missing column.s. pet"),
        ("subject,mri,pet\n", "no pairs"),
        ("subject,mri,pet\na,b,c\na,d,e\n", "appears twice"),
        ("subject,mri,pet\na,,c\n", "line 2: empty 'mri'"),
    ]:
        bad.write_text(text)
        with pytest.raises(Asfe3dInputError, match=match):
            read_pairs_csv(bad)
    with pytest.raises(Asfe3dInputError, match="not found"):
        read_pairs_csv(tmp_path / "missing.csv")
    # a missing file of any row is refused while reading (it failed after the pairs before it were scored)
    bad.write_text(f"subject,mri,pet\ns1,{rows[0]['mri']},{rows[0]['pet']}\ns2,{rows[1]['mri']},gone.nii.gz\n")
    with pytest.raises(Asfe3dInputError, match=r"gone.nii.gz: line 3: subject 's2': pet does not exist"):
        read_pairs_csv(bad)


def test_given_defect_columns_and_dt(volume_csv, tmp_path):
    import nibabel as nib

    from asfe3d.evaluation.evaluate import load_volume_case
    from tests.conftest import write_nifti

    folder = volume_csv.parent
    pet_img = nib.load(str(folder / "s1_pet.nii.gz"))
    pet = np.asarray(pet_img.dataobj, np.float32)
    region = np.zeros(pet.shape, bool)
    region[10:14, 10:14, 10:14] = True
    write_nifti(folder / "s1_pet_defect.nii.gz", np.where(region, 0.7 * pet, pet), pet_img.affine)
    write_nifti(folder / "s1_defect.nii.gz", region.astype(np.float32), pet_img.affine)
    csv_path = folder / "defect.csv"
    csv_path.write_text("subject,mri,pet,pet_defect,defect\ns1,s1_mri.nii.gz,s1_pet.nii.gz,s1_pet_defect.nii.gz,"
                        "s1_defect.nii.gz\n")
    row = read_pairs_csv(csv_path)[0]
    assert row["pet_defect"] == folder / "s1_pet_defect.nii.gz" and row["mask"] is None
    case = load_volume_case(row, registration="none")
    assert np.array_equal(case.defect_region, region) and case.spacing == pytest.approx((2.0, 2.0, 2.0))
    # the defect PET is on the normal PET's scale: unchanged outside, lowered inside
    np.testing.assert_allclose(case.pet_defect[~region], case.other[~region], atol=1e-6)
    assert np.all(case.pet_defect[region] <= case.other[region])
    res = evaluate_case(case, build_fusers(["mean", "max"]))
    dts = {r["method"]: r["DT"] for r in res.rows}
    assert dts["mean"] == pytest.approx(0.5, abs=1e-5) and 0.0 <= dts["max"] <= 1.0
    assert all(r["EMPTY"] == 0.0 or np.isnan(r["EMPTY"]) for r in res.rows)
    # without a given defect one is placed automatically; defect=False skips DT
    auto = evaluate_case(EvalCase("s", case.mri, case.other, mask=case.mask, spacing=(2.0, 2.0, 2.0)),
                         build_fusers(["mean"]))
    assert auto.rows[0]["DT"] == pytest.approx(0.5, abs=1e-5)
    assert "DT" not in evaluate_case(case, build_fusers(["mean"]), defect=False).rows[0]
    bad = folder / "bad.csv"
    bad.write_text("subject,mri,pet,pet_defect\ns1,s1_mri.nii.gz,s1_pet.nii.gz,s1_pet_defect.nii.gz\n")
    with pytest.raises(Asfe3dInputError, match="pet_defect and defect go together"):
        read_pairs_csv(bad)


def test_evaluate_scores_the_windows_the_command_uses():
    """``evaluate``'s volume mode and ``asfe3d fuse``'s default run the 3D network in the same windows: the held-out
    scores describe the images users get (a whole head in one pass gives a different image)."""
    from asfe3d.pipeline import _build_fuser
    from asfe3d.settings import Settings

    head = (200, 271, 193)
    scored = build_fusers(["asfe-volume"], options=NetworkOptions(device="cpu"))["asfe-volume"]
    used = _build_fuser(Settings().fusion, False)
    assert used.mode == scored.mode == "volume"
    assert used.inferer.window(head) == scored.inferer.window(head) == (128, 128, 128)
    assert used.inferer.overlap == scored.inferer.overlap
    assert used.inferer.stitch == scored.inferer.stitch  # and blends them the same way
    assert used.inferer.stitching(used.net, head) == scored.inferer.stitching(scored.net, head)


def test_build_fusers_passes_the_grid_and_window_options():
    """``--max-voxel-mm`` and ``--roi-mm`` reach the volume network's inferer (``roi_mm`` volume mode only); the
    defaults are the command's."""
    from asfe3d.defaults import DEFAULT_ROI_MM, MAX_VOXEL_MM_BY_MODE

    fusers = build_fusers(["asfe-volume", "asfe-slice"], options=NetworkOptions(device="cpu", max_voxel_mm=1.0, roi_mm=128.0))
    assert fusers["asfe-volume"].inferer.max_voxel_mm == fusers["asfe-slice"].inferer.max_voxel_mm == 1.0
    assert fusers["asfe-volume"].inferer.roi_mm == 128.0 and fusers["asfe-slice"].inferer.roi_mm is None
    assert fusers["asfe-volume"].describe()["roi_mm"] == 128.0
    default = build_fusers(["asfe-volume"], options=NetworkOptions(device="cpu"))["asfe-volume"].inferer
    assert default.max_voxel_mm == MAX_VOXEL_MM_BY_MODE["volume"] and default.roi_mm == DEFAULT_ROI_MM
    # the steered detail injection: the command's default per mode, a q0 given, or none
    from asfe3d.defaults import DETAIL_STEER_BY_MODE

    assert default.steps.detail_steer == DETAIL_STEER_BY_MODE["volume"]
    steered = build_fusers(["asfe-volume", "asfe-slice"], options=NetworkOptions(device="cpu", detail_steer=0.4))
    assert steered["asfe-volume"].inferer.steps.detail_steer == steered["asfe-slice"].inferer.steps.detail_steer == 0.4
    assert build_fusers(["asfe-slice"], options=NetworkOptions(device="cpu", detail_steer=None))["asfe-slice"].inferer.steps.detail_steer is None
    # the detail band's width: the command's default per mode, a width on every grid, or the network's own
    from asfe3d.defaults import DETAIL_FWHM_MM_BY_MODE

    assert default.steps.detail_fwhm_mm == DETAIL_FWHM_MM_BY_MODE["volume"]
    wide = build_fusers(["asfe-volume", "asfe-slice"], options=NetworkOptions(device="cpu", detail_fwhm_mm=8.0))
    assert wide["asfe-volume"].inferer.steps.detail_fwhm_mm == wide["asfe-slice"].inferer.steps.detail_fwhm_mm == 8.0
    assert wide["asfe-volume"].inferer.steps.detail_fwhm_max_voxel_mm is None
    assert build_fusers(["asfe-volume"], options=NetworkOptions(device="cpu", detail_fwhm_mm=None))["asfe-volume"].inferer.steps.detail_fwhm_mm is None
    with pytest.raises(ValueError, match=r"options must be a NetworkOptions or None, got \{'device': 'cpu'\}"):
        build_fusers(["asfe-volume"], options={"device": "cpu"})
    with pytest.raises(TypeError):
        build_fusers(["asfe-volume"], device="cpu")  # the networks' settings are one object, not keyword arguments


def test_pet_fwhm_mm_splits_detail_and_petc_there_and_reaches_highpass():
    """``pet_fwhm_mm`` moves DETAIL and PETC to that band split (as :func:`mri_detail` / :func:`pet_consistency`
    compute them there) and the highpass baseline's band with them; a bad width is refused, quoting it."""
    from asfe3d.metrics import mri_detail, pet_consistency

    rng = np.random.default_rng(3)
    x = np.linspace(-1, 1, 24)
    r2 = x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2
    mri = np.clip(0.5 + 0.3 * np.sin(9 * r2) + 0.05 * rng.standard_normal(r2.shape), 0, 1).astype(np.float32)
    pet = np.clip(np.exp(-3 * r2) + 0.05 * rng.standard_normal(r2.shape), 0, 1).astype(np.float32)
    case = EvalCase("s", mri, pet, spacing=(2.0, 2.0, 2.0))
    fusers = build_fusers(["mean", "highpass"], pet_fwhm_mm=8.0)
    assert fusers["highpass"].pet_fwhm_mm == 8.0 and build_fusers(["highpass"])["highpass"].pet_fwhm_mm == 6.0
    with pytest.raises(ValueError, match="pet_fwhm_mm"):
        build_fusers(["highpass"], pet_fwhm_mm=0.0)
    at6 = {r["method"]: r for r in evaluate_case(case, fusers, defect=False).rows}
    at8 = {r["method"]: r for r in evaluate_case(case, fusers, defect=False, pet_fwhm_mm=8.0).rows}
    res = evaluate_case(case, {"mean": fusers["mean"]}, defect=False, pet_fwhm_mm=8.0)
    from asfe3d.evaluation.evaluate import case_brain

    region, fused = case_brain(case), res.fused["mean"]
    assert at8["mean"]["DETAIL"] == pytest.approx(mri_detail(fused, mri, region, case.spacing, 8.0))
    assert at8["mean"]["PETC"] == pytest.approx(pet_consistency(fused, pet, region, case.spacing, 8.0))
    assert at8["mean"]["DETAIL"] != pytest.approx(at6["mean"]["DETAIL"], abs=1e-4)
    for bad in (0.0, -6.0, float("nan"), True):
        with pytest.raises(ValueError, match=f"pet_fwhm_mm must be None or a width > 0 \\(mm\\), got {bad!r}"):
            evaluate_case(case, fusers, defect=False, pet_fwhm_mm=bad)


def test_a_pet_field_of_view_shorter_than_the_head_is_scored_inside_it(volume_csv):
    """Review 23 #3: the chain extends the PET beyond its field of view for the fusion; the evaluation then scored
    a made-up band there. Its metrics are now taken inside the field of view, and a given defect PET is extended
    the same way (the base and the defect fusions differ by the defect alone)."""
    import nibabel as nib

    from asfe3d.evaluation.evaluate import load_volume_case
    from tests.conftest import write_nifti

    folder = volume_csv.parent
    pet_img = nib.load(str(folder / "s1_pet.nii.gz"))
    pet = np.asarray(pet_img.dataobj, np.float32)
    k = pet.shape[2] // 4
    top_affine = pet_img.affine.copy()
    top_affine[:3, 3] = pet_img.affine[:3, :3] @ [0, 0, k] + pet_img.affine[:3, 3]
    write_nifti(folder / "s1_top.nii.gz", pet[:, :, k:], top_affine)
    region = np.zeros(pet[:, :, k:].shape, bool)
    region[10:14, 10:14, 2:6] = True
    write_nifti(folder / "s1_top_defect.nii.gz", np.where(region, 0.7, 1.0) * pet[:, :, k:], top_affine)
    write_nifti(folder / "s1_top_region.nii.gz", region.astype(np.float32), top_affine)
    csv_path = folder / "top.csv"
    csv_path.write_text("subject,mri,pet,pet_defect,defect\n"
                        "s1,s1_mri.nii.gz,s1_top.nii.gz,s1_top_defect.nii.gz,s1_top_region.nii.gz\n")
    case = load_volume_case(read_pairs_csv(csv_path)[0], registration="none")
    mri = nib.load(str(folder / "s1_mri.nii.gz"))
    z_first = int(np.ceil((np.linalg.inv(mri.affine) @ top_affine @ [0, 0, -0.5, 1])[2]))
    assert case.mask.any() and not case.mask[:, :, :z_first].any()
    assert case.other[:, :, z_first - 1].max() > 0  # the fusion's PET is extended beyond the edge
    outside = ~case.defect_region
    np.testing.assert_allclose(case.pet_defect[outside], case.other[outside], atol=1e-6)


def test_saved_pngs_hold_the_grey_levels_that_were_scored(tmp_path):
    """Probe 42 #4: the PNGs of --save-fused rounded halves to even (np.round) while the metrics round them up, so
    rescoring a saved mean fusion gave EN and MI up to 0.08 bits lower than the CSV."""
    from PIL import Image

    from asfe3d.metrics import fusion_metrics, to_8bit

    levels = np.arange(256, dtype=np.float64).reshape(16, 16)
    mri = (levels / 255).astype(np.float32)
    pet = (np.roll(levels, 1, axis=1) / 255).astype(np.float32)
    fused = 0.5 * (mri + pet)  # a half grey level in half its pixels
    case = EvalCase("0001.png", mri, pet)
    (path,) = save_fused_case(case, {"mean": fused}, tmp_path)
    saved = np.asarray(Image.open(path), dtype=np.float64)
    assert np.array_equal(saved, to_8bit(fused))
    assert fusion_metrics(saved / 255, mri, pet)["EN"] == fusion_metrics(fused, mri, pet)["EN"]
