"""Completion records (``asfe3d.io.record``) read from another folder than they were written in."""

from __future__ import annotations

import shutil
from pathlib import Path

from asfe3d.io.record import check_record, fingerprint, read_record, write_record


def _run(folder: Path, inputs_in: Path) -> tuple[Path, dict[str, Path], dict[str, Path]]:
    """A complete record in ``folder`` of two inputs in ``inputs_in`` and one output beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs_in.mkdir(parents=True, exist_ok=True)
    inputs = {"mri": inputs_in / "mri.nii.gz", "pet": inputs_in / "pet.nii.gz"}
    for i, p in enumerate(inputs.values()):
        p.write_bytes(bytes(10 + i))
    fused = folder / "fused.nii.gz"
    fused.write_bytes(b"fused")
    record = folder / "fused.json"
    write_record(record, {"inputs": {k: fingerprint(p) for k, p in inputs.items()}}, status="complete",
                 outputs={"fused": fused})
    return record, inputs, {"fused": fused}


def _moved(paths: dict[str, Path], old: Path, new: Path) -> dict[str, Path]:
    return {k: new / p.relative_to(old) for k, p in paths.items()}


def test_a_folder_moved_with_its_inputs_is_still_complete(tmp_path: Path) -> None:
    record, inputs, outputs = _run(tmp_path / "a/out", tmp_path / "a/in")
    assert check_record(record, outputs, inputs) is None
    shutil.move(tmp_path / "a", tmp_path / "b")
    record, inputs, outputs = (tmp_path / "b/out/fused.json", _moved(inputs, tmp_path / "a", tmp_path / "b"),
                               _moved(outputs, tmp_path / "a", tmp_path / "b"))
    assert check_record(record, outputs, inputs) is None
    assert read_record(record)["outputs"]["fused"]["path"] == str(outputs["fused"].resolve())
    inputs["pet"].write_bytes(bytes(99))  # a changed input still counts as changed
    assert "the pet input" in check_record(record, outputs, inputs) and "changed" in check_record(record, outputs,
                                                                                                  inputs)


def test_outputs_moved_alone_keep_the_inputs_where_they_were(tmp_path: Path) -> None:
    record, inputs, outputs = _run(tmp_path / "out", tmp_path / "in")
    shutil.move(tmp_path / "out", tmp_path / "elsewhere")
    record, outputs = tmp_path / "elsewhere/fused.json", {"fused": tmp_path / "elsewhere/fused.nii.gz"}
    assert check_record(record, outputs, inputs) is None
    # the old output folder's name is not taken for the new one
    assert "was not part of the recorded run" in check_record(record, {"fused": tmp_path / "out/fused.nii.gz"},
                                                              inputs)


def test_a_copy_with_other_inputs_is_not_complete(tmp_path: Path) -> None:
    """A copied folder whose input was replaced by another file of the same name: not the recorded run."""
    _run(tmp_path / "a/out", tmp_path / "a/in")
    shutil.copytree(tmp_path / "a", tmp_path / "c")  # copy2: sizes and modification times kept
    (tmp_path / "c/in/mri.nii.gz").write_bytes(bytes(11))
    reason = check_record(tmp_path / "c/out/fused.json", {"fused": tmp_path / "c/out/fused.nii.gz"},
                          {"mri": tmp_path / "c/in/mri.nii.gz", "pet": tmp_path / "c/in/pet.nii.gz"})
    assert reason is not None and "the mri input" in reason


def test_inputs_moved_alone_or_behind_a_link_are_still_the_recorded_ones(tmp_path: Path) -> None:
    """The recorded path gone (the inputs moved, the outputs stayed), or reached through a symbolic link since, or a
    copy: the same content makes it the recorded input."""
    record, inputs, outputs = _run(tmp_path / "out", tmp_path / "in")
    shutil.move(tmp_path / "in", tmp_path / "store")
    (tmp_path / "in").symlink_to(tmp_path / "store")
    assert check_record(record, outputs, inputs) is None  # through the link
    moved = _moved(inputs, tmp_path / "in", tmp_path / "store")
    assert check_record(record, outputs, moved) is None  # the new place itself
    (tmp_path / "in").unlink()
    shutil.move(tmp_path / "store", tmp_path / "elsewhere")
    assert check_record(record, outputs, _moved(inputs, tmp_path / "in", tmp_path / "elsewhere")) is None
    shutil.copytree(tmp_path / "elsewhere", tmp_path / "in")  # the recorded place holds files again: copies
    assert check_record(record, outputs, _moved(inputs, tmp_path / "in", tmp_path / "elsewhere")) is None
    assert check_record(record, outputs, inputs) is None  # the same content: the recorded inputs


def test_inputs_swapped_with_the_same_size_and_time_are_not_the_recorded_ones(tmp_path: Path) -> None:
    """Two PETs of one size from one archive (one modification time), swapped after the run: by path, size and time
    nothing changed, so the fused volume of the other PET was kept as complete. The content says otherwise."""
    import os

    inputs = {"mri": tmp_path / "in/a.nii", "pet": tmp_path / "in/b.nii"}
    inputs["mri"].parent.mkdir()
    for p, byte in zip(inputs.values(), (b"a", b"b")):
        p.write_bytes(byte * 1000)
        os.utime(p, ns=(1_700_000_000 * 10**9,) * 2)
    fused = tmp_path / "fused.nii.gz"
    fused.write_bytes(b"fused")
    record = tmp_path / "fused.json"
    write_record(record, {"inputs": {k: fingerprint(p) for k, p in inputs.items()}}, status="complete",
                 outputs={"fused": fused})
    assert check_record(record, {"fused": fused}, inputs) is None
    os.rename(inputs["mri"], tmp_path / "in/tmp")
    os.rename(inputs["pet"], inputs["mri"])
    os.rename(tmp_path / "in/tmp", inputs["pet"])
    reason = check_record(record, {"fused": fused}, inputs)
    assert reason is not None and "its content is not the recorded one" in reason


def test_outputs_moved_then_everything_moved(tmp_path: Path) -> None:
    """Two moves in a row (the output folder into the tree, then the tree): still complete, each input checked by
    its size and modification time once its recorded path is gone."""
    record, inputs, outputs = _run(tmp_path / "a/out", tmp_path / "a/data")
    (tmp_path / "a/deep").mkdir()
    shutil.move(tmp_path / "a/out", tmp_path / "a/deep/out")
    record, outputs = tmp_path / "a/deep/out/fused.json", {"fused": tmp_path / "a/deep/out/fused.nii.gz"}
    assert check_record(record, outputs, inputs) is None
    shutil.move(tmp_path / "a", tmp_path / "b")
    record, outputs = tmp_path / "b/deep/out/fused.json", {"fused": tmp_path / "b/deep/out/fused.nii.gz"}
    assert check_record(record, outputs, _moved(inputs, tmp_path / "a", tmp_path / "b")) is None


def test_a_deleted_output_of_a_moved_folder_is_missing(tmp_path: Path) -> None:
    """Moved, then the fused volume deleted: "missing" at its new place (it was "not part of the recorded run")."""
    record, inputs, outputs = _run(tmp_path / "a/out", tmp_path / "a/in")
    shutil.move(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b/out/fused.nii.gz").unlink()
    reason = check_record(tmp_path / "b/out/fused.json", {"fused": tmp_path / "b/out/fused.nii.gz"},
                          _moved(inputs, tmp_path / "a", tmp_path / "b"))
    assert reason is not None and reason.endswith("is missing"), reason


def test_a_dicom_folder_with_one_file_exchanged_is_not_the_recorded_one(tmp_path: Path) -> None:
    """A folder of links (a PACS cache), one pointed at an older file of the same size: its size and newest times
    are unchanged, so the fast path took it for the recorded folder; the files' own identities say otherwise."""
    import os

    store, folder = tmp_path / "store", tmp_path / "dicom"
    store.mkdir()
    folder.mkdir()
    for name, byte in (("a", b"a"), ("b", b"b"), ("old", b"o")):
        (store / name).write_bytes(byte * 100)
    os.utime(store / "old", ns=(10**18, 10**18))
    os.utime(store / "a", ns=(2 * 10**18, 2 * 10**18))
    os.utime(store / "b", ns=(2 * 10**18, 2 * 10**18))
    for name in ("a", "b"):
        (folder / f"{name}.dcm").symlink_to(store / name)
    fused = tmp_path / "fused.nii.gz"
    fused.write_bytes(b"fused")
    record = tmp_path / "fused.json"
    write_record(record, {"inputs": {"pet": fingerprint(folder)}}, status="complete", outputs={"fused": fused})
    assert check_record(record, {"fused": fused}, {"pet": folder}) is None
    (folder / "b.dcm").unlink()
    (folder / "b.dcm").symlink_to(store / "old")
    reason = check_record(record, {"fused": fused}, {"pet": folder})
    assert reason is not None and "its content is not the recorded one" in reason


def test_damaged_records_are_not_complete_and_never_crash(tmp_path: Path) -> None:
    import json

    record, inputs, outputs = _run(tmp_path / "out", tmp_path / "in")
    good = json.loads(record.read_text())
    edits = [("outputs", [1, 2]), ("outputs", None), ("outputs", {"fused": "x"}), ("outputs", {"fused": {"path": 3}}),
             ("inputs", {"mri": "t1.nii.gz", "pet": good["inputs"]["pet"]}), ("inputs", {**good["inputs"],
                                                                                    "pet_sidecar": {"path": 7}})]
    for key, value in edits:
        record.write_text(json.dumps({**good, key: value}))
        reason = check_record(record, outputs, inputs)
        assert reason is not None or key == "inputs" and "pet_sidecar" in str(value), (key, value)
    # the digest removed (or not a string) while the file was edited in place, keeping its size and time
    import os

    mri = inputs["mri"]
    stamp = mri.stat().st_mtime_ns
    for digest in (None, 5, "deleted"):
        entry = {k: v for k, v in good["inputs"]["mri"].items() if k != "sha256" or digest != "deleted"}
        if digest != "deleted":
            entry["sha256"] = digest
        record.write_text(json.dumps({**good, "inputs": {**good["inputs"], "mri": entry}}))
        mri.write_bytes(b"\xff" * mri.stat().st_size)
        os.utime(mri, ns=(stamp, stamp))
        reason = check_record(record, outputs, inputs)
        assert reason is not None and "content digest is missing" in reason, (digest, reason)


def test_settings_a_record_lacks_are_a_difference() -> None:
    """A setting missing from a record (an earlier version's, or damaged) was "the same as anything this run asks"."""
    from asfe3d.io.record import settings_difference
    from asfe3d.settings import Settings

    wanted = Settings.from_flat(method="max").as_dict()
    recorded = Settings().as_dict()
    assert settings_difference(recorded, Settings().as_dict()) is None
    del recorded["fusion"]["method"]
    assert settings_difference(recorded, wanted) == "fusion.method not recorded -> 'max'"
    assert settings_difference(None, wanted) == "the record holds no settings"
    assert settings_difference({k: v for k, v in recorded.items() if k != "fusion"}, wanted) is not None


def test_a_hidden_file_in_a_dicom_folder_is_no_change(tmp_path: Path) -> None:
    folder = tmp_path / "dicom"
    folder.mkdir()
    (folder / "1.dcm").write_bytes(b"slice" * 20)
    fused = tmp_path / "fused.nii.gz"
    fused.write_bytes(b"fused")
    record = tmp_path / "fused.json"
    write_record(record, {"inputs": {"mri": fingerprint(folder)}}, status="complete", outputs={"fused": fused})
    (folder / ".DS_Store").write_bytes(b"finder")
    assert check_record(record, {"fused": fused}, {"mri": folder}) is None
    (folder / "2.dcm").write_bytes(b"slice" * 20)  # a slice more is a change
    assert check_record(record, {"fused": fused}, {"mri": folder}) is not None


def test_outputs_exchanged_for_others_of_the_same_size_are_not_complete(tmp_path: Path) -> None:
    """Two subjects' fused volumes of one size swapped on disk: by path and size both were complete."""
    import os

    runs = {}
    for name, byte in (("s1", b"1"), ("s2", b"2")):
        fused = tmp_path / f"{name}_fused.nii"
        fused.write_bytes(byte * 500)
        write_record(tmp_path / f"{name}_fused.json", {"inputs": {}}, status="complete", outputs={"fused": fused})
        runs[name] = fused
    assert all(check_record(tmp_path / f"{n}_fused.json", {"fused": f}, {}) is None for n, f in runs.items())
    os.rename(runs["s1"], tmp_path / "tmp")
    os.rename(runs["s2"], runs["s1"])
    os.rename(tmp_path / "tmp", runs["s2"])
    for name, fused in runs.items():
        assert "changed since it was written" in check_record(tmp_path / f"{name}_fused.json", {"fused": fused}, {})


def test_a_refused_run_is_not_complete_and_its_report_is_replaceable(tmp_path: Path) -> None:
    """A run refused for its registration (``--qc strict --report``) records its report as asfe3d's own: the next
    run redoes it and may replace the report and the record; a foreign file beside them stays foreign."""
    import pytest

    from asfe3d.io.record import pending_outputs, replaceable_outputs

    fused, report = tmp_path / "f.nii.gz", tmp_path / "f_report.html"
    report.write_text("<html>refusal</html>")
    record = write_record(tmp_path / "f.json", {"refusal": "pet.nii.gz: registration judged failed"},
                          status="refused", outputs={"report": report})
    assert read_record(record)["status"] == "refused"
    assert check_record(record, {"fused": fused}, {}) == ("the recorded run was refused (registration judged "
                                                          "failed under --qc strict)")
    assert pending_outputs(record) == [report.resolve()]
    assert set(replaceable_outputs(fused)) == {report.resolve(), record}
    with pytest.raises(ValueError, match="'pending', 'complete' or 'refused', got 'done'"):
        write_record(record, {}, status="done", outputs={})


def test_weights_are_known_by_content_not_by_the_spelling_of_their_path(tmp_path: Path, monkeypatch) -> None:
    """Probe 40 #2 and #7: the record named the weight file by its path alone. Retrained weights saved over
    ``models/model.pt`` left the old outputs "complete", and the same file named absolutely (``--bundle_root``
    from another folder) was "other settings". The file is fingerprinted among the inputs now."""
    from asfe3d.settings import Settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    weights = tmp_path / "models" / "model.pt"
    weights.write_bytes(b"weights one")
    record, inputs, outputs = _run(tmp_path / "out", tmp_path / "in")
    relative = Settings.from_flat(weights="models/model.pt").as_dict()
    content = {"inputs": {k: fingerprint(p) for k, p in inputs.items()}, "settings": relative}
    write_record(record, content, status="complete", outputs=outputs)
    assert read_record(record)["inputs"]["weights"]["path"] == str(weights.resolve())
    assert check_record(record, outputs, inputs, relative) is None
    absolute = Settings.from_flat(weights=str(weights)).as_dict()
    assert check_record(record, outputs, inputs, absolute) is None  # the same file, spelt otherwise
    other = tmp_path / "other.pt"
    other.write_bytes(b"weights two")
    assert "fusion.weights" in check_record(record, outputs, inputs, Settings.from_flat(weights=str(other)).as_dict())
    weights.write_bytes(b"weights 2.0")  # retrained, saved under the same name
    reason = check_record(record, outputs, inputs, relative)
    assert reason is not None and "weights input" in reason and "changed since the recorded run" in reason
    assert check_record(record, outputs, inputs) is not None  # without settings: the recorded file, by content


def test_a_record_without_the_weights_fingerprint_is_judged_by_path_as_before(tmp_path: Path, monkeypatch) -> None:
    """Review 43 #1: records written before weights were fingerprinted (or of a run whose weights were no file)
    were never complete again: the weights were checked as an input the record did not hold."""
    from asfe3d.settings import Settings

    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    record, inputs, outputs = _run(tmp_path / "out", tmp_path / "in")
    wanted = Settings.from_flat(weights="w.pt").as_dict()
    old = {"inputs": {k: fingerprint(p) for k, p in inputs.items()}, "settings": wanted}
    write_record(record, old, status="pending", outputs=outputs)  # a pending write adds no fingerprint
    data = read_record(record)
    data["status"] = "complete"
    record.write_text(__import__("json").dumps(data))  # as an earlier version left it: complete, no inputs.weights
    assert "weights" not in read_record(record)["inputs"]
    assert check_record(record, outputs, inputs, wanted) is None
    assert "fusion.weights" in check_record(record, outputs, inputs, Settings.from_flat(weights=str(weights)).as_dict())


def test_the_working_directory_removed_meanwhile_is_recorded_as_none(tmp_path, monkeypatch) -> None:
    """Review 43 #7: ``os.getcwd()`` raises when the folder was removed: no record could be written."""
    import os

    from asfe3d.io.record import _working_directory

    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    os.rmdir(gone)
    assert _working_directory() is None
