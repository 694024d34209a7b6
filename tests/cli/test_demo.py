"""``asfe3d demo``: its output folder is checked before any work (a file, a folder of the user's own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asfe3d.cli import main
from asfe3d.cli.demo import MARKER, check_demo_folder
from asfe3d.errors import Asfe3dInputError


def test_users_own_folder_is_refused_before_any_file_is_replaced(tmp_path: Path, capsys) -> None:
    """A folder holding the user's own ``inputs/mri.nii.gz`` was overwritten by the demo's pair (then the run was
    refused at the record, after the work)."""
    out = tmp_path / "mine"
    (out / "inputs").mkdir(parents=True)
    (out / "inputs" / "mri.nii.gz").write_bytes(b"my mri")
    assert main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"asfe3d: error: {out}: holds files that no asfe3d demo wrote") and "\n" not in err
    assert (out / "inputs" / "mri.nii.gz").read_bytes() == b"my mri" and not (out / MARKER).exists()


def test_out_that_is_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "afile"
    out.write_text("x")
    assert main(["demo", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"asfe3d: error: {out}: --out is a file, not a folder"


def test_new_empty_marked_and_earlier_demo_folders_are_accepted(tmp_path: Path) -> None:
    check_demo_folder(tmp_path / "new")
    assert (tmp_path / "new" / MARKER).is_file()
    (tmp_path / "new" / "inputs").mkdir()
    (tmp_path / "new" / "inputs" / "notes.txt").write_text("x")
    check_demo_folder(tmp_path / "new")  # marked: the demo's own
    empty = tmp_path / "empty"
    empty.mkdir()
    check_demo_folder(empty)
    # an earlier demo's folder, from before the marker: its record names its own inputs/mri.nii.gz
    old = tmp_path / "old"
    (old / "inputs").mkdir(parents=True)
    mri = old / "inputs" / "mri.nii.gz"
    mri.write_bytes(b"0123")
    (old / "demo_fused_asfe.json").write_text(json.dumps({"inputs": {"mri": {"path": str(mri.resolve()), "size": 4}}}))
    check_demo_folder(old)
    assert (old / MARKER).is_file()
    other = tmp_path / "other"
    (other / "inputs").mkdir(parents=True)
    (other / "inputs" / "mri.nii.gz").write_bytes(b"0123")
    (other / "demo_fused_asfe.json").write_text(json.dumps({"inputs": {"mri": {"path": "/elsewhere.nii.gz"}}}))
    with pytest.raises(Asfe3dInputError, match="no asfe3d demo wrote"):
        check_demo_folder(other)


def test_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(Asfe3dInputError, match=r"cannot write the demo's output folder"):
        check_demo_folder(blocker / "sub")
