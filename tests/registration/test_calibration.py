"""Tests of the calibrated QC: continuing from a better misalignment, head or body, the left-right check, progress."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.evaluation.registration_rates import torso_pair
from asfe3d.registration import register_pet_to_mri, registration_error_mm
from asfe3d.registration.corrupt import reorient_voxels
from asfe3d.registration.qc import RegistrationQC, anatomy_of


def test_continues_from_a_better_misalignment(case):
    """An optimiser stopped short (2 iterations a level) is continued from the QC's better start and ends closer."""
    t1, pet, true, brain = case
    short = register_pet_to_mri(t1, pet, "rigid", sampling=0.2, iterations=2, multistart="never", check_mirror=False)
    assert short.continued >= 1 and short.qc is not None
    plain = register_pet_to_mri(t1, pet, "rigid", sampling=0.2, iterations=2, multistart="never", assess=False)
    assert plain.continued == 0
    assert registration_error_mm(true, short.transform, brain)["mean"] < \
        registration_error_mm(true, plain.transform, brain)["mean"]
    assert short.qc.better_start is None or short.qc.numbers["mi_margin"] < 0  # consistent with its own landscape


def test_anatomy_of_head_and_body():
    head = sitk.Image([40, 50, 45], sitk.sitkUInt8)
    head.SetSpacing([4.0] * 3)
    head[5:35, 5:45, 5:40] = 1  # 120 x 160 x 140 mm
    assert anatomy_of(head) == "head"
    body = sitk.Image([100, 70, 120], sitk.sitkUInt8)
    body.SetSpacing([4.0] * 3)
    body[5:95, 5:65, :] = 1  # 360 x 240 x 480 mm
    assert anatomy_of(body) == "body"
    assert anatomy_of(sitk.Image([4, 4, 4], sitk.sitkUInt8)) == "head"  # empty: the default


@pytest.fixture(scope="module")
def torso():
    return torso_pair()


def test_torso_judged_as_body_and_passes(torso):
    res = register_pet_to_mri(torso.mri, torso.pet, "rigid")
    assert res.qc is not None and res.qc.anatomy == "body", res.qc.summary()
    assert res.qc.verdict == "pass", res.qc.summary()
    assert registration_error_mm(torso.truth, res.transform, torso.brain)["mean"] < 2.0
    assert res.qc.numbers["lr_margin"] > 0.03  # heart and liver tell left from right
    assert "judged as a body" in res.qc.summary()
    json.dumps(res.qc.as_dict())  # JSON-ready, anatomy and notes included
    assert res.qc.as_dict()["anatomy"] == "body"


def test_mirrored_asymmetric_pet_fails(torso):
    mirrored, _ = reorient_voxels(torso.pet, np.diag([-1.0, 1.0, 1.0]))
    res = register_pet_to_mri(torso.mri, mirrored, "rigid")
    assert res.qc is not None and res.qc.verdict == "fail", res.qc.summary()
    assert "mirrored_lr" in res.qc.flags and "mirrored left-right" in res.qc.summary()


def test_symmetric_brain_says_left_right_cannot_be_told(case):
    t1, pet, _, _ = case
    res = register_pet_to_mri(t1, pet, "rigid", sampling=0.2)
    assert res.qc is not None and res.qc.verdict == "pass"
    assert res.qc.notes and "left and right cannot be told apart" in res.qc.notes[0]
    assert res.qc.reasons[-1] == res.qc.notes[0] and res.qc.flags[-1] == "note"


def test_add_finding_orders_and_checks():
    qc = RegistrationQC("pass")
    qc.add_finding("note", "note", "n")
    qc.add_finding("warn", "rotation", "w")
    qc.add_finding("fail", "mirrored_lr", "f")
    assert qc.verdict == "fail" and qc.reasons == ["f", "w", "n"] and qc.flags == ["mirrored_lr", "rotation", "note"]
    with pytest.raises(ValueError, match="'bad'"):
        qc.add_finding("bad", "x", "y")
    with pytest.raises(ValueError, match="'leg'"):
        RegistrationQC("pass", anatomy="leg")


def test_progress_on_stderr_only_when_asked(case, capsys, monkeypatch):
    import sys

    t1, pet, _, _ = case
    # not a terminal (a log file, a pipe): quiet even when asked
    register_pet_to_mri(t1, pet, "rigid", sampling=0.2, progress=True, multistart="never", check_mirror=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # a terminal
    register_pet_to_mri(t1, pet, "rigid", sampling=0.2, progress=True, multistart="never", check_mirror=False)
    err = capsys.readouterr().err
    assert "registration: rigid" in err and "iteration" in err
    register_pet_to_mri(t1, pet, "rigid", sampling=0.2, multistart="never", check_mirror=False)
    assert capsys.readouterr().err == ""


def _header_turned(pet: sitk.Image, degrees: float, axis: int, centre) -> tuple[sitk.Image, sitk.Euler3DTransform]:
    """``pet`` with its header turned by ``degrees`` about ``axis`` through ``centre`` (voxels unchanged): the
    exact MRI-to-PET truth is that turn."""
    turn = sitk.Euler3DTransform()
    turn.SetCenter(list(centre))
    angles = [0.0, 0.0, 0.0]
    angles[axis] = np.radians(degrees)
    turn.SetRotation(*angles)
    out = sitk.Image(pet)
    out.SetDirection((np.asarray(turn.GetMatrix()).reshape(3, 3) @ np.asarray(pet.GetDirection()).reshape(3, 3))
                     .ravel().tolist())
    out.SetOrigin(turn.TransformPoint(pet.GetOrigin()))
    return out, turn


def test_unconverged_turn_is_not_called_mirrored():
    """A PET header turned by 50 degrees: the optimiser ran out of iterations a few degrees short, and the mirrored
    fit of the left-right check, started elsewhere, reached the symmetric brain's optimum; that used to fail the
    pair as "mirrored left-right" (a wrong diagnosis that invites a wrong header fix). The unmirrored result is now
    continued first: aligned, and warned about only for the large turn."""
    from asfe3d.data import brain_mask, load_mni, simulate_pet

    t1, gm, wm = load_mni(4)
    pet = simulate_pet(gm, wm, spacing_mm=4.0, rng=np.random.default_rng(1), scale=5000.0)
    centre = t1.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in t1.GetSize()])
    turned, truth = _header_turned(pet, 50.0, 0, centre)
    res = register_pet_to_mri(t1, turned, "rigid")
    assert res.qc is not None and "mirrored_lr" not in res.qc.flags, res.qc.summary()
    assert res.qc.verdict == "warn" and "rotation" in res.qc.flags, res.qc.summary()
    assert registration_error_mm(truth, res.transform, brain_mask(gm, wm))["mean"] < 1.0
