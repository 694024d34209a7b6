"""The command's MONAI import: unused optional integrations stay unloaded, nothing stays hidden afterwards."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_lean_import_skips_integrations_and_leaves_nothing_hidden() -> None:
    out = _run(
        "import json, sys\n"
        "from asfe3d.cli.startup import import_monai_lean, SKIPPED_AT_STARTUP\n"
        "seconds = import_monai_lean()\n"
        "loaded = [n for n in SKIPPED_AT_STARTUP if n in sys.modules]\n"
        "finders = [type(f).__name__ for f in sys.meta_path]\n"
        "import monai.transforms, monai.inferers\n"
        "from monai.data import MetaTensor\n"
        "import matplotlib.pyplot, scipy.signal\n"  # hidden only while MONAI was imported
        "again = import_monai_lean()\n"
        "print(json.dumps({'seconds': seconds, 'loaded': loaded, 'finders': finders, 'again': again,"
        " 'metatensor': MetaTensor.__name__}))\n"
    )
    assert out["seconds"] > 0 and out["again"] == 0.0
    assert out["loaded"] == []
    assert "_Hide" not in out["finders"]
    assert out["metatensor"] == "MetaTensor"


@pytest.mark.slow
def test_lean_import_falls_back_to_the_full_import_when_monai_needs_a_hidden_module() -> None:
    out = _run(
        "import json, sys\n"
        "from asfe3d.cli.startup import import_monai_lean\n"
        "import_monai_lean(skip=('monai.networks',))\n"  # MONAI cannot import without it
        "import monai.networks.nets\n"
        "print(json.dumps({'finders': [type(f).__name__ for f in sys.meta_path],"
        " 'nets': 'monai.networks.nets' in sys.modules}))\n"
    )
    assert out["nets"] and "_Hide" not in out["finders"]


@pytest.mark.parametrize("policy", [None, "ACTIVE"])
def test_the_command_imports_monai_lean(tmp_path, policy) -> None:
    """``asfe3d fuse`` reaches MONAI through the lean import (bad input still gives one line and exit 2), and
    OpenMP threads wait passively unless the user chose otherwise."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    proc = subprocess.run(
        [sys.executable, "-c",
         "import os, sys\n"
         "from asfe3d.cli import main\n"
         f"rc = main(['fuse', {str(tmp_path / 'no_mri.nii.gz')!r}, {str(tmp_path / 'no_pet.nii.gz')!r}], "
         "command=True)\n"
         "print('ignite' in sys.modules, 'monai' in sys.modules, rc, os.environ['OMP_WAIT_POLICY'])\n"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.stdout.split() == ["False", "True", "2", policy or "PASSIVE"], proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("asfe3d: error:")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_and_results_unchanged():
    """In a fresh process (the setting is process-wide): glibc takes both settings; large blocks freed and
    allocated again give the same computation as before."""
    code = ("import numpy as np\n"
            "from asfe3d.cli.startup import reuse_freed_memory\n"
            "a = np.arange(10_000_000, dtype=np.float32).sum()\n"
            "ok = reuse_freed_memory()\n"
            "b = [np.arange(10_000_000, dtype=np.float32).sum() for _ in range(3)]\n"
            "print(ok, all(x == a for x in b))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["True", "True"], proc.stdout + proc.stderr


def test_main_called_by_a_program_leaves_monai_as_installed(tmp_path):
    """Only the command's own process imports MONAI lean: a program calling ``main`` keeps MONAI's optional
    integrations (its bundle validation bound ``jsonschema`` to a placeholder after an in-process ``main``)."""
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys\n"
         "from asfe3d.cli import main\n"
         f"rc = main(['fuse', {str(tmp_path / 'no_mri.nii.gz')!r}, {str(tmp_path / 'no_pet.nii.gz')!r}])\n"
         "import monai.bundle.scripts as s\n"
         "print(rc, 'monai' in sys.modules, type(s.validate).__name__)\n"],
        capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["2", "True", "function"], proc.stdout + proc.stderr
