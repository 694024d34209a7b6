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
    # sub-01's PET has no session: said so, not as if it had none (probe 45 #6)
    assert [i.message for i in issues if i.subject == "01"] == [
        "sub-01: no PET (pet/*_pet.nii[.gz]) in session(s) ses-bl (its PET is in no session, not selected by "
        "--session-label); skipped"]


def test_unknown_labels_are_one_line_errors(tiny_bids: Path) -> None:
    with pytest.raises(Asfe3dInputError, match=r"participant label\(s\) \['09'\] not found; the dataset has 01, 02, 03"):
        find_pairs(tiny_bids, participant_labels=["09"])
    with pytest.raises(Asfe3dInputError, match=r"session label\(s\) \['fu'\] not found"):
        find_pairs(tiny_bids, session_labels=["fu"])
    with pytest.raises(Asfe3dInputError, match="^--participant-label: bad sub label 'a_b'"):
        normalise_labels(["a_b"], "sub-")
    assert normalise_labels(["sub-01/", "02"], "sub-") == ["01", "02"]  # a shell's completion of the folder


def test_a_t1w_choice_is_warned_once_per_run(tiny_bids: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    write_t1w(tiny_bids / "sub-01/anat/sub-01_run-2_T1w.nii.gz", 7)
    write_pet(tiny_bids / "sub-01/pet/sub-01_trc-PIB_pet.nii.gz", 8, "PIB")  # two PETs share the T1w choice
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        pairs, _ = find_pairs(tiny_bids, participant_labels=["01"])
    assert len(pairs) == 2 and caplog.text.count("2 T1w runs in sub-01") == 1


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


def test_one_t1w_name_in_two_files_is_refused_for_that_pair(tiny_bids: Path) -> None:
    """Probe 45 #5: ``sub-01_T1w.nii`` beside ``sub-01_T1w.nii.gz`` (two images) was taken as "2 T1w runs" and the
    ``.nii`` one fused: nothing tells which is meant."""
    import nibabel as nib

    anat = tiny_bids / "sub-01/anat"
    nib.save(nib.load(anat / "sub-01_T1w.nii.gz"), anat / "sub-01_T1w.nii")
    pairs, issues = find_pairs(tiny_bids)
    assert [p.subject for p in pairs] == ["02"]
    errors = [i for i in issues if i.kind == "error"]
    assert len(errors) == 1 and "share one name but their extension (sub-01_T1w.nii, sub-01_T1w.nii.gz)" in \
        errors[0].message


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


def test_t1w_of_two_other_sessions_is_ambiguous(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "bids")
    write_t1w(root / "sub-02/ses-m24/anat/sub-02_ses-m24_T1w.nii.gz")
    write_pet(root / "sub-02/ses-m12/pet/sub-02_ses-m12_trc-PIB_pet.nii.gz")
    pairs, issues = find_pairs(root, participant_labels=["02"])
    assert [p.session for p in pairs] == ["bl"]  # ses-bl has its own T1w
    errors = [i for i in issues if i.kind == "error"]
    assert [(e.subject, e.session) for e in errors] == [("02", "m12")]
    assert "sub-02_ses-bl_T1w.nii.gz" in errors[0].message and "sub-02_ses-m24_T1w.nii.gz" in errors[0].message
    assert "no T1w in sub-02 ses-m12, and several T1w images in sub-02's other sessions" in errors[0].message
    # runs of one other session still reduce to one (rule 3)
    (root / "sub-02/ses-m24/anat/sub-02_ses-m24_T1w.nii.gz").unlink()
    write_t1w(root / "sub-02/ses-bl/anat/sub-02_ses-bl_run-2_T1w.nii.gz")
    (root / "sub-02/ses-bl/anat/sub-02_ses-bl_T1w.nii.gz").rename(root / "sub-02/ses-bl/anat/sub-02_ses-bl_run-1_T1w.nii.gz")
    pairs, issues = find_pairs(root, participant_labels=["02"])
    assert [(p.session, p.t1w.name) for p in pairs] == [("bl", "sub-02_ses-bl_run-1_T1w.nii.gz"),
                                                         ("m12", "sub-02_ses-bl_run-1_T1w.nii.gz")]
    assert issues == []


@pytest.mark.parametrize("rules", [
    "sub-01/anat/sub-01_acq-fast_T1w.nii.gz",
    "/sub-01/anat/sub-01_acq-fast_T1w.nii.gz",
    "*acq-fast*",
    "# keep the MPRAGE\n\n**/anat/*_acq-fast_T1w.nii.gz\n",
    "sub-01/anat/*_acq-*\n",
])
def test_bidsignore_leaves_the_listed_t1w_out(tiny_bids: Path, rules: str) -> None:
    write_t1w(tiny_bids / "sub-01/anat/sub-01_acq-fast_T1w.nii.gz")
    (tiny_bids / ".bidsignore").write_text(rules, encoding="utf-8")
    pairs, issues = find_pairs(tiny_bids, participant_labels=["01"])
    assert [p.t1w.name for p in pairs] == ["sub-01_T1w.nii.gz"] and issues == []


def test_bidsignore_folders_and_pets(tiny_bids: Path) -> None:
    (tiny_bids / ".bidsignore").write_text("sub-02/\nsub-01/pet/\n", encoding="utf-8")
    pairs, issues = find_pairs(tiny_bids)
    assert pairs == [] and [(i.subject, i.kind) for i in issues] == [("01", "no-pet"), ("03", "no-pet")]
    with pytest.raises(Asfe3dInputError, match=r"participant label\(s\) \['02'\] not found"):
        find_pairs(tiny_bids, participant_labels=["02"])


def test_session_labels_of_ignored_folders_are_not_offered(tiny_bids: Path) -> None:
    (tiny_bids / ".bidsignore").write_text("ses-bl/\n", encoding="utf-8")
    with pytest.raises(Asfe3dInputError, match=r"session label\(s\) \['bl'\] not found .* they have no sessions"):
        find_pairs(tiny_bids, session_labels=["bl"])


def test_bidsignore_glob_semantics() -> None:
    from asfe3d.bids.layout import BidsIgnore

    rules = BidsIgnore(["a/**/c.nii", "x/**", "[!s]*.txt", "f?.json", "dir/"])
    assert rules.ignored("a/c.nii") and rules.ignored("a/b/b2/c.nii") and not rules.ignored("b/a/c.nii")
    assert rules.ignored("x/y/z") and not rules.ignored("x")
    assert rules.ignored("sub-01/t.txt") and not rules.ignored("sub-01/s.txt")
    assert rules.ignored("sub-01/f1.json") and not rules.ignored("sub-01/f12.json")
    assert rules.ignored("sub-01/dir/file") and not rules.ignored("sub-01/dir")
    assert rules.ignored("sub-01/dir", folder=True)
    assert not BidsIgnore([]).ignored("anything")
    classes = BidsIgnore(["run-0[!]]x", "a[]b]c"])  # a "]" first in a class is a member, negated or not
    assert classes.ignored("run-01x") and not classes.ignored("run-0]x")
    assert classes.ignored("a]c") and classes.ignored("abc") and not classes.ignored("acc")
    name = "sub-01/anat/sub-01_acq-fast_T1w.nii.gz"
    for lines in (["acq-fast"], ["/sub-01_acq-fast_T1w.nii.gz"], ["sub-01_acq-fast_T1w.nii.gz/"], ["# *acq-fast*"],
                  ["*acq-fast*", "!sub-01_acq-fast_T1w.nii.gz"], ["", "  "]):
        assert not BidsIgnore(lines).ignored(name), lines
    assert BidsIgnore(["sub-01/", "!sub-01/anat/"]).ignored(name)  # nothing comes back from an ignored folder


@pytest.mark.parametrize("text, problem", [('{"Name": ', "not valid JSON"), ("[1, 2]", "must hold a JSON object"),
                                           (b"\xff\xfe{}", "not UTF-8")])
def test_invalid_dataset_description_is_refused(tiny_bids: Path, text: str | bytes, problem: str) -> None:
    path = tiny_bids / "dataset_description.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(Asfe3dInputError, match=problem) as info:
        find_pairs(tiny_bids)
    assert info.value.path == str(path)


def test_pet_metadata_follows_the_inheritance_principle(tmp_path: Path) -> None:
    from asfe3d.bids.layout import pet_metadata

    root = tmp_path / "ds"
    pet = root / "sub-01/ses-1/pet/sub-01_ses-1_trc-FDG_pet.nii.gz"
    pet.parent.mkdir(parents=True)
    pet.write_bytes(b"")
    (root / "trc-FDG_pet.json").write_text(json.dumps({"Units": "Bq/mL", "TracerName": "FDG", "A": "tracer"}))
    (root / "trc-PIB_pet.json").write_text(json.dumps({"TracerName": "PIB"}))  # another tracer: not applicable
    (root / "sub-01/sub-01_pet.json").write_text(json.dumps({"BodyWeight": 70, "A": "subject"}))
    (root / "sub-01/sub-01_T1w.json").write_text(json.dumps({"BodyWeight": 1}))  # another suffix
    (pet.parent / "sub-01_ses-1_trc-FDG_pet.json").write_text(json.dumps({"A": "own"}))
    assert pet_metadata(pet, root) == {"Units": "Bq/mL", "A": "own", "TracerName": "FDG", "BodyWeight": 70}
    (pet.parent / "sub-01_ses-1_trc-FDG_pet.json").unlink()
    assert pet_metadata(pet, root)["A"] == "subject"  # the deeper file wins
    run = pet.with_name("sub-01_ses-1_trc-FDG_run-01_pet.nii.gz")
    run.write_bytes(b"")
    ses = root / "sub-01/ses-1"
    (ses / "sub-01_ses-1_run-1_pet.json").write_text(json.dumps({"FrameDuration": [600]}))  # run-1 is run-01
    (ses / "sub-01_pet.json").mkdir()  # a folder named like an applicable sidecar: not one
    assert pet_metadata(run, root)["FrameDuration"] == [600]


@pytest.mark.parametrize("text, problem", [('{"TracerName": "FDG",', "cannot be read"),
                                           ("[1]", "is not a JSON object")])
def test_a_broken_sidecar_fails_its_pair_and_names_the_file(tmp_path: Path, text: str, problem: str) -> None:
    bids = make_dataset(tmp_path / "bids")
    bad = bids / "sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_pet.json"
    bad.write_text(text, encoding="utf-8")
    pairs, issues = find_pairs(bids)  # the dataset is still indexed: sub-01 is fused
    assert [p.subject for p in pairs] == ["01"]
    errors = [i for i in issues if i.kind == "error"]
    assert len(errors) == 1 and str(bad) in errors[0].message and problem in errors[0].message


def test_two_applicable_sidecars_in_one_folder_are_ambiguous(tmp_path: Path) -> None:
    bids = make_dataset(tmp_path / "bids")
    (bids / "sub-01/pet/sub-01_pet.json").write_text("{}", encoding="utf-8")  # beside sub-01_trc-FDG_pet.json
    pairs, issues = find_pairs(bids, participant_labels=["01"])
    assert not pairs and "two JSON sidecars in one folder" in issues[0].message


def test_two_pets_that_would_share_derivative_names_both_fail(tiny_bids: Path) -> None:
    """A derivatives dataset (PETPrep style) with a native and a ``space-T1w`` PET of one tracer: both gave
    ``sub-01_trc-FDG_desc-fused_pet``; the second was refused as "changed since the recorded run", and with
    ``--overwrite`` replaced the first while the summary said "2 fused" (probe 20 #2). Both are now errors naming
    each other; leaving one out in .bidsignore fuses the other."""
    (tiny_bids / "dataset_description.json").write_text(json.dumps({
        "Name": "petprep", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "PETPrep"}]}), encoding="utf-8")
    # (no sidecar of its own: the native PET's applies to both)
    write_pet(tiny_bids / "sub-01/pet/sub-01_trc-FDG_space-T1w_desc-preproc_pet.nii.gz", 1, None)
    pairs, issues = find_pairs(tiny_bids)
    assert [p.prefix for p in pairs] == ["sub-02_ses-bl_trc-PIB"]
    clash = [i for i in issues if i.kind == "error"]
    assert sorted(i.pet.name for i in clash) == ["sub-01_trc-FDG_pet.nii.gz",
                                                 "sub-01_trc-FDG_space-T1w_desc-preproc_pet.nii.gz"]
    assert clash[0].message.startswith(f"{clash[0].pet.name}: its derivatives would have the same names "
                                       "(sub-01_trc-FDG_desc-fused_pet...) as those of")
    assert all(".bidsignore" in i.message for i in clash)
    (tiny_bids / ".bidsignore").write_text("*space-T1w*\n", encoding="utf-8")
    pairs, _ = find_pairs(tiny_bids)
    assert [p.pet.name for p in pairs] == ["sub-01_trc-FDG_pet.nii.gz", "sub-02_ses-bl_trc-PIB_pet.nii.gz"]


def test_a_description_without_required_keys_or_of_a_derivative_is_named(tiny_bids: Path, caplog) -> None:
    """A dataset_description.json without BIDSVersion (which the BIDS validator fails) or of a derivative dataset
    was read without a word."""
    import logging

    path = tiny_bids / "dataset_description.json"
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        find_pairs(tiny_bids)
    assert "dataset_description" not in caplog.text
    path.write_text(json.dumps({"Name": "tiny", "DatasetType": "derivative"}), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        find_pairs(tiny_bids)
    assert f"{path}: lacks BIDSVersion, required by BIDS" in caplog.text
    assert "DatasetType is 'derivative'" in caplog.text
