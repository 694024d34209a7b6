"""Checks of asfe3d.io.checks that need no volume: paths the process's locale cannot pass on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from asfe3d.io.checks import locale_problem


def test_a_path_this_locale_cannot_pass_on_is_named(monkeypatch) -> None:
    """Probe 41 #11: under LC_ALL=C with PYTHONUTF8=0 a non-ASCII argument arrives as surrogate escapes, which
    SimpleITK could not take (the process aborted, exit 134), and a non-ASCII subject name of a CSV could not become
    a path (a UnicodeEncodeError traceback)."""
    assert locale_problem("sub-01/mri.nii.gz") is None and locale_problem("süb/mrï.nii.gz") is None  # UTF-8 here
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    assert "PYTHONUTF8=1" in locale_problem("mr\udcc3\udcaf.nii.gz")  # bytes the ASCII locale could not decode
    assert "(ascii)" in locale_problem("süb") and locale_problem("sub-01") is None


def test_the_command_refuses_such_an_argument_in_one_line(capsys, monkeypatch) -> None:
    from asfe3d.cli import main

    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    assert main(["fuse", "mr\udcc3\udcaf.nii.gz", "pet.nii.gz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asfe3d: error: 'mr\\udcc3\\udcaf.nii.gz': holds characters")


def test_a_cohort_csv_with_such_a_name_is_refused_by_line(tmp_path: Path, monkeypatch) -> None:
    from asfe3d.cohort import read_datalist
    from asfe3d.errors import Asfe3dInputError

    for name in ("m.nii.gz", "p.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    csv = tmp_path / "c.csv"
    csv.write_text("subject,mri,pet\nsüb,m.nii.gz,p.nii.gz\n", encoding="utf-8")
    assert [s.subject for s in read_datalist(csv)] == ["süb"]
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    with pytest.raises(Asfe3dInputError, match=r"line 2: subject 's\\xfcb' holds characters this locale"):
        read_datalist(csv)


def test_a_name_that_is_not_utf8_in_a_utf8_locale_says_so() -> None:
    """Review 43 #6: in a UTF-8 locale, a file name in another encoding was told to switch to a UTF-8 locale."""
    if sys.getfilesystemencoding().lower().replace("-", "") != "utf8":
        pytest.skip("this process's file-system encoding is not UTF-8")
    assert locale_problem("caf\udce9.nii.gz") == (
        "holds bytes that are not UTF-8 (a name written in another encoding): rename it in UTF-8")
