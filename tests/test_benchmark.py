from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch

from asfe3d.benchmark import (
    CASES,
    PIPELINE_CASES,
    UNIT_SHAPE,
    Case,
    format_pipeline_table,
    format_table,
    main,
    pipeline_bars,
    run_case,
    run_command,
    run_pipeline_case,
    unit_seconds,
)


def test_run_case_reports_params_time_and_memory():
    res = run_case(Case("efficient", 2, "tiny", (32, 32)), device="cpu", repeats=2, threads=1)
    assert res["params"] > 0
    assert len(res["times_s"]) == 2 and res["median_s"] > 0
    assert res["peak_mib"] > 0 and res["cpu_s"] >= 0


def test_table_has_one_row_per_case_and_marks_skips():
    rows = [
        {"case": CASES[0], "device": "cpu", "params": 1000, "median_s": 0.01, "times_s": [0.01], "cpu_s": 0.02,
         "peak_mib": 400.0, "baseline_mib": 350.0},
        {"case": Case("paper", 3, "volume 128^3", (128, 128, 128), skip="too big"), "device": "cpu", "skip": "too big"},
    ]
    table = format_table(rows).splitlines()
    assert len(table) == 4
    assert "0.010 s" in table[2] and "400 (baseline 350)" in table[2]
    assert "skipped: too big" in table[3]
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_bad_option_exits_with_usage_error():
    assert main(["--preset", "huge"]) == 2


def test_acceptance_table_takes_the_best_thread_count_and_flags_misses():
    from asfe3d.benchmark import acceptance

    vol = Case("efficient", 3, "volume 128^3", (128, 128, 128))

    def row(threads, median, params=132_000):
        return {"case": vol, "device": "cpu", "threads": threads, "params": params, "median_s": median,
                "times_s": [median], "cpu_s": median, "peak_mib": 700.0}

    text = acceptance([row(1, 0.9), row(2, 2.5)])
    assert "| efficient 3D, one 128^3 volume <= 1.8 s | 0.90 s (1 threads) | yes |" in text
    assert "| efficient 3D parameters <= 2 M | 0.132 M | yes |" in text
    assert "(as shipped) <= 10 s | not run |" in text
    assert "| NO |" in acceptance([row(1, 2.5, params=3_000_000)])
    # the brain target is scored on the windows the shipped inference runs, not on a faster whole-volume pass
    whole, windows = (Case("efficient", 3, "brain 1 mm 197x233x189", (197, 233, 189), m) for m in ("whole", "sliding"))
    rows = [dict(row(2, 4.0), case=whole), dict(row(2, 13.0), case=windows)]
    assert "| efficient 3D, 197x233x189 brain in 128^3 windows (as shipped) <= 10 s | 13.00 s (2 threads) | NO |" in (
        acceptance(rows))


# ------------------------------------------------------------------------------------------- the yardstick


def test_unit_is_the_shared_workload(monkeypatch):
    """The unit runs refunit.py's computation: seed 0, x = randn(1, 16, 96^3), w = randn(16, 16, 3^3) * 0.05,
    8 conv3d(padding=1) in a row, one warm-up and 3 timed runs, on 2 threads (recorded, not computed here)."""
    calls = []
    threads_seen = []

    def fake_conv3d(y, w, padding=0):
        calls.append((tuple(y.shape), tuple(w.shape), padding, float(w.flatten()[0])))
        threads_seen.append(torch.get_num_threads())
        return y

    monkeypatch.setattr(torch.nn.functional, "conv3d", fake_conv3d)
    before = torch.get_num_threads()
    seconds = unit_seconds(**UNIT_SHAPE)
    assert seconds >= 0 and torch.get_num_threads() == before  # the thread count is restored
    assert UNIT_SHAPE == {"size": 96, "channels": 16, "layers": 8, "threads": 2, "repeats": 3}
    assert len(calls) == 8 * 4  # 8 layers, one warm-up + 3 timed runs
    assert {c[:3] for c in calls} == {((1, 16, 96, 96, 96), (16, 16, 3, 3, 3), 1)}
    assert set(threads_seen) == {2}
    torch.manual_seed(0)
    torch.randn(1, 16, 96, 96, 96)
    assert calls[0][3] == pytest.approx(float(torch.randn(16, 16, 3, 3, 3).flatten()[0]) * 0.05)


def test_unit_runs_on_tiny_sizes():
    assert 0 < unit_seconds(threads=1, size=6, channels=2, layers=2, repeats=3) < 5.0


@pytest.mark.parametrize("kwargs, name", [({"size": 2}, "size"), ({"threads": 0}, "threads"),
                                          ({"repeats": True}, "repeats"), ({"layers": 1.5}, "layers")])
def test_unit_refuses_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=name):
        unit_seconds(**{"threads": 1, "size": 6, "channels": 2, "layers": 2, "repeats": 1, **kwargs})


def test_run_command_measures_the_child_alone():
    big = run_command([sys.executable, "-c", "import numpy as np; a = np.ones(60_000_000); print(a.sum())"])
    small = run_command([sys.executable, "-c", "pass"])
    assert big["returncode"] == 0 and small["returncode"] == 0
    assert big["peak_mib"] > 400 > small["peak_mib"]  # 458 MiB of ones; the small child after it is not charged
    failed = run_command([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    assert failed["returncode"] == 3 and "boom" in failed["stderr"] and failed["wall_s"] > 0


def test_motion_transform_matches_the_moved_header():
    from asfe3d.benchmark import _motion_tfm, _move_affine

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-100.0, -120.0, -80.0]
    motion, moved = _move_affine(affine, (2.0, -1.5, 3.0), (2.0, -3.0, 1.5), np.array([10.0, 5.0, -4.0]))
    assert np.allclose(moved, motion @ affine) and np.allclose(motion[:3, :3] @ motion[:3, :3].T, np.eye(3))
    tfm = _motion_tfm(motion)
    p_ras = np.array([30.0, -20.0, 15.0])
    flip = np.array([-1.0, -1.0, 1.0])
    expected = flip * (motion[:3, :3] @ p_ras + motion[:3, 3])  # the MRI point's PET point, in LPS
    assert np.allclose(tfm.TransformPoint((flip * p_ras).tolist()), expected)


_FAKE_FUSE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    out = Path(sys.argv[sys.argv.index("-o") + 1])
    out.parent.mkdir(parents=True, exist_ok=True)
    time.sleep(0.05)
    out.with_name("fused.json").write_text(json.dumps({"timings": {"load": 0.01, "fuse": 0.02, "total": 0.03}}))
    """
)


def test_pipeline_case_in_units_with_a_stand_in_command(tmp_path):
    script = tmp_path / "fake_fuse.py"
    script.write_text(_FAKE_FUSE)
    mri, pet = tmp_path / "t1.nii.gz", tmp_path / "pet.nii.gz"
    mri.write_bytes(b"x")
    pet.write_bytes(b"x")
    tiny = {"threads": 1, "size": 6, "channels": 2, "layers": 2, "repeats": 1}
    row = run_pipeline_case("brain", [mri, pet], runs=3, command=(str(script),), unit=tiny)
    assert len(row["runs"]) == 3 and row["subjects"] == 1
    units = sorted(r["units"] for r in row["runs"])
    assert row["units"] == units[1]  # the median run
    picked = next(r for r in row["runs"] if r["units"] == row["units"])
    assert row["units"] == pytest.approx(picked["wall_s"] / picked["unit_s"])
    assert row["steps"] == {"load": 0.01, "fuse": 0.02} and row["wall_s"] >= 0.05
    table = format_pipeline_table([row]).splitlines()
    assert len(table) == 3 and table[2].startswith("| brain subject") and "| 0.01 | - | - | - | 0.02 | - |" in table[2]
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert pipeline_bars([{**row, "units": 8.9}]).splitlines()[2] == "| brain | <= 9 | 8.9 | yes |"
    assert pipeline_bars([{**row, "kind": "cohort", "units": 5.2}]).splitlines()[2] == "| cohort | <= 5 | 5.2 | NO |"
    json.dumps({k: v for k, v in row.items()})  # JSON-ready


def test_pipeline_case_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        run_pipeline_case("no such case", ["a", "b"])
    with pytest.raises(ValueError, match="two inputs"):
        run_pipeline_case("brain", [tmp_path])
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        run_pipeline_case("brain", [tmp_path / "missing.nii.gz", tmp_path])
    with pytest.raises(ValueError, match="runs"):
        run_pipeline_case("brain", [tmp_path, tmp_path], runs=0)
    assert set(PIPELINE_CASES) == {"brain", "petct", "cohort"}


def test_cli_pipeline_needs_inputs(tmp_path, capsys):
    assert main(["--pipeline-only", "--output", ""]) == 2
    err = capsys.readouterr().err  # one line, no usage text
    assert err.count("\n") == 1 and err.startswith("asfe3d: error: ") and "--brain" in err
    assert main(["--pipeline-only", "--brain", str(tmp_path / "no.nii.gz"), str(tmp_path), "--output", ""]) == 2
    err = capsys.readouterr().err  # one line, no usage text
    assert err.count("\n") == 1 and err.startswith("asfe3d: error: ") and "does not exist" in err


@pytest.mark.parametrize("extra, expected", [
    (["--repeats", "0"], "--repeats: must be an integer in [1, 1024], got 0"),
    (["--repeats-large", "-1"], "--repeats-large: must be an integer in [1, 1024], got -1"),
    (["--threads", "2", "0"], "--threads: must be an integer in [1, 1024], got 0"),
    (["--output", "{tmp}"], "is a folder, not a markdown file"),
    (["--output", "{tmp}/a_file/b.md"], "a_file is a file where a folder is expected"),
    # a user's own markdown file: its sections after "## End to end" were replaced without a word
    (["--output", "{tmp}/a_file"], "a_file: exists and is not a benchmark table"),
])
def test_bad_numbers_and_unwritable_outputs_are_refused_before_any_case(tmp_path, monkeypatch, capsys, extra,
                                                                          expected):
    """They used to run every case (error rows: no median of no runs) and overwrite the table with them, or fail
    writing it only after minutes of timing, in a traceback."""
    import asfe3d.benchmark as bench

    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr(bench, "run_all", lambda *a, **k: pytest.fail("cases ran before the refusal"))
    args = [a.format(tmp=tmp_path) for a in extra]
    args = args if "--output" in args else [*args, "--output", str(tmp_path / "b.md")]
    assert main(["--device", "cpu", *args]) == 2
    err = capsys.readouterr().err  # one line, no usage text
    assert err.count("\n") == 1 and err.startswith("asfe3d: error: ") and expected in err


def test_the_default_output_is_not_made_outside_the_repository(tmp_path, monkeypatch, capsys):
    import asfe3d.benchmark as bench

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "run_all", lambda *a, **k: pytest.fail("cases ran before the refusal"))
    assert main(["--device", "cpu"]) == 2
    err = capsys.readouterr().err  # one line, no usage text
    assert err.count("\n") == 1 and err.startswith("asfe3d: error: ") and "has no docs/ folder" in err
    assert list(tmp_path.iterdir()) == []


def test_pipeline_only_makes_the_outputs_folder(tmp_path, monkeypatch):
    import asfe3d.benchmark as bench

    mri, pet = tmp_path / "t1.nii.gz", tmp_path / "pet.nii.gz"
    mri.write_bytes(b"x")
    pet.write_bytes(b"x")
    row = {"kind": "brain", "units": 1.0}
    monkeypatch.setattr(bench, "run_pipeline_case", lambda *a, **k: row)
    monkeypatch.setattr(bench, "format_pipeline_table", lambda rows: "| t |")
    monkeypatch.setattr(bench, "_pipeline_section", lambda rows, cmd: f"section: {cmd}\n")
    out = tmp_path / "new" / "bench.md"
    assert main(["--pipeline-only", "--brain", str(mri), str(pet), "--cohort", "0", "--output", str(out)]) == 0
    # the table says how to regenerate it as the command was typed ("asfe3d benchmark" here)
    assert out.read_text().endswith(f"## End to end\n\nsection: asfe3d benchmark --pipeline-only --brain {mri} {pet} "
                                    f"--cohort 0 --output {out}\n")
    spaced = tmp_path / "a b" / "bench.md"
    assert main(["--pipeline-only", "--brain", str(mri), str(pet), "--cohort", "0", "--output", str(spaced)],
                prog="python scripts/benchmark.py") == 0
    assert f"section: python scripts/benchmark.py --pipeline-only --brain {mri} {pet} --cohort 0 --output '{spaced}'" \
        in spaced.read_text()


def test_make_brain_pair_never_replaces_files_in_its_folder(tmp_path, capsys):
    (tmp_path / "t1.nii.gz").write_bytes(b"a user's T1")
    assert main(["--make-brain-pair", str(tmp_path), "--individual-dir", str(tmp_path), "--spm-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err  # one line, no usage text
    assert err.count("\n") == 1 and err.startswith("asfe3d: error: ") and "already holds t1.nii.gz; choose an empty folder" in err
    assert (tmp_path / "t1.nii.gz").read_bytes() == b"a user's T1"


def test_cuda_without_cuda_and_a_used_petct_folder_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """``--device cuda`` on a machine without CUDA ran every case into an error row, exited 0 and replaced the table;
    ``--make-petct`` wrote its slices over files already in the folder and mixed them into the series."""
    import torch

    import asfe3d.benchmark as bench

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(bench, "run_all", lambda *a, **k: pytest.fail("cases ran before the refusal"))
    table = tmp_path / "t.md"
    assert main(["--device", "cuda", "--output", str(table)]) == 2
    err = capsys.readouterr().err
    assert err == "asfe3d: error: --device cuda: CUDA is not available on this machine (see asfe3d benchmark --help)\n"
    assert not table.exists()
    (tmp_path / "study" / "ct").mkdir(parents=True)
    (tmp_path / "study" / "ct" / "ct000.dcm").write_bytes(b"mine")
    assert main(["--make-petct", str(tmp_path / "study")]) == 2
    assert "already exists; choose an empty folder" in capsys.readouterr().err
    assert (tmp_path / "study" / "ct" / "ct000.dcm").read_bytes() == b"mine"
