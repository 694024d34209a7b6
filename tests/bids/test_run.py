"""The BIDS App run: derivatives, sidecars, reports, resumability and never replacing foreign files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from asfe3d.bids import derivative_paths, find_pairs, pair_done, run_bids, write_dataset_description
from asfe3d.errors import Asfe3dInputError
from asfe3d.reports import read_report_summary
from asfe3d.settings import Settings
from tests.bids.conftest import make_dataset

FAST = {"method": "mean", "registration": "none"}
FAST_SETTINGS = Settings.from_flat(**FAST)


@pytest.fixture(scope="module")
def bids_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    """One BIDS run on the tiny dataset, shared by the tests that only read its outputs."""
    base = tmp_path_factory.mktemp("bidsrun")
    bids = make_dataset(base / "bids")
    out = base / "bids" / "derivatives" / "asfe3d"
    results = run_bids(bids, out, FAST_SETTINGS)
    return bids, out, results


def test_statuses_and_files(bids_run: tuple[Path, Path, list]) -> None:
    bids, out, results = bids_run
    assert [(r.name, r.status) for r in results] == [
        ("sub-01_trc-FDG", "ok"), ("sub-02_ses-bl_trc-PIB", "ok"), ("sub-03", "no-pet")]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        ".bidsignore", "dataset_description.json", "index.html", "sub-01.html",
        "sub-01/pet/sub-01_trc-FDG_from-pet_to-T1w_mode-image_xfm.tfm",
        "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-fused_pet.json",
        "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-fused_pet.nii.gz",
        "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-registered_pet.json",
        "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-registered_pet.nii.gz",
        "sub-02.html",
        "sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_from-pet_to-T1w_mode-image_xfm.tfm",
        "sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_space-T1w_desc-fused_pet.json",
        "sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_space-T1w_desc-fused_pet.nii.gz",
        "sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_space-T1w_desc-registered_pet.json",
        "sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_space-T1w_desc-registered_pet.nii.gz",
    ]
    # the fused and registered volumes are on the T1w's grid
    t1w = nib.load(str(bids / "sub-02/ses-bl/anat/sub-02_ses-bl_T1w.nii.gz"))
    for desc in ("fused", "registered"):
        img = nib.load(str(out / f"sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_space-T1w_desc-{desc}_pet.nii.gz"))
        assert img.shape == t1w.shape and np.allclose(img.affine, t1w.affine)
        assert np.isfinite(img.get_fdata()).all() and img.get_fdata().max() > 0


def test_dataset_description(bids_run: tuple[Path, Path, list]) -> None:
    bids, out, _ = bids_run
    desc = json.loads((out / "dataset_description.json").read_text(encoding="utf-8"))
    from asfe3d import __version__

    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"]
    assert desc["GeneratedBy"][0]["Name"] == "asfe3d" and desc["GeneratedBy"][0]["Version"] == __version__
    assert desc["DatasetLinks"]["raw"] == bids.resolve().as_uri()  # a URI
    assert "command: " in desc["GeneratedBy"][0]["Description"]
    ignore = (out / ".bidsignore").read_text(encoding="utf-8")
    assert "*_desc-fused_pet.*" in ignore and "*.html" in ignore


def test_pybids_finds_the_fused_images(bids_run: tuple[Path, Path, list]) -> None:
    bids_mod = pytest.importorskip("bids")
    bids, out, _ = bids_run
    layout = bids_mod.BIDSLayout(str(bids), derivatives=str(out), validate=False)
    fused = layout.get(scope="derivatives", space="T1w", desc="fused", extension=".nii.gz", return_type="filename")
    assert len(fused) >= 2 and all("desc-fused" in f for f in fused)


def test_sidecars(bids_run: tuple[Path, Path, list]) -> None:
    _, out, _ = bids_run
    fused = json.loads((out / "sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_space-T1w_desc-fused_pet.json").read_text(encoding="utf-8"))
    assert fused["status"] == "complete"
    assert fused["Sources"] == [
        "bids:raw:sub-02/ses-bl/anat/sub-02_ses-bl_T1w.nii.gz",
        "bids:raw:sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_pet.nii.gz",
        "bids::sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_space-T1w_desc-registered_pet.nii.gz",
        "bids::sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_from-pet_to-T1w_mode-image_xfm.tfm",
    ]
    assert fused["FusionMethod"] == "mean" and fused["RegistrationMethod"] == "none"
    assert fused["TracerName"] == "PIB" and fused["bids"]["session"] == "bl"
    assert fused["registration"]["qc"]["verdict"] in ("pass", "warn", "fail")
    # the settings the user gave (the pair run's own overwrite and per-run report were shown: overwrite true, report
    # false, although neither was asked for and the reports were written), its output paths absolute
    outputs = fused["settings"]["outputs"]
    assert outputs["overwrite"] is False and outputs["report"] is True, outputs
    assert Path(outputs["registered_pet"]).is_absolute() and Path(outputs["transform"]).is_absolute()
    # the second pair was read and registered beside the first one's work (the first had no one before it)
    first = json.loads((out / "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-fused_pet.json").read_text(encoding="utf-8"))
    assert fused["registration"]["early"] is True and first["registration"]["early"] is False
    reg = json.loads((out / "sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_space-T1w_desc-registered_pet.json")
                     .read_text(encoding="utf-8"))
    assert reg["Sources"][0] == "bids:raw:sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_pet.nii.gz"
    assert reg["Units"] == "Bq/mL" and reg["TracerName"] == "PIB"


def test_reports_and_index(bids_run: tuple[Path, Path, list]) -> None:
    _, out, _ = bids_run
    summary = read_report_summary(out / "sub-02.html")
    assert summary is not None and summary["title"] == "sub-02" and summary["status"] == "ok"
    assert summary["sections"][0]["title"] == "ses-bl, trc-PIB"
    assert summary["thumbnail"].startswith("data:image/png;base64,")
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="sub-01.html"' in index and 'href="sub-02.html"' in index
    assert "sub-03" in index and "no PET" in index and 'data-status="no-pet"' in index
    assert "asfe3d MRI/PET fusion of tiny" in index  # the derivatives' name, not "asfe3d: asfe3d" (the folder)


def test_index_of_a_one_participant_run_keeps_the_other_subjects(bids_run: tuple[Path, Path, list],
                                                                 tmp_path: Path) -> None:
    """A run for one participant (``--participant-label``, one job per participant) rewrote the index with that
    subject alone: the others' reports stayed on disk but vanished from the index."""
    from asfe3d.bids.derivatives import write_reports

    bids, out, _ = bids_run
    copy = tmp_path / "derivatives"
    shutil.copytree(out, copy)
    results = run_bids(bids, copy, FAST_SETTINGS, participant_labels=["01"], reports=False)
    assert [r.subject for r in results] == ["01"]
    index = write_reports(results, copy).read_text(encoding="utf-8")
    assert 'href="sub-01.html"' in index and 'href="sub-02.html"' in index
    assert "not in this run: its report from an earlier run" in index


def test_rerun_skips_complete_pairs_and_keeps_files(bids_run: tuple[Path, Path, list]) -> None:
    bids, out, _ = bids_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    from asfe3d.registration import early

    results = run_bids(bids, out, FAST_SETTINGS, reports=False)
    assert [r.status for r in results] == ["skipped", "skipped", "no-pet"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before
    assert not early._STARTED  # nothing started for a complete pair, nothing left behind


def _copy_run(bids_run: tuple[Path, Path, list], tmp_path: Path) -> tuple[Path, Path]:
    bids, out, _ = bids_run
    new_bids = tmp_path / "bids"
    shutil.copytree(bids, new_bids, ignore=shutil.ignore_patterns("derivatives"))
    new_out = tmp_path / "out"
    run_bids(new_bids, new_out, FAST_SETTINGS, participant_labels=["01"], reports=False)
    return new_bids, new_out


def test_incomplete_pair_is_redone(bids_run: tuple[Path, Path, list], tmp_path: Path) -> None:
    bids, out = _copy_run(bids_run, tmp_path)
    pair = find_pairs(bids, participant_labels=["01"])[0][0]
    paths = derivative_paths(pair, out)
    assert pair_done(pair, paths) is None
    paths["registered_json"].unlink()  # as if killed before the end
    assert "sidecar" in pair_done(pair, paths)
    results = run_bids(bids, out, FAST_SETTINGS, participant_labels=["01"], reports=False)
    assert results[0].status == "ok" and pair_done(pair, paths) is None


def test_changed_input_is_refused_without_overwrite(bids_run: tuple[Path, Path, list], tmp_path: Path) -> None:
    """An edited PET after a complete run: the earlier result is not this run's, so it is kept (as in cohort mode)
    and the pair fails naming why; ``--overwrite`` redoes it."""
    bids, out = _copy_run(bids_run, tmp_path)
    pet = bids / "sub-01/pet/sub-01_trc-FDG_pet.nii.gz"
    img = nib.load(str(pet))
    nib.save(nib.Nifti1Image(img.get_fdata().astype(np.float32) * 2, img.affine, img.header), str(pet))
    before = {p: p.read_bytes() for p in (out / "sub-01").rglob("*") if p.is_file()}
    results = run_bids(bids, out, FAST_SETTINGS, participant_labels=["01"], reports=False)
    assert results[0].status == "failed" and "changed since the recorded run" in results[0].message
    assert "not replaced (pass --overwrite" in results[0].message
    assert {p: p.read_bytes() for p in (out / "sub-01").rglob("*") if p.is_file()} == before
    results = run_bids(bids, out, FAST_SETTINGS.replace(outputs={"overwrite": True}), participant_labels=["01"],
                       reports=False)
    assert results[0].status == "ok"


def test_foreign_file_is_not_replaced_without_overwrite(bids_run: tuple[Path, Path, list], tmp_path: Path) -> None:
    bids, _ = bids_run[:2]
    new_bids = tmp_path / "bids"
    shutil.copytree(bids, new_bids, ignore=shutil.ignore_patterns("derivatives"))
    out = tmp_path / "out"
    foreign = out / "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-fused_pet.nii.gz"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"someone else's file")
    results = run_bids(new_bids, out, FAST_SETTINGS, participant_labels=["01"], reports=False)
    assert results[0].status == "failed" and "not a complete output" in results[0].message
    assert "sub-01_trc-FDG_space-T1w_desc-fused_pet.nii.gz" in results[0].message and "not replaced" in results[0].message
    assert foreign.read_bytes() == b"someone else's file"
    assert not (out / "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-registered_pet.json").exists()
    assert "was not written by asfe3d (no record lists it): move it" in results[0].message
    # --overwrite replaces asfe3d's own earlier outputs only: somebody else's file is kept
    results = run_bids(new_bids, out, FAST_SETTINGS.replace(outputs={"overwrite": True}), participant_labels=["01"],
                       reports=False)
    assert results[0].status == "failed" and "does not list it as an earlier asfe3d output" in results[0].message
    assert foreign.read_bytes() == b"someone else's file"


def test_foreign_dataset_description_is_refused(tmp_path: Path) -> None:
    bids = make_dataset(tmp_path / "bids")
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset_description.json").write_text(json.dumps({"Name": "other", "GeneratedBy": [{"Name": "x"}]}))
    with pytest.raises(Asfe3dInputError, match="was not written by asfe3d"):
        write_dataset_description(out, bids)
    with pytest.raises(Asfe3dInputError, match="OUTPUT_DIR must not be BIDS_DIR"):
        run_bids(bids, bids, FAST_SETTINGS)
    with pytest.raises(ValueError, match="sets each pair's outputs itself; do not ask for outputs \\['rgb'\\]"):
        run_bids(bids, out, Settings.from_flat(rgb=True, **FAST))


@pytest.mark.parametrize("where", ["sub-01", "results"])
def test_output_inside_the_dataset_is_refused(tmp_path: Path, where: str) -> None:
    bids = make_dataset(tmp_path / "bids")
    before = sorted(p.relative_to(bids) for p in bids.rglob("*"))
    with pytest.raises(Asfe3dInputError, match="inside the BIDS dataset but not under its derivatives/"):
        run_bids(bids, bids / where, FAST_SETTINGS)
    assert sorted(p.relative_to(bids) for p in bids.rglob("*")) == before  # nothing written into the dataset


def test_output_folder_that_cannot_be_made(tmp_path: Path) -> None:
    from asfe3d.cli import main

    bids = make_dataset(tmp_path / "bids")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(Asfe3dInputError, match="cannot create the output folder"):
        run_bids(bids, blocker / "out", FAST_SETTINGS)
    assert main(["bids", str(bids), "/proc/asfe3d-test/out", "participant", "--no-progress"]) == 2


def test_other_settings_or_edited_metadata_do_not_replace_a_pair(bids_run: tuple[Path, Path, list],
                                                                   tmp_path: Path) -> None:
    """Another ``--method`` or a corrected sidecar: neither "already complete" (the earlier files kept as if they were
    this run's) nor silently replaced: the pair fails naming the difference, and ``--overwrite`` redoes it."""
    bids, out = _copy_run(bids_run, tmp_path)
    fused = out / "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-fused_pet.json"
    before = fused.read_bytes()
    other = Settings.from_flat(method="max", registration="none")
    results = run_bids(bids, out, other, participant_labels=["01"], reports=False)  # it was "mean"
    assert results[0].status == "failed" and "fusion.method 'mean' -> 'max'" in results[0].message
    assert "not replaced (pass --overwrite" in results[0].message and fused.read_bytes() == before
    results = run_bids(bids, out, other.replace(outputs={"overwrite": True}), participant_labels=["01"],
                       reports=False)
    assert results[0].status == "ok" and json.loads(fused.read_text(encoding="utf-8"))["FusionMethod"] == "max"
    sidecar = bids / "sub-01/pet/sub-01_trc-FDG_pet.json"
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    sidecar.write_text(json.dumps({**meta, "BodyWeight": 80}), encoding="utf-8")  # e.g. a corrected weight
    results = run_bids(bids, out, other, participant_labels=["01"], reports=False)
    assert results[0].status == "failed" and "inputs.pet_sidecar['BodyWeight'] None -> 80" in results[0].message
    results = run_bids(bids, out, other.replace(outputs={"overwrite": True}), participant_labels=["01"],
                       reports=False)
    assert results[0].status == "ok"
    assert [r.status for r in run_bids(bids, out, other, participant_labels=["01"], reports=False)] == ["skipped"]


def test_a_sidecar_left_by_a_killed_run_does_not_pass_for_complete(bids_run: tuple[Path, Path, list],
                                                                   tmp_path: Path) -> None:
    """A run killed after the registered PET's sidecar of other settings (g/ml for SUV) was written but before its
    image: the pair is not "already complete" with a sidecar that does not describe its image."""
    bids, out = _copy_run(bids_run, tmp_path)
    side_path = out / "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-registered_pet.json"
    before = side_path.read_text(encoding="utf-8")
    side = json.loads(before)
    side_path.write_text(json.dumps({**side, "Units": "g/ml"}), encoding="utf-8")
    results = run_bids(bids, out, FAST_SETTINGS, participant_labels=["01"], reports=False)
    assert results[0].status == "ok" and "does not describe this run's image" in results[0].message
    assert json.loads(side_path.read_text(encoding="utf-8")) == json.loads(before)
    results = run_bids(bids, out, FAST_SETTINGS, participant_labels=["01"], reports=False)
    assert results[0].status == "skipped"


def test_inherited_metadata_weighs_the_frames(tmp_path: Path) -> None:
    """The BIDS inheritance principle: FrameDuration in a dataset-level trc-FDG_pet.json is the PET's."""
    bids = make_dataset(tmp_path / "bids")
    pet = bids / "sub-01/pet/sub-01_trc-FDG_pet.nii.gz"
    img = nib.load(str(pet))
    frames = np.stack([img.get_fdata().astype(np.float32) * k for k in (1, 3)], axis=-1)
    nib.save(nib.Nifti1Image(frames, img.affine), str(pet))
    pet.with_name("sub-01_trc-FDG_pet.json").unlink()
    (bids / "trc-FDG_pet.json").write_text(json.dumps({"TracerName": "FDG", "Units": "Bq/mL",
                                                       "FrameTimesStart": [0, 60], "FrameDuration": [60, 540]}))
    out = tmp_path / "out"
    results = run_bids(bids, out, Settings.from_flat(method="mean", registration="none", frame_realign=False),
                       participant_labels=["01"], reports=False)
    assert results[0].status == "ok", results[0].message
    record = json.loads((out / "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-fused_pet.json").read_text(encoding="utf-8"))
    assert record["input_info"]["pet"]["frame_durations_s"] == [60.0, 540.0]
    assert record["input_info"]["pet"]["frame_weighting"] == "duration"


def test_a_bad_inherited_value_names_its_file(tmp_path: Path) -> None:
    """A FrameDuration from a dataset-level trc-FDG_pet.json that does not fit the image: the failure named only
    the image and "PET sidecar", a file the user would look for beside it; it names the file that gave the value."""
    bids = make_dataset(tmp_path / "bids")
    pet = bids / "sub-01/pet/sub-01_trc-FDG_pet.nii.gz"
    img = nib.load(str(pet))
    nib.save(nib.Nifti1Image(np.stack([np.asarray(img.dataobj)] * 3, axis=-1), img.affine), str(pet))
    (bids / "trc-FDG_pet.json").write_text(json.dumps({"FrameDuration": [60, 540]}))
    results = run_bids(bids, tmp_path / "out", FAST_SETTINGS, participant_labels=["01"], reports=False)
    assert results[0].status == "failed"
    assert results[0].message.endswith(f"the image has 3: the sidecar does not describe this image (FrameDuration "
                                       f"from {(bids / 'trc-FDG_pet.json').resolve()})")


def test_suv_units_are_the_written_units(tmp_path: Path) -> None:
    bids = make_dataset(tmp_path / "bids")
    sidecar = {"TracerName": "FDG", "TracerRadionuclide": "F18", "Units": "Bq/mL", "InjectedRadioactivity": 370,
               "InjectedRadioactivityUnits": "MBq", "BodyWeight": 75, "BodyWeightUnits": "kg",
               "ImageDecayCorrected": True, "ImageDecayCorrectionTime": 0, "InjectionStart": 0, "ScanStart": 3600,
               "TimeZero": "10:00:00"}
    (bids / "sub-01/pet/sub-01_trc-FDG_pet.json").write_text(json.dumps(sidecar), encoding="utf-8")
    out = tmp_path / "out"
    results = run_bids(bids, out, Settings.from_flat(pet_units="suv", **FAST), participant_labels=["01"],
                       reports=False)
    assert results[0].status == "ok", results[0].message
    folder = out / "sub-01/pet"
    reg = json.loads((folder / "sub-01_trc-FDG_space-T1w_desc-registered_pet.json").read_text(encoding="utf-8"))
    fused = json.loads((folder / "sub-01_trc-FDG_space-T1w_desc-fused_pet.json").read_text(encoding="utf-8"))
    assert fused["input_info"]["pet"]["pet_units"]["converted_to"] == "SUVbw (g/ml)"
    assert reg["Units"] == "g/ml" and reg["asfe3d"]["converted_from"] == "Bq/mL"
    assert fused["bids"]["pet_units"] == "g/ml" and fused["bids"]["pet_input_units"] == "Bq/mL"
    raw = nib.load(str(bids / "sub-01/pet/sub-01_trc-FDG_pet.nii.gz")).get_fdata().max()
    registered = nib.load(str(folder / "sub-01_trc-FDG_space-T1w_desc-registered_pet.nii.gz")).get_fdata().max()
    assert registered < raw / 100  # the voxels are SUV, not Bq/mL


def test_a_moved_dataset_resumes_with_its_derivatives(tmp_path: Path) -> None:
    """A dataset moved (or renamed) with its ``derivatives/``: every pair is still complete, nothing redone; a copy
    beside the original is refused (its derivatives were made from the original, which is still there)."""
    bids = make_dataset(tmp_path / "a/ds")
    results = run_bids(bids, bids / "derivatives/asfe3d", FAST_SETTINGS, reports=False)
    assert [r.status for r in results] == ["ok", "ok", "no-pet"]
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = tmp_path / "b/ds"
    before = {p: p.stat().st_mtime_ns for p in moved.rglob("*.nii.gz")}
    results = run_bids(moved, moved / "derivatives/asfe3d", FAST_SETTINGS, reports=False)
    assert [r.status for r in results] == ["skipped", "skipped", "no-pet"]
    assert {p: p.stat().st_mtime_ns for p in moved.rglob("*.nii.gz")} == before
    link = json.loads((moved / "derivatives/asfe3d/dataset_description.json").read_text(encoding="utf-8"))
    assert link["DatasetLinks"]["raw"] == moved.resolve().as_uri()
    shutil.copytree(tmp_path / "b", tmp_path / "copy", symlinks=True)  # it links b/ds, which is still there
    copy = tmp_path / "copy/ds"
    with pytest.raises(Asfe3dInputError, match="these derivatives were made from"):
        run_bids(copy, copy / "derivatives/asfe3d", FAST_SETTINGS, reports=False)

    # the derivatives moved beside another dataset while theirs is gone: not renewed to it (mixed provenance)
    other = make_dataset(tmp_path / "other")
    (other / "dataset_description.json").write_text(json.dumps({"Name": "study B", "BIDSVersion": "1.10.0"}))
    shutil.move(moved / "derivatives", tmp_path / "derivatives")
    shutil.move(tmp_path / "b", tmp_path / "gone")
    description = tmp_path / "derivatives/asfe3d/dataset_description.json"
    before = description.read_bytes()
    with pytest.raises(Asfe3dInputError, match=r"which is not there any more, and .*other is not that dataset moved "
                                               r"\(the derivatives are 'asfe3d MRI/PET fusion of tiny'"):
        run_bids(other, tmp_path / "derivatives/asfe3d", FAST_SETTINGS, reports=False)
    (other / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.10.0"}))
    shutil.rmtree(other / "sub-02")
    with pytest.raises(Asfe3dInputError, match=r"is not that dataset moved \(it has no sub-02\)"):
        run_bids(other, tmp_path / "derivatives/asfe3d", FAST_SETTINGS, reports=False)
    assert description.read_bytes() == before


def test_a_refused_rerun_leaves_the_subjects_report(bids_run: tuple[Path, Path, list], tmp_path: Path) -> None:
    """A rerun with another method, refused without ``--overwrite``, keeps the earlier derivatives: their report
    (registration check, fused images) is not replaced by a "failed" page, and a redrawn one shows them."""
    bids = tmp_path / "bids"
    shutil.copytree(bids_run[0], bids, ignore=shutil.ignore_patterns("derivatives"))
    out = tmp_path / "out"
    run_bids(bids, out, FAST_SETTINGS, participant_labels=["01"])
    report = out / "sub-01.html"
    before = report.read_bytes()
    results = run_bids(bids, out, Settings.from_flat(**{**FAST, "method": "max"}), participant_labels=["01"])
    assert results[0].status == "failed" and results[0].kept and report.read_bytes() == before
    report.unlink()  # redrawn (missing): from the derivatives on disk, not as a failure
    run_bids(bids, out, Settings.from_flat(**{**FAST, "method": "max"}), participant_labels=["01"])
    from asfe3d.reports import read_report_summary

    assert "data:image/png;base64," in report.read_text(encoding="utf-8")
    assert read_report_summary(report)["status"] != "failed"


def test_pair_refused_for_its_registration_is_shown_in_the_report(tmp_path: Path) -> None:
    """Under ``--qc strict`` a refused pair's section showed the error alone; it shows the MRI with the PET where
    the refused transform put it, and the QC's verdict (drawn when refused: nothing of it is on disk)."""
    bids = make_dataset(tmp_path / "bids")
    pet = bids / "sub-01" / "pet" / "sub-01_trc-FDG_pet.nii.gz"
    img = nib.load(str(pet))
    noise = np.random.default_rng(3).gamma(2.0, 1000.0, img.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, img.affine, img.header), str(pet))
    out = bids / "derivatives" / "asfe3d"
    results = run_bids(bids, out, Settings.from_flat(**FAST, qc="strict"))
    refused = next(r for r in results if r.name == "sub-01_trc-FDG")
    assert refused.status == "failed" and "(--registration none: not registered) was judged failed" in refused.message
    assert not (out / "sub-01" / "pet" / "sub-01_trc-FDG_space-T1w_desc-fused_pet.nii.gz").exists()
    text = (out / "sub-01.html").read_text(encoding="utf-8")
    assert "Registration check" in text and "PET looks like noise" in text and "Not written: the pair was not fused" in text
    summary = read_report_summary(out / "sub-01.html")
    assert summary["status"] == "failed" and summary["sections"][0]["verdict"] == "fail"
