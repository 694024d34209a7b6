"""asfe3d.cli.entry: the console command ends without the interpreter's teardown, after flushing, with main's code."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import asfe3d.cli as cli


def test_entry_exits_with_mains_code_after_flushing(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "main", lambda argv=None, command=False: calls.append(("main", argv, command)) or 3)
    monkeypatch.setattr(cli.os, "_exit", lambda code: calls.append(("exit", code)))
    monkeypatch.setattr(sys.stdout, "flush", lambda: calls.append(("flush", "stdout")))
    monkeypatch.setattr(threading, "enumerate", lambda: [threading.current_thread()])  # other tests' idle threads
    cli.entry(["fuse"])
    assert calls[0] == ("main", ["fuse"], True) and calls[-1] == ("exit", 3) and ("flush", "stdout") in calls


def test_entry_takes_the_ordinary_exit_while_a_thread_runs(monkeypatch):
    monkeypatch.setattr(cli, "main", lambda argv=None, command=False: 0)
    monkeypatch.setattr(cli.os, "_exit", lambda code: pytest.fail("os._exit while a thread was running"))
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        with pytest.raises(SystemExit) as info:
            cli.entry([])
        assert info.value.code == 0
    finally:
        stop.set()
        worker.join()


def test_entry_exits_at_once_beside_a_daemon_thread(monkeypatch):
    """A daemon thread (tqdm's monitor, started by every progress bar) does not hold the fast exit back."""
    calls = []
    monkeypatch.setattr(cli, "main", lambda argv=None, command=False: 0)
    monkeypatch.setattr(cli.os, "_exit", lambda code: calls.append(code))
    stop = threading.Event()
    daemon = threading.Thread(target=stop.wait, daemon=True)
    daemon.start()
    monkeypatch.setattr(threading, "enumerate", lambda: [threading.current_thread(), daemon])
    try:
        cli.entry([])
    finally:
        stop.set()
        daemon.join()
    assert calls == [0]


def test_console_command_output_complete_through_a_pipe(tmp_path):
    """A real process: the one-line error reaches a pipe whole, with exit code 2."""
    missing = tmp_path / "missing_mri.nii.gz"
    res = subprocess.run([sys.executable, "-m", "asfe3d.cli", "fuse", str(missing), str(tmp_path / "pet.nii.gz")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == f"asfe3d: error: {missing}: MRI input does not exist\n"
