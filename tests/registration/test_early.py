"""The early registration: the same result as the chain's own, taken only for exactly the chain's inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.registration.early import EarlyRegistration, claim_early_registration, same_image
from asfe3d.settings import Settings


def _params(transform: sitk.Transform) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(transform.GetParameters()), tuple(transform.GetFixedParameters())


def test_same_image_compares_voxels_and_grid():
    a = sitk.GetImageFromArray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    b = sitk.Image(a)
    assert same_image(a, b)
    b.SetOrigin((0.0, 0.0, 1e-9))
    assert not same_image(a, b)
    c = sitk.GetImageFromArray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    c[0, 0, 0] = 0.5
    assert not same_image(a, c)
    assert not same_image(a, sitk.Cast(a, sitk.sitkFloat64))


def test_needs_both_roles(tmp_path):
    with pytest.raises(ValueError, match="'mri' and 'pet'"):
        EarlyRegistration(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz", {"mri": {}}, "rigid")


def test_chain_takes_the_early_work_and_gives_the_same_voxels(pair, tmp_path):
    from asfe3d.pipeline import fuse_pair

    mri, pet = pair
    plain = fuse_pair(mri, pet, tmp_path / "plain.nii.gz")
    early = EarlyRegistration.from_settings(mri, pet, Settings()).start()
    taken = fuse_pair(mri, pet, tmp_path / "early.nii.gz")
    assert early.used and early.error is None and set(early.seconds) == {"read", "head_mask", "register"}
    assert taken.registration["early"] is True and plain.registration["early"] is False
    # the thread's time is recorded and printed (the chain's own steps show only what was left to do)
    assert taken.registration["early_seconds"] == early.seconds and plain.registration["early_seconds"] is None
    import io

    from asfe3d.cli.fuse import print_result

    printed = io.StringIO()
    print_result(taken, printed)
    assert "read and registered early, in a thread beside start-up: read " in printed.getvalue()
    assert "PET signal (above 10 % of its 99th percentile) spans" in printed.getvalue()
    assert "of the MRI head; the PET's field of view holds 100% of the head" in printed.getvalue()
    assert _params(taken.transform) == _params(plain.transform)
    a = sitk.ReadImage(str(tmp_path / "plain.nii.gz"))
    b = sitk.ReadImage(str(tmp_path / "early.nii.gz"))
    assert same_image(a, b)
    assert claim_early_registration(mri, pet) is None  # claimed once


def test_other_settings_or_images_are_registered_by_the_chain(pair, tmp_path):
    from asfe3d.pipeline import fuse_pair

    mri, pet = pair
    early = EarlyRegistration.from_settings(mri, pet, Settings.from_flat(seed=7)).start()
    result = fuse_pair(mri, pet, tmp_path / "f.nii.gz")  # seed 0: the early result is not this run's
    assert result.registration["early"] is False and not early.used

    early = EarlyRegistration.from_settings(mri, pet).start()
    early.wait()
    moved = sitk.Image(early._images["pet"])
    moved.SetOrigin(tuple(o + 1.0 for o in moved.GetOrigin()))
    assert early.result(early._images["mri"], moved, early._head, "auto", {"seed": 0, "threads": 1}) is None
    assert claim_early_registration(mri, pet) is early


def test_progress_setting_does_not_matter_and_method_does(pair):
    mri, pet = pair
    early = EarlyRegistration.from_settings(mri, pet).start()
    early.wait()
    fixed, moving, head = early._images["mri"], early._images["pet"], early._head
    assert early.result(fixed, moving, head, "rigid", {"seed": 0, "threads": 1}) is None  # asked: auto
    early = EarlyRegistration.from_settings(mri, pet).start()
    early.wait()
    fixed, moving, head = early._images["mri"], early._images["pet"], early._head
    assert early.result(fixed, moving, head, "auto", {"seed": 0, "threads": 1, "progress": True}) is not None
    claim_early_registration(mri, pet)


def test_a_bad_input_is_kept_and_the_chain_raises_its_own_error(tmp_path, pair):
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.pipeline import fuse_pair

    mri, _ = pair
    bad = tmp_path / "bad_pet.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    early = EarlyRegistration.from_settings(mri, bad).start()
    early.wait()
    assert early.error is not None and early.volume(mri, early.read_kwargs["mri"]) is None
    with pytest.raises(Asfe3dInputError, match="bad_pet"):
        fuse_pair(mri, bad, tmp_path / "f.nii.gz")
    assert not early.used


def test_an_early_registration_that_fails_where_the_chain_does_not_is_said(pair, tmp_path, monkeypatch, caplog):
    """Review 32 #10: a bug in the registration beside the start-up (the chain then registers on its own and is
    right) was a DEBUG line: every run lost its head start unseen. It is now a warning naming the error."""
    import logging

    import asfe3d.registration.early as early_module
    from asfe3d.pipeline import fuse_pair

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the early path")

    mri, pet = pair
    monkeypatch.setattr(early_module, "register_pet_to_mri", broken)  # the thread's own name: the chain's is intact
    early = EarlyRegistration.from_settings(mri, pet).start()
    with caplog.at_level(logging.WARNING, logger="asfe3d.pipeline"):
        result = fuse_pair(mri, pet, tmp_path / "f.nii.gz", Settings.from_flat(method="mean"))
    assert isinstance(early.error, RuntimeError) and not early.used and result.registration["early"] is False
    assert "failed (RuntimeError: a bug in the early path) and the run registered again on its own" in caplog.text
    assert result.registration["qc"]["verdict"] == "pass"


def test_cancel_withdraws_the_offer(pair):
    mri, pet = pair
    early = EarlyRegistration.from_settings(mri, pet).start()
    early.cancel()
    assert early.wait(0) and claim_early_registration(mri, pet) is None
    # without waiting (the command, which ends without the interpreter's teardown): withdrawn at once
    early = EarlyRegistration.from_settings(mri, pet).start()
    early.cancel(wait=False)
    assert claim_early_registration(mri, pet) is None
    early.wait()


def test_command_registers_beside_its_imports_and_writes_the_same_volume(pair, tmp_path):
    from asfe3d.cli import main
    from asfe3d.pipeline import fuse_pair

    mri, pet = pair
    assert main(["fuse", str(mri), str(pet), "-o", str(tmp_path / "cli.nii.gz"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "cli.json").read_text())
    assert record["registration"]["early"] is True
    fuse_pair(mri, pet, tmp_path / "api.nii.gz")
    assert same_image(sitk.ReadImage(str(tmp_path / "cli.nii.gz")), sitk.ReadImage(str(tmp_path / "api.nii.gz")))


def test_command_refusal_stops_the_thread(pair, tmp_path, capsys):
    from asfe3d.cli import main

    mri, pet = pair
    out = tmp_path / "exists.nii.gz"
    shutil.copy(mri, out)
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err
    assert claim_early_registration(mri, pet) is None


def test_cohort_command_starts_its_first_subject_beside_the_imports(tmp_path, demo_files):
    from asfe3d.cli import main
    from asfe3d.registration import early as early_mod
    from tests.conftest import make_cohort

    csv_path = make_cohort(tmp_path, demo_files, 2)
    out = tmp_path / "out"
    assert main(["fuse", "--datalist", str(csv_path), "--output-dir", str(out), "--method", "mean",
                 "--no-progress"]) == 0
    assert [json.loads((out / f"sub0{i}_fused.json").read_text())["registration"]["early"] for i in (1, 2)] \
        == [True, True]
    assert not early_mod._STARTED


def test_inputs_the_chain_will_refuse_are_not_registered(pair, monkeypatch):
    import asfe3d.registration.early as early_module

    def boom(*args, **kwargs):
        raise AssertionError("registered a pair whose roles the chain refuses")

    monkeypatch.setattr(early_module, "register_pet_to_mri", boom)
    mri, _ = pair
    early = EarlyRegistration.from_settings(mri, mri, Settings()).start()  # one file given twice
    assert early.wait(timeout=60)
    assert early.error is None and "read" in early.seconds and "register" not in early.seconds
    early.cancel()
