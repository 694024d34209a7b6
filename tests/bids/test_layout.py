"""Finding T1w/PET pairs in a BIDS dataset: entities, sessions, label filters and the T1w choice rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asfe3d.bids import find_pairs, normalise_labels
from asfe3d.errors import Asfe3dInputError
from tests.bids.conftest import make_dataset, write_pet, write_t1w


def test_pairs_sessions_tracers_and_subject_without_pet(tiny_bids: Path) -> None:
    pairs, issues = find_pairs(tiny_bids)
    assert [p.prefix for p in pairs] == ["sub-01_trc-FDG", "sub-02_ses-bl_trc-PIB"]
    assert [str(p.folder) for p in pairs] == ["sub-01/pet", "sub-02/ses-bl/pet"]
    assert pairs[0].t1w.name == "sub-01_T1w.nii.gz" and pairs[0].session is None
    assert pairs[1].t1w.name == "sub-02_ses-bl_T1w.nii.gz" and pairs[1].session == "bl"
    assert pairs[0].metadata["TracerName"] == "FDG" and pairs[1].metadata["Units"] == "Bq/mL"
    assert [(i.subject, i.kind) for i in issues] == [("03", "no-pet")]
    assert "no PET" in issues[0].message


def test_label_filters_accept_prefixes(tiny_bids: Path) -> None:
    pairs, issues = find_pairs(tiny_bids, participant_labels=["sub-02", "01"])
    assert [p.subject for p in pairs] == ["01", "02"] and issues == []
    pairs, issues = find_pairs(tiny_bids, session_labels=["ses-bl"])
    assert [p.prefix for p in pairs] == ["sub-02_ses-bl_trc-PIB"]
    assert sorted(i.subject for i in issues) == ["01", "03"]  # no PET in ses-bl


def test_unknown_labels_are_one_line_errors(tiny_bids: Path) -> None:
    with pytest.raises(Asfe3dInputError, match=r"participant label\(s\) \['09'\] not found; the dataset has 01, 02, 03"):
        find_pairs(tiny_bids, participant_labels=["09"])
    with pytest.raises(Asfe3dInputError, match=r"session label\(s\) \['fu'\] not found"):
        find_pairs(tiny_bids, session_labels=["fu"])
    with pytest.raises(Asfe3dInputError, match="bad sub label 'a_b'"):
        normalise_labels(["a_b"], "sub-")


def test_not_a_bids_dataset(tmp_path: Path) -> None:
    with pytest.raises(Asfe3dInputError, match="does not exist"):
        find_pairs(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(Asfe3dInputError, match="dataset_description.json is missing"):
        find_pairs(tmp_path / "x")


def test_several_t1w_runs_take_the_lowest_run(tiny_bids: Path) -> None:
    anat = tiny_bids / "sub-01/anat"
    (anat / "sub-01_T1w.nii.gz").rename(anat / "sub-01_run-2_T1w.nii.gz")
    write_t1w(anat / "sub-01_run-1_T1w.nii.gz")
    pairs, _ = find_pairs(tiny_bids, participant_labels=["01"])
    assert pairs[0].t1w.name == "sub-01_run-1_T1w.nii.gz"
    assert "took the lowest run" in pairs[0].note


def test_t1w_differing_in_acq_is_refused_for_that_pair(tiny_bids: Path) -> None:
    write_t1w(tiny_bids / "sub-01/anat/sub-01_acq-fast_T1w.nii.gz")
    pairs, issues = find_pairs(tiny_bids)
    assert [p.subject for p in pairs] == ["02"]
    errors = [i for i in issues if i.kind == "error"]
    assert len(errors) == 1 and errors[0].subject == "01"
    assert "differ in more than their run" in errors[0].message
    assert "sub-01_T1w.nii.gz" in errors[0].message and "sub-01_acq-fast_T1w.nii.gz" in errors[0].message


def test_pet_session_without_t1w_uses_the_subjects_only_t1w(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "bids")
    write_pet(root / "sub-02/ses-fu/pet/sub-02_ses-fu_trc-PIB_rec-acdyn_run-01_pet.nii.gz")
    pairs, issues = find_pairs(root, participant_labels=["02"])
    fu = [p for p in pairs if p.session == "fu"]
    assert len(fu) == 1 and fu[0].t1w.name == "sub-02_ses-bl_T1w.nii.gz"
    assert "from ses-bl" in fu[0].note
    assert fu[0].prefix == "sub-02_ses-fu_trc-PIB_rec-acdyn_run-01"  # the PET's entities, padding kept
    assert issues == []


def test_pet_without_any_t1w_is_an_error(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "bids")
    write_pet(root / "sub-04/pet/sub-04_trc-FDG_pet.nii.gz")
    _, issues = find_pairs(root, participant_labels=["04"])
    assert [(i.kind, i.subject) for i in issues] == [("error", "04")]
    assert "no T1w image" in issues[0].message
    assert json.loads((root / "dataset_description.json").read_text(encoding="utf-8"))["Name"] == "tiny"
