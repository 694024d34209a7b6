"""Bundle command lines run side by side: each ``python -m monai.bundle`` spends ~10 s importing torch and MONAI, so
tests that only check how a command fails start all of theirs at once and then read each one's outcome."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "asfe3d_mri_pet_fusion"
INFERENCE = str(BUNDLE / "configs" / "inference.json")


def started(runs: dict[object, tuple[Path, Sequence[str]]]) -> Iterator[dict[object, tuple[subprocess.Popen, Path]]]:
    """Start ``python -m monai.bundle run --config_file inference.json --bundle_root ... --device cpu <args>`` for
    each ``name -> (folder, args)`` in its folder; yield ``name -> (process, folder)``; kill what is left after."""
    procs = {}
    for name, (folder, args) in runs.items():
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", INFERENCE, "--bundle_root", str(BUNDLE),
               "--device", "cpu", *args]
        procs[name] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder),
                       folder)
    try:
        yield procs
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def one_error_line(proc: subprocess.Popen, folder: Path) -> str:
    """The run's one error line, after checking that it exited 2 with no traceback and wrote no ``out`` folder."""
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, stderr
    assert not (folder / "out").exists()
    return errors[0]
