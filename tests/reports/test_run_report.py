"""write_run_report: a report from a real fuse_pair run, images taken from its outputs and the MRI's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from asfe3d.reports import read_report_summary, write_run_report
from asfe3d.settings import Settings
from tests.bids.conftest import write_pet, write_t1w


def test_report_from_a_fuse_pair_run(tmp_path: Path) -> None:
    from asfe3d.pipeline import fuse_pair

    mri = write_t1w(tmp_path / "t1w.nii.gz", 1)
    pet = write_pet(tmp_path / "pet.nii.gz", 1, tracer=None)
    result = fuse_pair(mri, pet, tmp_path / "fused.nii.gz",
                       Settings.from_flat(method="mean", registration="none", save_registered_pet=True))
    path = write_run_report(tmp_path / "report.html", result)
    summary = read_report_summary(path)
    assert summary["title"] == "report" and summary["status"] == "ok"
    assert summary["verdict"] == result.registration["qc"]["verdict"]
    text = path.read_text(encoding="utf-8")
    assert str(mri.resolve()) in text and "mean" in text

    bare = fuse_pair(mri, pet, tmp_path / "bare.nii.gz", Settings.from_flat(method="mean", registration="none"))
    with pytest.raises(ValueError, match="saved no registered PET"):
        write_run_report(tmp_path / "bare.html", bare)
    assert not (tmp_path / "bare.html").exists()
