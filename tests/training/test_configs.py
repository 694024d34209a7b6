"""Every configuration in ``configs/`` resolves (its keys and values are ones the engine takes), and the fine-tune
config starts from the shipped 3D weights with their network config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from asfe3d.training import resolve_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_resolves(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    config.setdefault("train", {})["init"] = None  # earlier runs' starting files are not in the repository
    if config.get("data", {}).get("source", "hmif") != "simulated":
        config["data"]["path"] = "DATA"  # given by --data
    resolve_config(config)


def test_the_fine_tune_config_starts_from_the_shipped_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from asfe3d.fusion.weights import shipped_weights
    from asfe3d.training.engine import _check_network_and_loss, _init_weights

    monkeypatch.chdir(tmp_path)  # 'shipped' is the installed package's file, from any folder
    config = yaml.safe_load((ROOT / "configs" / "finetune_3d_pairs.yaml").read_text())
    assert config["train"]["init"] == "shipped"
    cfg = resolve_config({**config, "data": {**config["data"], "path": "pairs.csv"}})
    assert cfg["train"]["init"] == str(shipped_weights("volume"))
    _init_weights(cfg["train"]["init"], _check_network_and_loss(cfg))  # the same network config, or refused
