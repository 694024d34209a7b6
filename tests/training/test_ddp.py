"""Training under torchrun with 2 gloo processes on the CPU (DistributedDataParallel)."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch
import yaml

from asfe3d.fusion.weights import build_network
from tests.training.test_engine import _config, _fake_hmif


@pytest.mark.slow
def test_two_process_gloo_training_writes_one_run(tmp_path):
    data = _fake_hmif(tmp_path)
    out = tmp_path / "run"
    cfg = _config(data, out, epochs=2)
    cfg["train"]["num_threads"] = 1
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
         "asfe3d.training.cli", "--config", str(config)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone writes: one log with one row per epoch, the weights load into a plain (unwrapped) network
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert proc.stdout.count("epoch 2/2") == 1
    net, meta = build_network(out / "best.pt")
    assert meta["epochs"] == 2
    assert not any(k.startswith("module.") for k in net.state_dict())
    with torch.inference_mode():
        assert net(torch.rand(1, 2, 32, 32)).shape == (1, 1, 32, 32)
