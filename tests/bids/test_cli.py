"""``asfe3d bids``: the BIDS App command line (parser, exit codes, one-line errors)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.bids.conftest import make_dataset


def _main():
    from asfe3d import cli

    assert "bids" in cli.COMMAND_MODULES  # a missing or broken bids command fails here, never skips
    return cli.main


def test_parser_contract() -> None:
    from asfe3d.cli.bids import add_parser, run

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["bids", "in", "out", "participant", "--participant-label", "01", "sub-02",
                              "--session-label", "bl", "--method", "mean", "--registration", "none"])
    assert args.func is run and args.participant_label == ["01", "sub-02"] and args.session_label == ["bl"]
    assert args.bids_dir == Path("in") and args.method == "mean" and args.registration == "none"
    with pytest.raises(SystemExit):
        parser.parse_args(["bids", "in", "out", "group"])  # only the participant level


def test_bids_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = _main()
    bids = make_dataset(tmp_path / "bids")
    out = tmp_path / "out"
    code = main(["bids", str(bids), str(out), "participant", "--participant-label", "02", "03",
                 "--method", "mean", "--registration", "none", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # the toy dataset's PET is its T1w in other units: judged failed, written anyway (--qc warn), and the summary
    # counts and names it (probe 41 #5: "1 fused, 0 failed" said nothing of it)
    assert "1 pairs: 1 fused, 0 already complete, 0 failed, 1 with a registration judged failed; 1 subject/session(s) " \
        "without PET skipped" in captured.out
    assert "registration QC failed: sub-02_ses-bl_trc-PIB: " in captured.err and "one kind of image" in captured.err
    assert "sub-03: no PET" in captured.out
    assert (out / "sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_space-T1w_desc-fused_pet.nii.gz").is_file()
    assert (out / "sub-02.html").is_file() and (out / "index.html").is_file()
    assert not (out / "sub-01").exists()


def test_bids_command_bad_label_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = _main()
    bids = make_dataset(tmp_path / "bids")
    code = main(["bids", str(bids), str(tmp_path / "out"), "participant", "--participant-label", "7",
                 "--method", "mean"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("asfe3d: error: ") and "participant label(s) ['7'] not found" in err[0]
    assert not (tmp_path / "out").exists()


def test_bids_command_counts_failed_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.bids.conftest import write_t1w

    main = _main()
    bids = make_dataset(tmp_path / "bids")
    write_t1w(bids / "sub-01/anat/sub-01_acq-fast_T1w.nii.gz")  # sub-01's PET: an ambiguous T1w
    code = main(["bids", str(bids), str(tmp_path / "out"), "participant", "--participant-label", "01",
                 "--method", "mean", "--registration", "none", "--no-progress", "--no-reports"])
    captured = capsys.readouterr()
    assert code == 1
    assert "bids: 1 pairs: 0 fused, 0 already complete, 1 failed, 0 with a registration judged failed; 0 " \
        "subject/session(s)" in captured.out
    assert "differ in more than their run" in captured.err


def test_bids_command_invalid_description_is_one_line_exit_2(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    main = _main()
    bids = make_dataset(tmp_path / "bids")
    (bids / "dataset_description.json").write_text('{"Name": ', encoding="utf-8")
    code = main(["bids", str(bids), str(tmp_path / "out"), "participant", "--method", "mean"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"asfe3d: error: {bids / 'dataset_description.json'}: not valid JSON")
    assert not (tmp_path / "out").exists()


def test_output_folder_errors_come_alone_and_before_indexing(tmp_path: Path, capsys, monkeypatch) -> None:
    """OUTPUT_DIR mistakes are found before the dataset is indexed: one stderr line, no warnings about its T1w."""
    import asfe3d.bids.layout as layout
    from tests.bids.conftest import write_t1w

    bids = make_dataset(tmp_path / "bids")
    write_t1w(bids / "sub-01/anat/sub-01_run-2_T1w.nii.gz", 5)  # a second T1w run: a warning when paired
    indexed = []
    monkeypatch.setattr(layout, "_layout", lambda d: indexed.append(d) or pytest.fail("indexed"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (bids, blocker, blocker / "out"):
        assert _main()(["bids", str(bids), str(out), "participant"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"asfe3d: error: {out}"), err
    assert indexed == []


def test_dynamic_pet_without_frame_duration_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 4D PET whose sidecar has no FrameDuration (BIDS requires it) is averaged with equal weights: the summary
    says so on stderr, in this run and in a rerun that finds the pair complete (only the record said it)."""
    import nibabel as nib
    import numpy as np

    main = _main()
    bids = make_dataset(tmp_path / "bids")
    pet = bids / "sub-01/pet/sub-01_trc-FDG_pet.nii.gz"
    img = nib.load(str(pet))
    nib.save(nib.Nifti1Image(np.stack([np.asarray(img.dataobj)] * 3, axis=-1), img.affine), str(pet))
    out = tmp_path / "out"
    argv = ["bids", str(bids), str(out), "participant", "--participant-label", "01", "--method", "mean",
            "--registration", "none", "--no-frame-realign", "--no-reports", "--no-progress"]
    for _ in range(2):
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert "warning: sub-01_trc-FDG: the PET's 3 frames were averaged with equal weights: its sidecar gives no " \
            "FrameDuration" in err
    assert main([*argv, "--pet-frame", "1", "--overwrite"]) == 0
    assert "equal weights" not in capsys.readouterr().err
