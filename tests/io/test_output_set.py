"""An output set replaces its destinations as one unit: all new files, or all old ones (never a mix)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asfe3d.io import OutputSet, deferred_signals


def _set_with_old_files(tmp_path: Path, n: int = 3) -> OutputSet:
    for i in range(n):
        (tmp_path / f"out{i}.png").write_text(f"old{i}")
    outs = OutputSet({f"k{i}": (tmp_path / f"out{i}.png", "png") for i in range(n)}, overwrite=True)
    for i in range(n):
        outs.temp(f"k{i}").write_text(f"new{i}")
    return outs


def test_commit_replaces_all_and_leaves_no_backup(tmp_path):
    outs = _set_with_old_files(tmp_path)
    outs.commit()
    assert [(tmp_path / f"out{i}.png").read_text() for i in range(3)] == ["new0", "new1", "new2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out0.png", "out1.png", "out2.png"]


def test_a_failed_rename_puts_every_old_file_back(tmp_path, monkeypatch):
    outs = _set_with_old_files(tmp_path)
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 4:  # backup0, new0, backup1, then new1 fails (e.g. the disk is full)
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        outs.commit()
    monkeypatch.setattr(os, "replace", real_replace)
    assert [(tmp_path / f"out{i}.png").read_text() for i in range(3)] == ["old0", "old1", "old2"]
    outs.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out0.png", "out1.png", "out2.png"]


def test_deferred_signals_hold_a_signal_until_the_body_ends(monkeypatch):
    from asfe3d.io import writer

    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: seen.append("handler"))
    monkeypatch.setattr(writer, "_DEFERRED_SIGNALS", (*writer._DEFERRED_SIGNALS, signal.SIGUSR1))
    try:
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGUSR1)
            seen.append("body")
        seen.append("after")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert seen == ["body", "handler", "after"]


def test_deferred_signals_leave_an_ignored_signal_ignored(monkeypatch):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferred_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)])
def test_a_signal_between_renames_still_leaves_one_whole_set(tmp_path, signum, code):
    """A real process signalled after its first rename: the signal waits, the whole new set lands, then it exits."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from asfe3d.io import OutputSet
        signal.signal(signal.SIGINT, signal.default_int_handler)
        d = Path(sys.argv[1])
        for i in range(3):
            (d / f"out{{i}}.png").write_text(f"old{{i}}")
        outs = OutputSet({{f"k{{i}}": (d / f"out{{i}}.png", "png") for i in range(3)}}, overwrite=True)
        for i in range(3):
            outs.temp(f"k{{i}}").write_text(f"new{{i}}")
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            if Path(dst).name == "out0.png":
                os.kill(os.getpid(), {int(signum)})
        os.replace = replace
        try:
            outs.commit()
        except KeyboardInterrupt:
            sys.exit(130)
        print("not reached: the signal should end the process once the set is whole")
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=120, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.returncode == code, proc.stderr
    assert "not reached" not in proc.stdout
    assert [(tmp_path / f"out{i}.png").read_text() for i in range(3)] == ["new0", "new1", "new2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out0.png", "out1.png", "out2.png"]
