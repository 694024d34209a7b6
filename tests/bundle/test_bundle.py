"""The MONAI bundle ``bundles/asfe3d_mri_pet_fusion``: metadata schema (offline), network I/O, inference runs."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import make_cohort

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "asfe3d_mri_pet_fusion"
CONFIGS = BUNDLE / "configs"
META = CONFIGS / "metadata.json"
SCHEMA = CONFIGS / "schema" / "meta_schema_20240725.json"
WEIGHTS_3D = Path(__file__).resolve().parents[2] / "asfe3d" / "weights" / "asfe3d_mri_pet.pt"


def _assert_fused_on_mri_grids(root: Path, out: Path, n: int) -> None:
    for i in range(1, n + 1):
        fused, mri = nib.load(str(out / f"sub{i:02d}_fused.nii.gz")), nib.load(str(root / f"sub{i:02d}/mri.nii.gz"))
        assert fused.shape == mri.shape
        np.testing.assert_allclose(fused.affine, mri.affine, atol=1e-5)
        assert np.isfinite(fused.get_fdata()).all() and fused.get_fdata().std() > 0


def test_bundle_layout():
    for rel in ("LICENSE", "configs/metadata.json", "configs/inference.json", "configs/train.json",
                "configs/evaluate.json", "configs/multi_gpu_train.json", "configs/multi_gpu_inference.json",
                "configs/logging.conf", "docs/README.md", "models/README.md"):
        assert (BUNDLE / rel).is_file(), rel
    assert "Apache License" in (BUNDLE / "LICENSE").read_text()[:200]
    for cfg in CONFIGS.glob("*.json"):
        json.loads(cfg.read_text())  # every config is valid JSON


def test_verify_metadata_offline_and_rejects_incomplete_metadata(tmp_path):
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(META), filepath=str(SCHEMA))  # the file exists: nothing is downloaded
    meta = json.loads(META.read_text())
    inputs = meta["network_data_format"]["inputs"]["image"]
    assert inputs["num_channels"] == 2 and set(inputs["channel_def"]) == {"0", "1"}
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 1
    for broken_key in ("authors", "required_packages_version"):
        bad = copy.deepcopy(meta)
        del bad[broken_key]
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=broken_key):
            verify_metadata(meta_file=str(tmp_path / "bad.json"), filepath=str(SCHEMA))
    bad = copy.deepcopy(meta)
    del bad["network_data_format"]["inputs"]["image"]["channel_def"]
    (tmp_path / "bad2.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="channel_def"):
        verify_metadata(meta_file=str(tmp_path / "bad2.json"), filepath=str(SCHEMA))


def test_verify_net_in_out():
    from monai.bundle import verify_net_in_out

    verify_net_in_out(net_id="network_def", meta_file=str(META), config_file=str(CONFIGS / "inference.json"),
                      device="cpu")
    with pytest.raises(ValueError, match="output channel number"):
        verify_net_in_out(net_id="network_def", meta_file=str(META), config_file=str(CONFIGS / "inference.json"),
                          device="cpu", **{"_meta_#network_data_format#outputs#pred#num_channels": 3})


def test_train_and_overlay_configs_resolve():
    from monai.bundle import ConfigParser

    from asfe3d.training import resolve_config

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json")])
    cfg = resolve_config(parser.get_parsed_content("training"))  # the engine accepts every key
    assert cfg["spatial_dims"] == 3 and cfg["data"]["source"] == "simulated"
    multi = ConfigParser()
    multi.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json")])
    assert multi.get_parsed_content("training")["train"]["device"] in ("cpu", "cuda:0")
    inf = ConfigParser()
    inf.read_config([str(CONFIGS / "inference.json"), str(CONFIGS / "multi_gpu_inference.json")])
    from asfe3d.distributed import run_cohort_distributed

    assert inf.get_parsed_content("cohort_runner") is run_cohort_distributed
    bad = copy.deepcopy(parser.get_parsed_content("training"))
    bad["train"]["epochs"] = 0
    with pytest.raises(ValueError, match="train.epochs"):
        resolve_config(bad)


@pytest.mark.slow
def test_bundle_run_inference_mean(tmp_path, demo_files):
    """The documented command: ``python -m monai.bundle run --config_file .../inference.json`` (needs `fire`)."""
    pytest.importorskip("fire", reason="`python -m monai.bundle` needs the fire package (monai[fire])")
    datalist = make_cohort(tmp_path, demo_files, 3)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "inference.json"),
           "--bundle_root", str(BUNDLE), "--datalist", str(datalist), "--output_dir", str(out),
           "--method", "mean", "--registration", "none", "--progress", "False"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_fused_on_mri_grids(tmp_path, out, 3)
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 4 and all(",ok," in line for line in summary[1:])


def test_bundle_run_in_process_reports_failures(tmp_path, demo_files):
    from monai.bundle import run

    datalist = make_cohort(tmp_path, demo_files, 2)
    out = tmp_path / "out"
    run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(BUNDLE), datalist=str(datalist),
        output_dir=str(out), method="wavelet", registration="none", progress=False)
    _assert_fused_on_mri_grids(tmp_path, out, 2)
    # a missing weight file for asfe fails every subject, and the run says so
    with pytest.raises(RuntimeError) as info:
        run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(BUNDLE), datalist=str(datalist),
            output_dir=str(tmp_path / "out_asfe"), method="asfe", weights=str(tmp_path / "none.pt"),
            registration="none", progress=False)
    cause = str(info.value.__cause__)  # MONAI wraps the error of the failing config expression
    assert "2 of 2 subject(s) failed" in cause and "weight file not found" in cause


@pytest.mark.slow
@pytest.mark.skipif(not WEIGHTS_3D.is_file(), reason="shipped 3D weights asfe3d/weights/asfe3d_mri_pet.pt not there yet")
def test_bundle_run_asfe_with_shipped_weights(tmp_path, demo_files):
    from monai.bundle import run

    datalist = make_cohort(tmp_path, demo_files, 3)
    out = tmp_path / "out"
    run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(BUNDLE), datalist=str(datalist),
        output_dir=str(out), method="asfe", mode="volume", weights=str(WEIGHTS_3D), registration="none",
        roi_size=[32, 32, 32], device="cpu", progress=False)
    _assert_fused_on_mri_grids(tmp_path, out, 3)


@pytest.mark.slow
def test_multi_gpu_inference_overlay_under_torchrun_gloo(tmp_path, demo_files):
    """``torchrun -m monai.bundle run`` with the multi-GPU overlay, 2 CPU processes (gloo)."""
    pytest.importorskip("fire", reason="`python -m monai.bundle` needs the fire package (monai[fire])")
    datalist = make_cohort(tmp_path, demo_files, 3)
    out = tmp_path / "out"
    configs = f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'multi_gpu_inference.json'}']"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
           "run", "--config_file", configs, "--bundle_root", str(BUNDLE), "--datalist", str(datalist),
           "--output_dir", str(out), "--method", "mean", "--registration", "none", "--device", "cpu",
           "--progress", "False"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_fused_on_mri_grids(tmp_path, out, 3)
    rows = [line.split(",") for line in (out / "summary.csv").read_text().splitlines()[1:]]
    assert [(r[0], r[1], r[-1]) for r in rows] == [("sub01", "ok", "0"), ("sub02", "ok", "1"), ("sub03", "ok", "0")]
    assert sorted(p.name for p in out.iterdir()) == [f"sub0{i}_fused.nii.gz" for i in (1, 2, 3)] + ["summary.csv"]


def test_bundle_models_are_the_shipped_weights():
    """models/ holds exact copies of the package's weights (no drift after a retrain)."""
    weights = Path(__file__).resolve().parents[2] / "asfe3d" / "weights"
    for bundled, shipped in (("model.pt", "asfe3d_mri_pet.pt"), ("model_2d.pt", "asfe2d_pet_mri.pt")):
        assert (BUNDLE / "models" / bundled).read_bytes() == (weights / shipped).read_bytes(), bundled
