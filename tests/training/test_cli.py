"""``asfe3d train`` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asfe3d.training.cli import main


def test_help_is_fast_and_lists_options() -> None:
    out = subprocess.run([sys.executable, "-m", "asfe3d.training.cli", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    for opt in ("--config", "--data", "--out", "--epochs", "--resume", "--device"):
        assert opt in out.stdout


def test_bad_config_key_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("spatial_dims: 2\ndata: {source: hmif}\ntrain: {epohcs: 3}\n")
    assert main(["--config", str(cfg), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "asfe3d: error:" in err and "'epohcs'" in err and "in train" in err


def test_missing_config_and_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "none.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("data: {source: hmif}\ntrain: {epochs: 1}\n")
    assert main(["--config", str(cfg), "--data", str(tmp_path / "nohmif"), "--out", str(tmp_path / "o")]) == 2
    assert "HMIF folder not found" in capsys.readouterr().err


def test_a_pairs_config_names_its_missing_csv_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``data.source: pairs`` (every shipped config resolves: ``test_configs.py``)."""
    cfg = tmp_path / "pairs.yaml"
    cfg.write_text("spatial_dims: 3\ndata: {source: pairs, crop: [16, 16, 16]}\ntrain: {epochs: 1}\n")
    assert main(["--config", str(cfg), "--data", str(tmp_path / "mine.csv"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"asfe3d: error: {tmp_path / 'mine.csv'}: pairs CSV not found"]


@pytest.mark.parametrize("stop, code, word", [(KeyboardInterrupt, 130, "interrupted"), (None, 143, "terminated")])
def test_a_stopped_run_says_what_it_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch,
                                         stop, code, word) -> None:
    """Probe 48 #10: Ctrl-C / SIGTERM said "no partial output was kept", while the finished epochs' last.pt and
    best.pt are kept and resumable."""
    import torch

    import asfe3d.training.engine as engine
    from asfe3d.errors import Terminated

    config = tmp_path / "c.yaml"
    config.write_text(f"spatial_dims: 2\ndata: {{source: hmif, path: {tmp_path}}}\nout: {tmp_path / 'run'}\n")

    def stopped(*args, **kwargs):
        (tmp_path / "run").mkdir()
        torch.save({"epoch": 3}, tmp_path / "run" / "last.pt")
        raise (stop or Terminated)()

    monkeypatch.setattr(engine, "train", stopped)
    assert main(["--config", str(config)]) == code
    err = capsys.readouterr().err
    assert err.startswith(f"asfe3d: {word}; {tmp_path / 'run' / 'last.pt'} holds the 3 finished epoch(s)")
    assert err.rstrip().endswith("continue with --resume") and "no partial output" not in err


def test_invalid_yaml_is_one_line_with_its_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Probe 48 #9: PyYAML's message (several lines, with a caret) was printed as it is."""
    config = tmp_path / "c.yaml"
    config.write_text("spatial_dims: 2\na: [1\n")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"asfe3d: error: {config}: not valid YAML (") and "line 3" in err
