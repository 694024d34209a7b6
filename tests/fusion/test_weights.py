"""Weight files are checked (keys, dimensions, network size) before any network is built."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from asfe3d.errors import Asfe3dInputError
from asfe3d.fusion.weights import (
    FORMAT,
    MAX_PARAMETERS,
    build_network,
    check_weights,
    save_weights,
    shipped_weights,
)
from asfe3d.networks.nets import ASFEFusion

SMALL = {"encoder_channels": [4, 8], "fusion": ["light", "light"]}


def _save(path: Path, config: dict, state: dict | None = None) -> Path:
    torch.save({"format": FORMAT, "config": config, "state_dict": state or {"w": torch.zeros(3)}, "meta": {}}, path)
    return path


@pytest.fixture(scope="module")
def small2d(tmp_path_factory) -> Path:
    net = ASFEFusion(spatial_dims=2, **SMALL)
    return save_weights(net, tmp_path_factory.mktemp("w") / "small2d.pt")


def test_shipped_weights_pass_in_their_mode():
    for mode, dims in (("slice", 2), ("volume", 3)):
        info = check_weights(shipped_weights(mode), mode)
        assert info["spatial_dims"] == dims and 0 < info["parameters"] < MAX_PARAMETERS
    # the 2D image weights (HMIF-style image pairs) are a file of their own, run by the 2D network
    assert shipped_weights("image") != shipped_weights("slice")
    assert check_weights(shipped_weights("image"), "slice")["spatial_dims"] == 2
    with pytest.raises(ValueError, match="mode must be one of"):
        shipped_weights("images")


def test_2d_weights_in_volume_mode_refused(small2d):
    with pytest.raises(Asfe3dInputError, match=r"2D network \(mode 'slice'\) but mode 'volume' needs 3D") as exc:
        check_weights(small2d, "volume")
    assert exc.value.path == str(small2d) and "\n" not in str(exc.value)
    with pytest.raises(Asfe3dInputError, match="needs 3D"):
        build_network(small2d, "volume")
    net, _ = build_network(small2d, "slice")
    assert net.spatial_dims == 2


def test_unknown_config_key_names_file_and_key(tmp_path):
    p = _save(tmp_path / "typo.pt", {"spatial_dims": 2, "preset": "efficient", "encoder_chanels": [4, 8]})
    with pytest.raises(Asfe3dInputError, match=r"unknown key 'encoder_chanels'; valid keys: \[") as exc:
        check_weights(p, "slice")
    assert exc.value.path == str(p)
    with pytest.raises(Asfe3dInputError, match="unknown preset 'huge'"):
        check_weights(_save(tmp_path / "p.pt", {"spatial_dims": 2, "preset": "huge"}))
    with pytest.raises(Asfe3dInputError, match="spatial_dims=4"):
        check_weights(_save(tmp_path / "d.pt", {"spatial_dims": 4}))


def test_huge_network_refused_before_building(tmp_path):
    p = _save(tmp_path / "huge.pt", {"spatial_dims": 3, "preset": "efficient", "encoder_channels": [2000, 4000, 8000]})
    assert p.stat().st_size < 4000
    start = time.perf_counter()
    with pytest.raises(Asfe3dInputError, match=r"network of at least 1080.1 M parameters .* more than the 50 M limit"):
        build_network(p, "volume")
    assert time.perf_counter() - start < 1.0
    # a network whose size only shows once counted (here its fusion blocks) is counted without allocating it
    q = _save(tmp_path / "wide.pt", {"spatial_dims": 3, "encoder_channels": [8, 16, 32], "embed_dim": 4096,
                                    "expert_hidden": 4096})
    with pytest.raises(Asfe3dInputError, match=r"network of [0-9.]+ M parameters .* more than the 50 M limit"):
        check_weights(q, "volume")
    with pytest.raises(Asfe3dInputError, match="plausible"):
        check_weights(_save(tmp_path / "deep.pt", {"spatial_dims": 2, "convs_per_stage": 10_000}))
    with pytest.raises(Asfe3dInputError, match="1 to 8 levels"):
        check_weights(_save(tmp_path / "lv.pt", {"spatial_dims": 2, "encoder_channels": [4] * 40}))


def test_paper_preset_needs_allow_large(tmp_path):
    p = _save(tmp_path / "paper.pt", {"spatial_dims": 2, "preset": "paper"})
    with pytest.raises(Asfe3dInputError, match="175.7 M parameters .* allow_large=True"):
        check_weights(p, "slice")
    # asked for explicitly, it passes the size check (and this file then fails on its stored tensors)
    with pytest.raises(Asfe3dInputError, match="3 stored values, the config's network has 175,701,972"):
        check_weights(p, "slice", allow_large=True)


def test_inconsistent_config_values_refused(tmp_path):
    p = _save(tmp_path / "bad.pt", {"spatial_dims": 2, "encoder_channels": [4, 8], "fusion": ["light"]})
    with pytest.raises(Asfe3dInputError, match="describes no valid network: fusion needs one mode per scale"):
        check_weights(p)


def test_bad_arguments(small2d):
    with pytest.raises(ValueError, match="mode must be one of"):
        check_weights(small2d, "3d")
    with pytest.raises(ValueError, match="max_parameters"):
        check_weights(small2d, max_parameters=0)
    with pytest.raises(Asfe3dInputError, match="more than the 0.0001 M limit"):
        check_weights(small2d, max_parameters=100)


def test_nan_weights_refused_in_one_line(tmp_path):
    net = ASFEFusion(spatial_dims=2, **SMALL)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first].view(-1)[0] = float("nan")
    path = _save(tmp_path / "nan.pt", net.config, state)
    with pytest.raises(Asfe3dInputError, match=f"weights hold NaN or Inf values \\({first}"):
        build_network(path, "slice")


def test_weight_file_that_unpacks_too_large_refused_before_loading(tmp_path, monkeypatch):
    """A small file with a deflated entry far larger than any network (a decompression bomb) is refused from its
    zip directory, before torch allocates anything."""
    import zipfile

    from asfe3d.fusion import weights

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data/0", bytes(64 * 2**20))
    assert bomb.stat().st_size < 2**20
    monkeypatch.setattr(weights, "MAX_WEIGHT_BYTES", 32 * 2**20)
    loaded = []
    monkeypatch.setattr(weights.torch, "load", lambda *a, **k: loaded.append(a))
    with pytest.raises(Asfe3dInputError, match=r"unpacks to 64 MB.*decompression bomb"):
        weights.load_weights(bomb)
    assert not loaded


@pytest.mark.parametrize("kind", ["png", "pickled_function"])
def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_short_line(tmp_path, kind):
    """torch's refusal is many lines, advising to load the file with weights_only=False (unsafe) and to file an
    issue with PyTorch; the error is one line naming the file, without that advice."""
    from asfe3d.fusion.weights import load_weights

    path = tmp_path / f"{kind}.pt"
    if kind == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    else:
        torch.save({"f": print}, path)
    with pytest.raises(Asfe3dInputError, match="not a readable weight file") as err:
        load_weights(path)
    text = str(err.value)
    assert "\n" not in text and "weights_only" not in text and "file an issue" not in text and len(text) < 400


def test_a_folder_a_truncated_file_and_a_resume_checkpoint_are_named(tmp_path):
    """Probe 48 #13: a folder was "not found", a truncated file's line ended mid-sentence in torch's advice, and a
    run's last.pt read only as "not an asfe3d weight file"."""
    from asfe3d.fusion.weights import load_weights

    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(Asfe3dInputError, match=r"dir.pt: is a folder, not a weight file$"):
        load_weights(tmp_path / "dir.pt")
    torch.save({"a": torch.zeros(100)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(Asfe3dInputError, match=r"its zip archive is incomplete: a truncated or corrupt file\)$"):
        load_weights(tmp_path / "cut.pt")
    torch.save({"epoch": 3, "net": {"w": torch.zeros(2)}, "optimizer": {}}, tmp_path / "last.pt")
    with pytest.raises(Asfe3dInputError, match=r"a resume checkpoint of asfe3d train \(last.pt\), not a weight file: "
                                               r"the run's weights are its best.pt"):
        load_weights(tmp_path / "last.pt")
