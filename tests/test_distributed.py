"""torch.distributed cohort runs: rank helpers, sharding, summary merging, and a 2-process gloo run on CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from asfe3d.cohort import Subject, SubjectResult, read_summary, write_summary
from asfe3d.distributed import (
    DistInfo,
    get_dist_info,
    merge_summaries,
    rank_device,
    run_cohort_distributed,
    shard_subjects,
    summary_part_path,
)
from asfe3d.settings import Settings
from tests.conftest import make_cohort


def test_get_dist_info_from_environment():
    assert get_dist_info({}) == DistInfo(0, 1, 0, 1)
    info = get_dist_info({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"})
    assert info == DistInfo(5, 8, 1, 4) and not info.is_main
    with pytest.raises(ValueError, match=r"RANK: must be in \[0, WORLD_SIZE=2\), got '2'"):
        get_dist_info({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE: must be an integer, got 'two'"):
        get_dist_info({"WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        get_dist_info({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"})


@pytest.mark.parametrize("env, expected", [
    ({"RANK": "5", "WORLD_SIZE": "2"}, "environment variable RANK: must be in [0, WORLD_SIZE=2), got '5'"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, "environment variable RANK: must be in [0, WORLD_SIZE=2), got '-1'"),
    ({"RANK": "1.0", "WORLD_SIZE": "2"}, "environment variable RANK: must be an integer, got '1.0'"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, "environment variable WORLD_SIZE: must be >= 1, got '0'"),
    ({"WORLD_SIZE": "2"}, "environment variable RANK is not set, but WORLD_SIZE=2 asks for several processes"),
])
def test_bad_torchrun_variables_are_input_errors_quoting_the_value(env, expected):
    from asfe3d.errors import Asfe3dInputError

    with pytest.raises(Asfe3dInputError) as exc:  # the command prints it in one line and exits with code 2
        get_dist_info(env)
    assert expected in str(exc.value)


def test_cli_refuses_a_rank_out_of_range_in_one_line(tmp_path, demo_files, monkeypatch, capsys):
    from asfe3d.cli import main

    csv_path = make_cohort(tmp_path, demo_files, 2)
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["fuse", "--datalist", str(csv_path), "--output-dir", str(tmp_path / "out"), "--method", "mean",
                 "--registration", "none"])
    err = capsys.readouterr().err
    assert code == 2 and err == "asfe3d: error: environment variable RANK: must be in [0, WORLD_SIZE=2), got '5'\n"
    assert not (tmp_path / "out").exists()


def test_several_processes_without_a_rendezvous_address_are_refused(monkeypatch):
    import torch.distributed as dist

    from asfe3d.distributed import init_distributed
    from asfe3d.errors import Asfe3dInputError

    for name, value in {"RANK": "0", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    for name in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(Asfe3dInputError, match="MASTER_ADDR is not set, but WORLD_SIZE=2"):
        init_distributed("gloo")
    assert not dist.is_initialized()


def test_threads_per_rank_count_the_jobs_cores_not_the_nodes(monkeypatch):
    """A 2-core SLURM job on a 64-core node, 2 ranks: 1 thread each, not 32."""
    import SimpleITK as sitk
    import torch

    from asfe3d import distributed

    got = {}
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: got.setdefault("torch", n))
    monkeypatch.setattr(sitk.ProcessObject, "SetGlobalDefaultNumberOfThreads", lambda n: got.setdefault("itk", n))
    distributed._set_cpu_threads(DistInfo(1, 2, 1, 2))
    assert got == {"torch": 1, "itk": 1}


def test_shard_subjects_partitions_deterministically():
    subjects = [Subject(f"s{i}", Path("m"), Path("p")) for i in (3, 0, 4, 1, 2)]
    shares = [shard_subjects(subjects, r, 2) for r in range(2)]
    assert [[s.subject for s in share] for share in shares] == [["s0", "s2", "s4"], ["s1", "s3"]]
    assert shard_subjects(list(reversed(subjects)), 1, 2) == shares[1]  # input order does not matter
    assert [s.subject for s in shard_subjects(subjects, 2, 3)] == ["s2"] and shard_subjects(subjects[:1], 1, 2) == []
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\), got 2"):
        shard_subjects(subjects, 2, 2)
    with pytest.raises(ValueError, match="world_size must be a positive int, got 0"):
        shard_subjects(subjects, 0, 0)


def test_rank_device_on_cpu():
    import torch

    info = DistInfo(1, 2, 1, 2)
    assert rank_device("cpu", info) == "cpu"
    if not torch.cuda.is_available():
        assert rank_device("auto", info) == "cpu"
        with pytest.raises(ValueError, match="CUDA is not available"):
            rank_device("cuda", info)
    with pytest.raises(ValueError, match="got 'tpu'"):
        rank_device("tpu", info)


def test_merge_summaries(tmp_path):
    a = write_summary([SubjectResult("b", "ok", tmp_path / "b.nii.gz", 0.5, {"load": 1.0}, 2.0, rank=0)],
                      summary_part_path(tmp_path / "summary.csv", 0, 2))
    b = write_summary([SubjectResult("a", "failed", None, message="boom", rank=1)],
                      summary_part_path(tmp_path / "summary.csv", 1, 2))
    assert a.name == "summary.rank0-of-2.csv" and b.name == "summary.rank1-of-2.csv"
    merge_summaries([a, b], tmp_path / "summary.csv", order=["b", "a"])
    rows = read_summary(tmp_path / "summary.csv")
    assert [(r["subject"], r["status"], r["rank"]) for r in rows] == [("b", "ok", "0"), ("a", "failed", "1")]
    assert rows[0]["load_s"] == "1.0000" and rows[1]["message"] == "boom"
    with pytest.raises(ValueError, match="appears in two summary parts"):
        merge_summaries([a, a], tmp_path / "x.csv")


@pytest.mark.slow  # ~8 s here, mostly the first fuse's imports
def test_single_process_run_is_a_plain_cohort(tmp_path, demo_files, monkeypatch):
    from asfe3d.cohort import read_datalist

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    subjects = read_datalist(make_cohort(tmp_path, demo_files, 2, reverse=True))
    settings = Settings.from_flat(method="mean", registration="none", device="auto")
    results = run_cohort_distributed(subjects, settings, output_dir=tmp_path / "out", summary_path=tmp_path / "s.csv",
                                     progress=False)
    # exactly run_cohort: the datalist's order (reversed here), the settings as given
    assert [(r.subject, r.status, r.rank) for r in results] == [("sub02", "ok", 0), ("sub01", "ok", 0)]
    assert [r["subject"] for r in read_summary(tmp_path / "s.csv")] == ["sub02", "sub01"]
    record = json.loads((tmp_path / "out" / "sub01_fused.json").read_text())
    assert record["settings"] == settings.as_dict()
    assert sorted(p.name for p in tmp_path.glob("s*.csv")) == ["s.csv"]


_LOGGING_RUNNER = textwrap.dedent(
    """
    import os, sys
    import asfe3d.io.writer as writer

    real_save = writer.save_nifti
    log = os.path.join(os.environ["WRITE_LOG_DIR"], "rank%s.log" % os.environ["RANK"])

    def logging_save(img, filename, *args, **kwargs):
        import torch

        with open(log, "a") as fh:
            fh.write(os.path.basename(str(filename)) + "\\n")
        with open(log.replace(".log", ".threads"), "a") as fh:
            fh.write("%d\\n" % torch.get_num_threads())
        return real_save(img, filename, *args, **kwargs)

    writer.save_nifti = logging_save
    from asfe3d.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_two_process_gloo_cohort_fuses_each_subject_once(tmp_path, demo_files):
    csv_path = make_cohort(tmp_path, demo_files, 4, reverse=True)
    runner, logs, out = tmp_path / "runner.py", tmp_path / "logs", tmp_path / "out"
    runner.write_text(_LOGGING_RUNNER)
    logs.mkdir()
    env = {**os.environ, "WRITE_LOG_DIR": str(logs), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(runner),
           "fuse", "--datalist", str(csv_path), "--output-dir", str(out), "--method", "mean",
           "--registration", "none", "--device", "cpu", "--no-progress", "--threads", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # --threads is each process's torch thread count (it used to be replaced by the node's share, silently)
    assert {n for p in logs.glob("*.threads") for n in p.read_text().split()} == {"3"}
    assert proc.stdout.count("cohort: 4 subjects: 4 ok, 0 skipped, 0 failed") == 1  # rank 0 reports once

    written = {r: (logs / f"rank{r}.log").read_text().split() for r in (0, 1)}
    subjects_by_rank = {r: sorted(name.split("_fused")[0].lstrip(".") for name in names)
                        for r, names in written.items()}
    assert subjects_by_rank == {0: ["sub01", "sub03"], 1: ["sub02", "sub04"]}  # i % 2 == rank, each once
    rows = read_summary(out / "summary.csv")
    assert [(r["subject"], r["status"], r["rank"]) for r in rows] == [
        ("sub01", "ok", "0"), ("sub02", "ok", "1"), ("sub03", "ok", "0"), ("sub04", "ok", "1")]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [f"sub0{i}_fused.nii.gz" for i in range(1, 5)] + [f"sub0{i}_fused.json" for i in range(1, 5)]
        + ["summary.csv"])
    for i in range(1, 5):
        fused, mri = nib.load(str(out / f"sub0{i}_fused.nii.gz")), nib.load(str(tmp_path / f"sub0{i}/mri.nii.gz"))
        assert np.allclose(fused.affine, mri.affine) and fused.shape == mri.shape
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*_fused.nii.gz")}

    # resumable under torchrun too: a rerun skips everything and writes nothing
    shutil.rmtree(logs)
    logs.mkdir()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 ok, 4 skipped, 0 failed" in again.stdout
    assert not any(p.read_text().strip() for p in logs.glob("*.log"))
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_fused.nii.gz")} == mtimes


def test_parts_of_an_earlier_run_with_another_world_size_are_stale(tmp_path):
    """A torchrun killed before its merge leaves <stem>.rank<R>-of-<W>.csv; a rerun with another W removes them
    (only summary parts: a file of the same name pattern without a summary header is kept)."""
    from asfe3d.distributed import stale_summary_parts

    summary = tmp_path / "summary.csv"
    for name in ("summary.rank0-of-3.csv", "summary.rank2-of-3.csv", "summary.rank1-of-2.csv"):
        (tmp_path / name).write_text("subject,status,message\nsub01,ok,\n")
    (tmp_path / "summary.rank1-of-4.csv").write_text("my own notes\n")
    (tmp_path / "other.rank0-of-3.csv").write_text("subject,status\n")
    assert [p.name for p in stale_summary_parts(summary, 2)] == ["summary.rank0-of-3.csv", "summary.rank2-of-3.csv"]
    assert stale_summary_parts(tmp_path / "none.csv", 2) == []
