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
