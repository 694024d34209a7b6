"""Every user mistake is refused up front: one line ``asfe3d: error: ...`` on stderr, exit 2, nothing written, no
registration run; and SIGTERM / Ctrl-C leave no partial output and keep earlier outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from asfe3d.cli import main

REPO = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def no_registration(monkeypatch):
    """Fail the test if the pipeline gets as far as registering (a refusal must come before)."""
    import asfe3d.registration

    def boom(*args, **kwargs):
        raise AssertionError("registration ran before the mistake was refused")

    monkeypatch.setattr(asfe3d.registration, "register_pet_to_mri", boom)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["-o", "{tmp}/x.txt"], "x.txt: the fused output must end in .nii or .nii.gz"),
        (["--rgb", "{tmp}/x.png"], "x.png: the fused rgb output must end in .nii or .nii.gz"),
        (["--save-transform", "{tmp}/t.nii"], "t.nii: the pet transform output must end in .tfm"),
        (["--preview", "{tmp}/p.jpg"], "p.jpg: the preview output must end in .png"),
        (["-o", "/proc/asfe3d_out/x.nii.gz"], "cannot write in /proc"),
        (["-o", "{tmp}/a_file/x.nii.gz"], "is a file where a folder is expected"),
        (["-o", "{tmp}"], "output path is an existing folder (give a file name)"),  # not "must end in .nii"
        (["--colormap", "nosuchmap"], "error: --colormap: unknown colour map 'nosuchmap'"),
        (["--seed", "-5"], "error: --seed: must be an integer in [0, 2147483646], got -5"),
        (["--roi-size", "0", "8", "8", "--mode", "volume"], "error: --roi-size: must be three integers >= 1"),
        (["--detail-injection", "9"], "error: --detail-injection: must be a number in [0, 4], got 9.0"),
        (["--device", "tpu"], "error: --device: must be auto, cpu or cuda[:N], got 'tpu'"),
        (["--threads", "0"], "--threads: must be an integer in [1, 1024], got 0"),
        (["--threads", "99999999999"], "--threads: must be an integer in [1, 1024], got 99999999999"),
        (["--registration-threads", "99999999999"], "error: --registration-threads: must be None or an integer in [1, 1024]"),
        (["--weights", "{tmp}/missing.pt"], "missing.pt: weight file does not exist"),
    ],
)
def test_user_mistakes_refused_before_any_work(pair, tmp_path, capsys, no_registration, extra, expected):
    mri, pet = pair
    (tmp_path / "a_file").write_text("not a folder")
    before = _files(tmp_path)
    args = ["fuse", str(mri), str(pet), "--method", "asfe", *[a.format(tmp=tmp_path) for a in extra]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("asfe3d: error: "), err
    assert expected in err
    assert _files(tmp_path) == before


def test_cuda_without_cuda_is_refused(pair, capsys, no_registration):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    mri, pet = pair
    assert main(["fuse", str(mri), str(pet), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_2d_weights_in_volume_mode_are_refused(pair, capsys, no_registration):
    from asfe3d.fusion.weights import shipped_weights

    mri, pet = pair
    assert main(["fuse", str(mri), str(pet), "--mode", "volume", "--weights", str(shipped_weights("slice"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and shipped_weights("slice").name in err


def test_existing_output_kept_without_overwrite(pair, tmp_path, capsys, no_registration):
    mri, pet = pair
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"user's file")
    assert main(["fuse", str(mri), str(pet), "-o", str(out)]) == 2
    assert "exists and out.json does not list it as an earlier asfe3d output" in capsys.readouterr().err
    assert out.read_bytes() == b"user's file"


def test_a_file_of_the_users_own_at_the_output_path_is_kept_even_with_overwrite(pair, tmp_path, capsys,
                                                                               no_registration):
    """``-o`` typed over an image asfe3d never wrote (another subject's, a derivative), with an ``--overwrite`` kept
    in a script: it was replaced without a word; --overwrite replaces this command's earlier outputs only."""
    mri, pet = pair
    out = tmp_path / "sub-01_T1w_brain.nii.gz"
    out.write_bytes(b"user's file")
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sub-01_T1w_brain.nii.gz: exists and sub-01_T1w_brain.json does not list it" in err
    assert "--overwrite or not" in err and out.read_bytes() == b"user's file"
    # asfe3d's own output is replaced with --overwrite (its record lists it), and then again
    out.unlink()
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean"]) == 0
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--overwrite"]) == 0


def test_a_json_of_the_users_own_at_the_record_path_is_kept_even_with_overwrite(pair, tmp_path, capsys,
                                                                               no_registration):
    # the record's name (<stem>.json) is never given by the user: a BIDS sidecar or notes there are not ours
    mri, pet = pair
    out, notes = tmp_path / "out.nii.gz", tmp_path / "out.json"
    notes.write_text('{"my": "notes"}')
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out.json: exists and is not an asfe3d completion record" in err
    assert notes.read_text() == '{"my": "notes"}' and not out.exists()


def test_a_file_of_the_users_own_at_an_optional_outputs_default_name_is_kept_even_with_overwrite(
        pair, tmp_path, capsys, no_registration):
    # `--rgb` names <stem>_rgb.nii.gz; the user never typed that name, so --overwrite does not reach a file of theirs
    mri, pet = pair
    out, theirs = tmp_path / "out.nii.gz", tmp_path / "out_rgb.nii.gz"
    theirs.write_bytes(b"user's file")
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--rgb", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out_rgb.nii.gz: exists and out.json does not list it as an earlier" in err
    assert theirs.read_bytes() == b"user's file" and not out.exists()


def test_overwrite_replaces_optional_outputs_that_an_earlier_run_wrote(pair, tmp_path, capsys):
    """Records carry earlier outputs forward: a run without --rgb between two with it does not orphan the volume."""
    from asfe3d.io.record import read_record

    mri, pet = pair
    out, rgb = tmp_path / "out.nii.gz", tmp_path / "out_rgb.nii.gz"
    base = ["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--registration", "none"]
    assert main([*base, "--rgb"]) == 0
    assert main([*base, "--overwrite"]) == 0
    record = read_record(tmp_path / "out.json")
    assert "fused_rgb" not in record["outputs"] and record["earlier_outputs"] == [{"path": str(rgb.resolve()),
                                                                             "size": rgb.stat().st_size}]
    assert main([*base, "--rgb", "--overwrite"]) == 0
    assert read_record(tmp_path / "out.json")["outputs"]["fused_rgb"]["path"] == str(rgb.resolve())
    # a file put there since (another size) is not the recorded one
    assert main([*base, "--overwrite"]) == 0
    rgb.write_bytes(b"user's file")
    capsys.readouterr()
    assert main([*base, "--rgb", "--overwrite"]) == 2
    assert "does not list it as an earlier asfe3d output" in capsys.readouterr().err
    assert rgb.read_bytes() == b"user's file"
    # a name the user types is no different: a file asfe3d did not write there is kept, --overwrite or not
    named = tmp_path / "colour.nii.gz"
    named.write_bytes(b"old")
    assert main([*base, "--rgb", str(named), "--overwrite"]) == 2 and named.read_bytes() == b"old"
    named.unlink()
    assert main([*base, "--rgb", str(named), "--overwrite"]) == 0 and named.stat().st_size > 100
    assert main([*base, "--rgb", str(named), "--overwrite"]) == 0  # now asfe3d's own: replaced


def test_the_same_file_given_twice_is_refused(pair, tmp_path, capsys, no_registration):
    mri, _ = pair
    assert main(["fuse", str(mri), str(mri), "-o", str(tmp_path / "out.nii.gz"), "--method", "mean"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the MRI and PET inputs are the same file" in err
    assert not (tmp_path / "out.nii.gz").exists()


def test_an_mri_too_thin_to_register_is_named(pair, tmp_path, capsys):
    """The MRI as a slab of 0.02 mm voxels: one line that names the MRI's file (it named none)."""
    import nibabel as nib
    import numpy as np

    mri, pet = pair
    thin = tmp_path / "thin_mri.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((40, 40, 40), dtype=np.float32),
                             np.diag([0.02, 0.02, 0.02, 1.0])), str(thin))
    assert main(["fuse", str(thin), str(pet), "-o", str(tmp_path / "out.nii.gz"), "--method", "mean"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"asfe3d: error: {thin}: MRI input has 40 voxels along x"), err


_SLOW_FUSE = textwrap.dedent(
    """
    import sys, time
    import asfe3d.fusion.classic as classic

    real = classic.MeanFusion.fuse_arrays

    def slow(self, mri, pet):
        print("FUSING", flush=True)
        time.sleep(60)
        return real(self, mri, pet)

    classic.MeanFusion.fuse_arrays = slow
    from asfe3d.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_keeps_earlier_outputs_and_leaves_no_partial_file(pair, tmp_path, sig, code):
    """An ``--overwrite`` run interrupted mid-way: the earlier complete outputs are still there, unchanged, and no
    temporary file is left."""
    mri, pet = pair
    out = tmp_path / "out" / "fused.nii.gz"
    base = ["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--registration", "none",
            "--save-registered-pet", "--no-progress"]
    assert main(base) == 0
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert set(before) == {"fused.nii.gz", "fused_pet_on_mri.nii.gz", "fused.json"}
    script = tmp_path / "slow.py"
    script.write_text(_SLOW_FUSE)
    # the child gets default SIGINT/SIGTERM handling even when this suite runs as a background job (where the shell
    # ignores SIGINT and children inherit that): the interrupt is what the test is about
    proc = subprocess.Popen([sys.executable, str(script), *base, "--overwrite"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=_default_signals)
    deadline = time.time() + 120
    line = ""
    while "FUSING" not in line and time.time() < deadline:
        line = proc.stdout.readline()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "no partial output was kept" in err
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before


@pytest.mark.parametrize("flag", ["--summary", "--output-dir"])
def test_cohort_only_options_refused_in_a_single_run(pair, tmp_path, capsys, flag):
    mri, pet = pair
    value = str(tmp_path / ("s.csv" if flag == "--summary" else "outdir"))
    assert main(["fuse", str(mri), str(pet), "-o", str(tmp_path / "f.nii.gz"), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{flag} is for cohort runs" in err
    assert not (tmp_path / "f.nii.gz").exists()


def test_fifo_input_refused_without_blocking(pair, tmp_path, capsys):
    mri, _ = pair
    fifo = tmp_path / "pet.nii"
    os.mkfifo(fifo)
    t = time.time()
    assert main(["fuse", str(mri), str(fifo), "-o", str(tmp_path / "f.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PET input is a named pipe (FIFO)" in err
    assert time.time() - t < 30


def test_record_never_lands_on_an_input_sidecar(pair, tmp_path, capsys):
    import shutil

    mri, pet = pair
    (tmp_path / "in").mkdir()
    pet_copy = tmp_path / "in" / "sub01_pet.nii.gz"
    shutil.copy(pet, pet_copy)
    sidecar = tmp_path / "in" / "sub01_pet.json"
    sidecar.write_text('{"Units": "Bq/mL"}')
    # -o sub01_pet.nii would put its completion record at sub01_pet.json: the PET's own sidecar
    for extra in ([], ["--pet-sidecar", str(sidecar)]):
        rc = main(["fuse", str(mri), str(pet_copy), "-o", str(tmp_path / "in" / "sub01_pet.nii"), "--overwrite",
                   *extra])
        assert rc == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "refusing to overwrite an input" in err
    assert sidecar.read_text() == '{"Units": "Bq/mL"}'
    assert not (tmp_path / "in" / "sub01_pet.nii").exists()


def test_second_run_on_the_same_outputs_refused_while_the_first_writes(pair, tmp_path, capsys):
    mri, pet = pair
    out = tmp_path / "out" / "fused.nii.gz"
    base = ["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--registration", "none", "--no-progress"]
    script = tmp_path / "slow.py"
    script.write_text(_SLOW_FUSE)
    proc = subprocess.Popen([sys.executable, str(script), *base], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_default_signals)
    try:
        deadline = time.time() + 120
        line = ""
        while "FUSING" not in line and time.time() < deadline:
            line = proc.stdout.readline()
        assert main([*base, "--method", "max"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another asfe3d run is writing these outputs now" in err
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert not out.exists() and not list(out.parent.glob(".*"))  # nothing kept, the lock removed


def test_disk_full_while_writing_is_one_line_and_keeps_earlier_outputs(pair, tmp_path, capsys, monkeypatch):
    """A full disk (ENOSPC) while the set is written: one line naming the output folder, exit 2, the earlier
    outputs unchanged and no temporary file left."""
    import errno

    mri, pet = pair
    out_dir = tmp_path / "out"
    base = ["fuse", str(mri), str(pet), "-o", str(out_dir / "f.nii.gz"), "--method", "mean", "--rgb",
            "--registration", "none"]
    assert main(base) == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    capsys.readouterr()

    from asfe3d.io import writer

    def full(img, path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "save_nifti", full)
    assert main([*base, "--method", "max", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"asfe3d: error: {out_dir}") and "No space left" in err[0], err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before


@pytest.mark.parametrize("earlier", [False, True])
def test_disk_full_while_the_record_is_completed_leaves_no_output(pair, tmp_path, capsys, monkeypatch, earlier):
    """The disk fills when the outputs are in place and only the complete record is left to write: the fused volume
    and a pending record stood under their final names after exit 2 "(no earlier output was replaced)"; now the
    set is undone (the earlier outputs and record back, or nothing) and the line is true."""
    import errno

    from asfe3d.io import record as record_mod

    mri, pet = pair
    out_dir = tmp_path / "out"
    base = ["fuse", str(mri), str(pet), "-o", str(out_dir / "f.nii.gz"), "--method", "mean", "--registration", "none"]
    if earlier:
        assert main(base) == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()} if earlier else {}
    capsys.readouterr()
    real = record_mod.write_record

    def full_at_complete(path, content, *, status, outputs):
        if status == "complete":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, content, status=status, outputs=outputs)

    monkeypatch.setattr(record_mod, "write_record", full_at_complete)
    assert main([*base, "--method", "max", "--overwrite"] if earlier else base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left" in err[0] and "(no earlier output was replaced)" in err[0], err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before if out_dir.exists() else not earlier


def test_a_run_the_memory_left_cannot_take_is_refused_before_reading(pair, tmp_path, capsys, monkeypatch):
    """Reading would fit but the run would not (a 512^3 MRI in a 4 GB job was killed without a word, exit 137): one
    line naming the MRI, before any voxel is read, nothing written."""
    import nibabel as nib

    from asfe3d.io import checks

    mri, pet = pair
    nvox = int(np.prod(nib.load(mri).shape))
    monkeypatch.setattr(checks, "available_memory_bytes", lambda: 30 * nvox)  # reading takes 20 B per voxel
    out = tmp_path / "out" / "f.nii.gz"
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--registration", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"asfe3d: error: {mri}: MRI image of "), err
    assert "of memory to read and fuse (44 B per voxel), more than the" in err[0] and not out.exists()


@pytest.mark.parametrize("raised", [MemoryError("Unable to allocate 512. MiB for an array with shape (512, 512, 512)"),
                                    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                                                 "can't allocate memory: you tried to allocate 536870912 bytes.")])
def test_out_of_memory_mid_run_is_one_line(pair, tmp_path, capsys, monkeypatch, raised):
    """numpy's MemoryError or torch's allocator failing mid-run was a traceback, exit 1."""
    from asfe3d import pipeline

    def no_memory(*a, **k):
        raise raised

    monkeypatch.setattr(pipeline, "_fusion_description", no_memory)  # just before the save step
    mri, pet = pair
    out = tmp_path / "f.nii.gz"
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--registration", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"asfe3d: error: {mri}: out of memory (") and not out.exists(), err
    monkeypatch.setattr(pipeline, "_fusion_description", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):  # any other failure keeps its traceback
        main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--registration", "none"])


@pytest.mark.parametrize("extra, expected", [
    (["--stitch", "blend"], "argument --stitch: invalid choice: 'blend' (choose from 'auto', 'output', 'logits')"),
    (["--mode", "2d"], "argument --mode: invalid choice: '2d'"),
    (["--nosuch"], "unrecognized arguments: --nosuch"),
])
def test_usage_mistakes_are_one_line_with_exit_2(pair, capsys, extra, expected):
    mri, pet = pair
    with pytest.raises(SystemExit) as exc:
        main(["fuse", str(mri), str(pet), *extra])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and err.startswith("asfe3d: error: ") and "--help)" in err, err
    assert expected in err


@pytest.mark.parametrize("name, overwrite, started, extra", [
    ("taken.nii.gz", False, False, []), ("taken.nii.gz", True, True, []), ("new.nii.gz", False, True, []),
    ("new.txt", False, False, []), ("new.nii.gz", False, False, ["--weights", "missing.pt"])])
def test_no_early_registration_for_an_output_that_will_be_refused(pair, tmp_path, name, overwrite, started, extra):
    # a registration underway would keep the refusal waiting (the command lets the thread end before exiting)
    from asfe3d.cli import build_parser
    from asfe3d.cli.fuse import start_early

    mri, pet = pair
    (tmp_path / "taken.nii.gz").write_bytes(b"user's file")
    argv = ["fuse", str(mri), str(pet), "-o", str(tmp_path / name)] + (["--overwrite"] if overwrite else []) + [
        str(tmp_path / e) if e.endswith(".pt") else e for e in extra]
    args = build_parser().parse_args(argv)
    start_early(args)
    try:
        assert (args.early is not None) is started
    finally:
        if args.early is not None:
            args.early.cancel()


def test_every_setting_named_in_a_refusal_is_an_option_of_the_command():
    """Refusals name a setting as the user typed it (--roi-size, not roi_size): each such name is a real option."""
    from asfe3d.cli import build_parser
    from asfe3d.cli.options import OPTION_OF_SETTING

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    options = {o for a in sub.choices["fuse"]._actions for o in a.option_strings}
    assert set(OPTION_OF_SETTING.values()) <= options, set(OPTION_OF_SETTING.values()) - options


def test_outputs_sharing_a_record_name_are_refused(pair, tmp_path, capsys):
    """``-o a.nii`` after ``-o a.nii.gz``: both name the record ``a.json``; the second run replaced the first one's
    complete record (probe 15)."""
    from asfe3d.cli import main

    mri, pet = pair
    base = ["fuse", str(mri), str(pet), "--method", "mean", "--registration", "none", "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "a.nii.gz")]) == 0
    record = (tmp_path / "a.json").read_bytes()
    capsys.readouterr()
    for extra in ([], ["--overwrite"]):
        assert main([*base, "-o", str(tmp_path / "a.nii"), *extra]) == 2
        assert "is the completion record of a.nii.gz" in capsys.readouterr().err
    assert (tmp_path / "a.json").read_bytes() == record and not (tmp_path / "a.nii").exists()


def test_an_unreadable_input_is_not_called_a_write_failure(tmp_path, monkeypatch):
    """Probe 46 #1: every permission error ended as "cannot write", an unreadable input slice too."""
    import errno
    import os

    from asfe3d.cli import _os_verb

    slice_file = tmp_path / "im0029.dcm"
    slice_file.write_bytes(b"x")
    denied = OSError(errno.EACCES, "Permission denied", str(slice_file))
    assert _os_verb(denied) == "cannot write"  # readable (root reads anything): the write is what failed
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.R_OK)
    assert _os_verb(denied) == "cannot read"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # another user's 0600 output, or an input
    assert _os_verb(denied) == "cannot read or write"
    assert _os_verb(OSError(errno.EACCES, "Permission denied", str(tmp_path / "new.nii.gz"))) == "cannot write"
