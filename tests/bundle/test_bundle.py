"""The MONAI bundle ``bundles/asfe3d_mri_pet_fusion``: metadata (offline), network I/O, the evaluator-based inference
(MRI grid, overrides, resumability, slice variant = ``asfe3d fuse --mode slice``). Export, weights and the override
check: ``test_export.py``."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import ignite  # noqa: F401  - the bundle's evaluator needs it; in the dev extra, so these tests never skip
import nibabel as nib
import numpy as np
import pytest
import torch

from asfe3d.settings import Settings
from tests.conftest import make_cohort

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "asfe3d_mri_pet_fusion"
CONFIGS = BUNDLE / "configs"
META = CONFIGS / "metadata.json"
SCHEMA = CONFIGS / "schema" / "meta_schema_20240725.json"
INFERENCE = str(CONFIGS / "inference.json")
SLICE = [INFERENCE, str(CONFIGS / "inference_slice.json")]

#: the bundle's weights, in the package (asfe3d's weight format; ``models/*.pt`` hold their plain state dicts)
SHIPPED_3D = ROOT / "asfe3d" / "weights" / "asfe3d_mri_pet.pt"
SHIPPED_2D = ROOT / "asfe3d" / "weights" / "asfe2d_slice_mri_pet.pt"


def _run(datalist: Path, out: Path, config_file: str | list[str] = INFERENCE, **override) -> None:
    """``monai.bundle.run`` in-process, as ``python -m monai.bundle run`` calls it."""
    from monai.bundle import run

    run(config_file=config_file, bundle_root=str(BUNDLE), datalist=str(datalist), output_dir=str(out),
        device="cpu", **override)


def _fused(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)


def _assert_on_mri_grid(fused: Path, mri: Path) -> None:
    img, ref = nib.load(str(fused)), nib.load(str(mri))
    assert img.shape == ref.shape
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
    assert (int(img.header["qform_code"]), int(img.header["sform_code"])) == \
        (int(ref.header["qform_code"]), int(ref.header["sform_code"]))
    data = _fused(fused)
    assert data.dtype == np.float32 and np.isfinite(data).all() and data.std() > 0


def test_bundle_layout():
    for rel in ("LICENSE", "configs/metadata.json", "configs/inference.json", "configs/inference_slice.json",
                "configs/train.json", "configs/evaluate.json", "configs/multi_gpu_train.json",
                "configs/multi_gpu_inference.json", "configs/logging.conf", "docs/README.md", "models/README.md",
                "models/model.pt", "models/model_2d.pt"):
        assert (BUNDLE / rel).is_file(), rel
    assert "Apache License" in (BUNDLE / "LICENSE").read_text()[:200]
    for cfg in CONFIGS.glob("*.json"):
        json.loads(cfg.read_text())  # every config is valid JSON
    inference = json.loads(Path(INFERENCE).read_text())
    for key in ("imports", "bundle_root", "device", "datalist", "output_dir", "network_def", "network",
                "preprocessing", "dataset", "dataloader", "inferer", "postprocessing", "handlers", "evaluator",
                "initialize", "run", "finalize"):
        assert key in inference, key
    # the preprocessing is the pipeline's own chain, built from the run's settings (what `asfe3d fuse` runs)
    assert inference["preprocessing"] == {"_target_": "asfe3d.pipeline.build_preprocessing", "settings": "@settings"}
    assert inference["settings"]["_target_"] == "asfe3d.settings.Settings.from_flat"
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    steps = [type(t).__name__ for t in parser.get_parsed_content("preprocessing").transforms]
    # the MRI, then the PET with its part above the window, then the PET beyond its field of view filled
    assert steps == ["LoadVolumed", "RealignFramesd", "HeadMaskd", "RegisterToReferenced", "RobustNormalized",
                     "RobustNormalized", "FillOutsideMaskd", "ConcatItemsd"]


def test_verify_metadata_offline_and_rejects_incomplete_metadata(tmp_path):
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(META), filepath=str(SCHEMA))  # the file exists: nothing is downloaded
    meta = json.loads(META.read_text())
    inputs = meta["network_data_format"]["inputs"]["image"]
    assert inputs["num_channels"] == 2 and set(inputs["channel_def"]) == {"0", "1"}
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 1
    assert meta["version"] in meta["changelog"]
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


def test_metadata_names_the_paper_and_its_modules():
    meta = json.loads(META.read_text())
    refs = " ".join(meta["references"])
    assert "Adaptive spatial and frequency experts fusion network for medical image fusion" in refs
    assert "Biomedical Signal Processing and Control 96:106478" in refs
    assert "Three-Dimensional Medical Image Fusion with Deformable Cross-Attention" in refs
    text = meta["description"]
    for name in ("cross-attention spatial fusion", "adaptive frequency fusion",
                 "spatial and frequency experts fusion", "mixture of experts"):
        assert name in text, name
    for wrong in ("adaptive feature fusion", "spatial-frequency enhancement"):
        assert wrong not in json.dumps(meta), wrong
    assert "pytorch-ignite" in meta["required_packages_version"]


def test_verify_net_in_out():
    from monai.bundle import verify_net_in_out

    verify_net_in_out(net_id="network_def", meta_file=str(META), config_file=INFERENCE, device="cpu")
    with pytest.raises(ValueError, match="output channel number"):
        verify_net_in_out(net_id="network_def", meta_file=str(META), config_file=INFERENCE,
                          device="cpu", **{"_meta_#network_data_format#outputs#pred#num_channels": 3})
    # the slice variant, with its 2D description after metadata.json (with the 3D one alone it failed)
    with pytest.raises(ValueError, match="2 spatial dims"):
        verify_net_in_out(net_id="network_def", meta_file=str(META), config_file=SLICE, device="cpu")
    verify_net_in_out(net_id="network_def", meta_file=[str(META), str(CONFIGS / "metadata_slice.json")],
                      config_file=SLICE, device="cpu")


@pytest.mark.parametrize("configs, weights, shipped", [([INFERENCE], "model.pt", SHIPPED_3D),
                                                       (SLICE, "model_2d.pt", SHIPPED_2D)])
def test_network_def_is_the_weights_network(configs, weights, shipped):
    """network_def spells out the config stored in the package's weight file, and ckpt_path points to the bundle's
    plain state dict of it."""
    from monai.bundle import ConfigParser

    from asfe3d.fusion.weights import load_weights

    parser = ConfigParser()
    parser.read_config(configs)
    parser["bundle_root"] = str(BUNDLE)
    payload = load_weights(shipped)
    assert parser.get_parsed_content("ckpt_path") == f"{BUNDLE}/models/{weights}"
    net = parser.get_parsed_content("network_def")
    from asfe3d.networks import ASFEFusion

    stored = ASFEFusion(**payload["config"]).config  # keys added since the file was written take their defaults
    assert json.loads(json.dumps(net.config)) == json.loads(json.dumps(stored))  # tuples -> lists, as stored
    net.load_state_dict(torch.load(BUNDLE / "models" / weights, weights_only=True), strict=True)


def test_overrides_reach_the_network_and_inferer():
    """``--network_def#...`` and ``--inferer#...`` change what is built (MONAI's own override path)."""
    from monai.bundle import ConfigParser

    base, over = ConfigParser(), ConfigParser()
    base.read_config(INFERENCE)
    over.read_config(INFERENCE)
    over.update({"network_def#residual_scale": 0.5, "inferer#roi_size": [16, 16, 16], "device": "cpu",
                 "inferer#steps#pet_consistency": 0.0})
    assert tuple(over.get_parsed_content("inferer").roi_size) == (16, 16, 16)
    assert base.get_parsed_content("inferer").roi_size == "auto"
    assert over.get_parsed_content("inferer").steps.pet_consistency == 0.0  # the steps' settings sit under steps
    assert base.get_parsed_content("inferer").steps.pet_consistency == 0.25
    state = torch.load(BUNDLE / "models" / "model.pt", weights_only=True)
    x = torch.rand(1, 2, 16, 16, 16)
    outs = []
    for parser in (base, over):
        net = parser.get_parsed_content("network_def").eval()
        net.load_state_dict(state)
        with torch.no_grad():
            outs.append(net(x))
    assert (outs[0] - outs[1]).abs().max() > 1e-4
    assert str(over.get_parsed_content("device")) == "cpu"
    assert next(over.get_parsed_content("network").parameters()).device.type == "cpu"


def test_pet_smoothing_reaches_the_bundle_through_its_settings():
    """The bundle's preprocessing is the command's chain built from its settings: ``--settings#pet_smooth_mm 3``
    smooths the registered PET as ``asfe3d fuse --pet-smooth-mm 3`` does; without it there is no such step."""
    from monai.bundle import ConfigParser

    names = []
    for extra in ({}, {"settings#pet_smooth_mm": 3.0}):
        parser = ConfigParser()
        parser.read_config(INFERENCE)
        parser["bundle_root"] = str(BUNDLE)
        parser.update({"device": "cpu", **extra})
        names.append([type(t).__name__ for t in parser.get_parsed_content("preprocessing").transforms])
    assert "SmoothMmd" not in names[0]
    assert names[1][names[1].index("SmoothMmd") + 1] == "RobustNormalized"  # after registration, before normalising


def test_inferer_steps_are_the_volume_mode_defaults():
    """The bundle's inferers take the steps after the network that ``asfe3d fuse`` takes in each mode."""
    from monai.bundle import ConfigParser

    from asfe3d.defaults import (
        PET_CONSISTENCY_BY_MODE,
        PET_CONSISTENCY_MIN_VOXEL_MM_BY_MODE,
        PET_DETAIL_FLOOR_BY_MODE,
        PET_DETAIL_FLOOR_MAX_VOXEL_MM_BY_MODE,
        PET_DETAIL_RATIO,
        PET_DETAIL_SELECT_BY_MODE,
        PET_DETAIL_SELECT_MIN_VOXEL_MM_BY_MODE,
    )

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.update({"device": "cpu"})
    inferer = parser.get_parsed_content("inferer")
    assert (inferer.steps.pet_consistency, inferer.steps.pet_consistency_min_voxel_mm) == (
        PET_CONSISTENCY_BY_MODE["volume"], PET_CONSISTENCY_MIN_VOXEL_MM_BY_MODE["volume"])
    assert (inferer.steps.pet_detail_select, inferer.steps.pet_detail_ratio, inferer.steps.pet_detail_select_min_voxel_mm) == (
        PET_DETAIL_SELECT_BY_MODE["volume"], PET_DETAIL_RATIO, PET_DETAIL_SELECT_MIN_VOXEL_MM_BY_MODE["volume"])
    assert (inferer.steps.pet_detail_floor, inferer.steps.pet_detail_floor_max_voxel_mm) == (
        PET_DETAIL_FLOOR_BY_MODE["volume"], PET_DETAIL_FLOOR_MAX_VOXEL_MM_BY_MODE["volume"])
    sliced = ConfigParser()
    sliced.read_config(SLICE)
    sliced.update({"device": "cpu"})
    inferer = sliced.get_parsed_content("inferer")
    assert (inferer.mode, inferer.steps.pet_consistency, inferer.steps.pet_consistency_min_voxel_mm) == (
        "slice", PET_CONSISTENCY_BY_MODE["slice"], PET_CONSISTENCY_MIN_VOXEL_MM_BY_MODE["slice"])
    assert (inferer.steps.pet_detail_select, inferer.steps.pet_detail_ratio, inferer.steps.pet_detail_select_min_voxel_mm) == (
        PET_DETAIL_SELECT_BY_MODE["slice"], PET_DETAIL_RATIO, PET_DETAIL_SELECT_MIN_VOXEL_MM_BY_MODE["slice"])
    assert (inferer.steps.pet_detail_floor, inferer.steps.pet_detail_floor_max_voxel_mm) == (
        PET_DETAIL_FLOOR_BY_MODE["slice"], PET_DETAIL_FLOOR_MAX_VOXEL_MM_BY_MODE["slice"])
    # the steered detail injection: the command's default per mode, with its gain cap and grid gate
    from asfe3d.defaults import DETAIL_STEER_BY_MODE, DETAIL_STEER_MAX_GAIN_BY_MODE, DETAIL_STEER_MAX_VOXEL_MM_BY_MODE

    for config, mode in ((INFERENCE, "volume"), (SLICE, "slice")):
        parser = ConfigParser()
        parser.read_config(config)
        parser.update({"device": "cpu"})
        inferer = parser.get_parsed_content("inferer")
        assert (inferer.steps.detail_steer, inferer.steps.detail_steer_max_gain, inferer.steps.detail_steer_max_voxel_mm) == (
            DETAIL_STEER_BY_MODE[mode], DETAIL_STEER_MAX_GAIN_BY_MODE[mode], DETAIL_STEER_MAX_VOXEL_MM_BY_MODE[mode])
        # the consistency step's strength of its own on coarse grids (slice mode since the thirty-third addendum)
        from asfe3d.defaults import PET_CONSISTENCY_COARSE_BY_MODE

        assert inferer.steps.pet_consistency_coarse == PET_CONSISTENCY_COARSE_BY_MODE[mode]
        # and on fine grids, with its own width (volume mode since the forty-second addendum)
        from asfe3d.defaults import PET_CONSISTENCY_FINE_BY_MODE

        assert inferer.steps.pet_consistency_fine == PET_CONSISTENCY_FINE_BY_MODE[mode]
        # the steered injection's cap of its own on coarse grids (volume mode since the thirty-fourth addendum)
        from asfe3d.defaults import DETAIL_STEER_MAX_GAIN_COARSE_BY_MODE

        assert inferer.steps.detail_steer_max_gain_coarse == DETAIL_STEER_MAX_GAIN_COARSE_BY_MODE[mode]


def test_missing_weights_fail_before_any_subject(tmp_path, demo_files):
    datalist = make_cohort(tmp_path, demo_files, 1)
    with pytest.raises(Exception) as info:
        _run(datalist, tmp_path / "out", ckpt_path=str(tmp_path / "none.pt"))
    assert "none.pt" in repr(info.value) + repr(info.value.__cause__) + str(info.getrepr())
    assert not list((tmp_path / "out").glob("*.nii.gz"))


@pytest.mark.slow
def test_bundle_inference_on_mri_grid_resumable_and_equal_to_fuse_pair(tmp_path, demo_files, monkeypatch):
    """The 3D run from a foreign cwd: MRI grid and header, the same voxels as ``fuse_pair`` with its defaults (the
    same window policy, roi_size "auto"), skipped when complete, refused (redone with overwrite) when an input
    changes, roi override effective."""
    from asfe3d.bundle import datalist_items
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.pipeline import fuse_pair

    datalist = make_cohort(tmp_path / "data", demo_files, 1)
    mri, pet = tmp_path / "data" / "sub01" / "mri.nii.gz", tmp_path / "data" / "sub01" / "pet.nii.gz"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "out"
    _run(datalist, out)
    fused = out / "sub01_fused.nii.gz"
    _assert_on_mri_grid(fused, mri)
    record = json.loads((out / "sub01_fused.json").read_text())
    assert record["status"] == "complete" and record["settings"]["bundle"]["device"] == "cpu"
    assert record["settings"]["bundle"]["roi_size"] == "auto" and record["settings"]["registration"]["method"] == "auto"
    assert Settings.from_dict({k: v for k, v in record["settings"].items() if k != "bundle"}).fusion.mode == "volume"
    ref = fuse_pair(mri, pet, tmp_path / "ref_fused.nii.gz", Settings.from_flat(weights=SHIPPED_3D, device="cpu"))
    np.testing.assert_allclose(_fused(fused), _fused(ref.output), rtol=0, atol=1e-6)

    # resumable: complete subjects are not in the dataset; a changed input brings the subject back
    assert datalist_items(datalist, out) == []
    stamp = fused.stat().st_mtime_ns
    _run(datalist, out)
    assert fused.stat().st_mtime_ns == stamp
    # a changed input: refused before anything runs, naming it (not replaced without --overwrite, as in cohorts)
    os.utime(pet, ns=(pet.stat().st_atime_ns, pet.stat().st_mtime_ns + 10**9))
    assert datalist_items(datalist, out) == []  # touched, the same content: still complete
    img = nib.load(pet)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32) * 2, img.affine, img.header), str(pet))
    with pytest.raises(Asfe3dInputError, match=r"the pet input .*pet\.nii\.gz changed since the recorded run"):
        datalist_items(datalist, out)
    assert [i["subject"] for i in datalist_items(datalist, out, overwrite=True)] == ["sub01"]

    # --inferer#roi_size takes effect (the 6 mm demo is 33x39x32: 16^3 windows really slide); registration "none"
    # on both runs, so that the roi is the only difference
    out16, out128 = tmp_path / "out16", tmp_path / "out128"
    _run(datalist, out16, registration="none", **{"inferer#roi_size": [16, 16, 16]})
    _run(datalist, out128, registration="none")
    _assert_on_mri_grid(out16 / "sub01_fused.nii.gz", mri)
    assert np.abs(_fused(out16 / "sub01_fused.nii.gz") - _fused(out128 / "sub01_fused.nii.gz")).max() > 0


@pytest.mark.slow
def test_slice_variant_equals_fuse_slice_mode(tmp_path, demo_files):
    """inference_slice.json (2D weights, SliceInferer) gives the voxels of ``asfe3d fuse --mode slice``."""
    from asfe3d.pipeline import fuse_pair

    datalist = make_cohort(tmp_path / "data", demo_files, 1)
    mri, pet = tmp_path / "data" / "sub01" / "mri.nii.gz", tmp_path / "data" / "sub01" / "pet.nii.gz"
    out = tmp_path / "out"
    _run(datalist, out, config_file=SLICE)
    fused = out / "sub01_fused.nii.gz"
    _assert_on_mri_grid(fused, mri)
    ref = fuse_pair(mri, pet, tmp_path / "ref.nii.gz", Settings.from_flat(method="asfe", mode="slice", device="cpu"))
    np.testing.assert_allclose(_fused(fused), _fused(ref.output), rtol=0, atol=1e-6)
    assert json.loads((out / "sub01_fused.json").read_text())["settings"]["bundle"]["inferer"] == "FusionInferer"


def test_collate_one_keeps_subject_state():
    from monai.data import MetaTensor

    from asfe3d.bundle import collate_one

    item = {"image": MetaTensor(torch.rand(2, 4, 5, 6)), "subject": "s1", "pet_transform": object(),
            "mri": MetaTensor(torch.rand(1, 4, 5, 6))}
    batch = collate_one([item])
    assert batch["image"].shape == (1, 2, 4, 5, 6) and batch["mri"].shape == (1, 4, 5, 6)
    assert batch["subject"] == "s1" and batch["pet_transform"] is item["pet_transform"]
    with pytest.raises(ValueError, match="got 2 items"):
        collate_one([item, item])


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
    inf.read_config([INFERENCE, str(CONFIGS / "multi_gpu_inference.json")])
    assert "sampler" not in inf["dataloader"] and inf["shard"].startswith("$(dist.get_rank()")  # sharded datalist
    assert inf["inferer"]["_target_"] == "asfe3d.inferers.FusionInferer"  # the base config is kept
    bad = copy.deepcopy(parser.get_parsed_content("training"))
    bad["train"]["epochs"] = 0
    with pytest.raises(ValueError, match="train.epochs"):
        resolve_config(bad)


def test_monai_bundle_load_builds_each_workflows_network():
    """``monai.bundle.load`` returns a network with the shipped tensors for both workflow types (with MONAI's
    default, ``train``, it failed: ``train.json`` had no ``network_def``)."""
    from monai.bundle import load

    shipped = torch.load(BUNDLE / "models" / "model.pt", weights_only=True)
    for workflow, injection in (("train", 0.0), ("inference", 0.8)):
        net = load(BUNDLE.name, bundle_dir=str(BUNDLE.parent), source="github", workflow_type=workflow)
        assert net.config["detail_injection"] == injection and net.config["spatial_dims"] == 3
        assert all(torch.equal(v, shipped[k]) for k, v in net.state_dict().items())


@pytest.mark.slow
def test_cli_run_from_another_folder_and_typo(tmp_path, demo_files):
    """``python -m monai.bundle run`` with absolute paths from a foreign cwd; a typo key exits non-zero."""
    datalist = make_cohort(tmp_path / "data", demo_files, 1)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", INFERENCE, "--bundle_root", str(BUNDLE),
           "--datalist", str(datalist), "--output_dir", str(tmp_path / "out"), "--device", "cpu"]
    # the typo's run beside the real one (it stops before it reads or writes anything; each imports for ~10 s)
    typo = subprocess.Popen(cmd + ["--devcie", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_on_mri_grid(tmp_path / "out" / "sub01_fused.nii.gz", tmp_path / "data" / "sub01" / "mri.nii.gz")
    _, stderr = typo.communicate(timeout=600)
    assert typo.returncode == 2 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("asfe3d: error: ") and "did you mean --device" in stderr


@pytest.mark.slow
def test_multi_gpu_inference_overlay_under_torchrun_gloo(tmp_path, demo_files):
    """``torchrun -m monai.bundle run`` with the multi-GPU overlay, 2 CPU processes (gloo): each subject once."""
    datalist = make_cohort(tmp_path, demo_files, 3)
    out = tmp_path / "out"
    configs = f"['{INFERENCE}','{CONFIGS / 'multi_gpu_inference.json'}']"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
           "run", "--config_file", configs, "--bundle_root", str(BUNDLE), "--datalist", str(datalist),
           "--output_dir", str(out), "--device", "cpu", "--inferer#roi_size", "[32,32,32]"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for i in (1, 2, 3):
        _assert_on_mri_grid(out / f"sub0{i}_fused.nii.gz", tmp_path / f"sub0{i}" / "mri.nii.gz")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"sub0{i}_fused.nii.gz" for i in (1, 2, 3)] + [f"sub0{i}_fused.json" for i in (1, 2, 3)])
    # a datalist shorter than the processes (as a rerun with every subject done: a process with nothing to do)
    # finishes cleanly (the sampler refused a dataset shorter than the world size, with a traceback)
    one = tmp_path / "one.csv"
    one.write_text(f"subject,mri,pet\nsub01,{tmp_path / 'sub01' / 'mri.nii.gz'},{tmp_path / 'sub01' / 'pet.nii.gz'}\n")
    proc = subprocess.run([*cmd[:cmd.index("--datalist") + 1], str(one), "--output_dir", str(tmp_path / "out1"),
                           *cmd[cmd.index("--device"):]], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (tmp_path / "out1" / "sub01_fused.nii.gz").is_file()


def test_datalist_items_shards_the_whole_datalist_before_skipping(tmp_path, demo_files):
    """Every process of a multi-GPU run splits the same list: a subject finished by one process before another
    looks does not shift the other's share (a subject was skipped by both, or fused by both)."""
    from asfe3d.bundle import datalist_items

    datalist = make_cohort(tmp_path, demo_files, 3)
    out = tmp_path / "out"
    names = [[i["subject"] for i in datalist_items(datalist, out, shard=(r, 2))] for r in (0, 1)]
    assert names == [["sub01", "sub03"], ["sub02"]]
    # sub01 done by process 0: process 1 still takes sub02 only, process 0 has sub03 left
    from asfe3d.pipeline import fuse_pair
    from asfe3d.settings import Settings

    fuse_pair(tmp_path / "sub01" / "mri.nii.gz", tmp_path / "sub01" / "pet.nii.gz", out / "sub01_fused.nii.gz",
              Settings.from_flat(method="mean", registration="none"))
    names = [[i["subject"] for i in datalist_items(datalist, out, shard=(r, 2))] for r in (0, 1)]
    assert names == [["sub03"], ["sub02"]]
    assert datalist_items(datalist, out, shard=(3, 4)) == []
    for bad in ((2, 2), (-1, 2), (0, 0), (0.0, 2), "0/2"):
        with pytest.raises(ValueError, match="shard must be \\(rank, world_size\\)"):
            datalist_items(datalist, out, shard=bad)


def test_preprocessing_is_the_pipelines_chain():
    """The config's preprocessing (built from the bundle's ``settings``) has, with the bundle's defaults, the settings
    of ``asfe3d.pipeline.build_preprocessing()`` (what ``fuse_pair`` runs by default), step by step."""
    import inspect

    from monai.bundle import ConfigParser

    from asfe3d.io import read_volume
    from asfe3d.pipeline import build_preprocessing

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    ours, ref = parser.get_parsed_content("preprocessing").transforms, build_preprocessing().transforms
    assert [type(t).__name__ for t in ours] == [type(t).__name__ for t in ref]
    defaults = {k: v.default for k, v in inspect.signature(read_volume).parameters.items()
                if v.default is not inspect.Parameter.empty}

    def reader_settings(load, key):  # what LoadVolumed hands read_volume for one key
        per_key = {"series_uid": load._per_key(load.series_uid, key), "frame": load._per_key(load.frame, key),
                   "allow_nonfinite": load.allow_nonfinite}
        return {**defaults, **per_key, **load.reader_kwargs, **load.key_kwargs.get(key, {})}

    def settings(t):
        if hasattr(t, "realign"):
            return vars(t.realign), t.keys
        if hasattr(t, "register"):
            return vars(t.register), t.keys, t.ref_key, t.mask_key
        if hasattr(t, "normalize"):
            return vars(t.normalize), t.keys, t.mask_key
        if hasattr(t, "fill"):
            return vars(t.fill), t.keys, t.mask_key
        return {k: v for k, v in vars(t).items() if k != "mask"}

    assert tuple(ours[0].keys) == tuple(ref[0].keys)
    for key in ref[0].keys:
        assert reader_settings(ours[0], key) == reader_settings(ref[0], key), key
    for a, b in zip(ours[1:], ref[1:]):
        assert settings(a) == settings(b), type(a).__name__


def test_a_subject_done_with_other_settings_is_refused_not_skipped(tmp_path, demo_files):
    """A rerun with another --ckpt_path (or any setting that changes the output) is not "already complete"."""
    from asfe3d.bundle import datalist_items
    from asfe3d.cohort import read_datalist, subject_output_path
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.pipeline import fuse_pair

    datalist = make_cohort(tmp_path / "data", demo_files, 1)
    out = tmp_path / "out"
    subject = read_datalist(datalist)[0]
    settings = Settings.from_flat(method="mean", registration="none")
    res = fuse_pair(subject.mri, subject.pet, subject_output_path(subject, out), settings)
    recorded = dict(settings.as_dict(), bundle={"weights": "a.pt", "device": "cpu"})
    record = Path(res.outputs["record"])  # as SaveSubjectd writes it: the bundle's own settings beside the rest
    record.write_text(json.dumps(dict(json.loads(record.read_text()), settings=recorded)))
    assert datalist_items(datalist, out, settings=recorded) == []  # written as the bundle records: skipped
    assert datalist_items(datalist, out, settings=dict(recorded, bundle={"weights": "a.pt", "device": "cuda"})) == []
    other = dict(recorded, bundle={"weights": "b.pt", "device": "cpu"})
    with pytest.raises(Asfe3dInputError, match=r"fused with other settings \(bundle.weights 'a.pt' -> 'b.pt'\)"):
        datalist_items(datalist, out, settings=other)
    assert [i["subject"] for i in datalist_items(datalist, out, overwrite=True, settings=other)] == ["sub01"]
    # an input changed since: refused here, naming it, before anything is read or registered (it used to reach the
    # writer, which refused "output file already exists" after the registration)
    img = nib.load(subject.mri)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32) * 2, img.affine, img.header), str(subject.mri))
    with pytest.raises(Asfe3dInputError, match=r"sub01_fused\.(nii\.gz|json): exists but is not a complete output of "
                                               r"this run of subject 'sub01' \(the mri input .* changed since"):
        datalist_items(datalist, out, settings=recorded)
    res.output.unlink()  # its fused volume deleted: an unfinished run of ours, redone
    assert [i["subject"] for i in datalist_items(datalist, out, settings=recorded)] == ["sub01"]


def test_datalist_items_refuses_shared_outputs_and_foreign_files_before_anything_runs(tmp_path, demo_files):
    """Two subjects naming one output, and a file of the user's under a planned name with --overwrite true, were
    found only when that subject was written (after its registration and inference, 130-160 lines of tracebacks)."""
    from asfe3d.bundle import datalist_items
    from asfe3d.errors import Asfe3dInputError

    make_cohort(tmp_path, demo_files, 2)
    shared = tmp_path / "shared.csv"
    shared.write_text("subject,mri,pet,output\n" + "".join(
        f"sub0{i},sub0{i}/mri.nii.gz,sub0{i}/pet.nii.gz,out/same.nii.gz\n" for i in (1, 2)))
    with pytest.raises(Asfe3dInputError, match="subjects 'sub01' and 'sub02' would both write this output"):
        datalist_items(shared, tmp_path / "o")
    datalist = make_cohort(tmp_path, demo_files, 2)
    out = tmp_path / "fused"
    out.mkdir()
    (out / "sub02_fused.nii.gz").write_bytes(b"mine")
    with pytest.raises(Asfe3dInputError, match="sub02_fused.nii.gz was not written by asfe3d"):
        datalist_items(datalist, out)  # no --overwrite: the hint is to move it, not --overwrite
    with pytest.raises(Asfe3dInputError, match="does not list it as an earlier asfe3d output"):
        datalist_items(datalist, out, overwrite=True)
    (out / "sub02_fused.nii.gz").unlink()
    (out / "sub01_fused.json").write_text('{"mine": 1}')
    with pytest.raises(Asfe3dInputError, match="sub01_fused.json: exists and is not an asfe3d completion record"):
        datalist_items(datalist, out, overwrite=True)
    assert (out / "sub01_fused.json").read_text() == '{"mine": 1}'


def test_the_bundle_records_what_the_fused_image_holds_beyond_the_field_of_view(tmp_path):
    """The bundle's record says, as the command's does, what its fused file holds beyond the PET's field of view:
    the MRI window's low end (``fusion.outside_pet_fov.value``), 0 with ``outputs.scale`` "unit"."""
    from asfe3d.bundle import SaveSubjectd
    from asfe3d.transforms import LoadVolumed
    from asfe3d.transforms.array import WINDOW_KEY

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    arr = np.random.default_rng(0).uniform(100, 900, (6, 7, 5)).astype(np.float32)
    for name in ("mri", "pet"):
        nib.save(nib.Nifti1Image(arr, affine), str(tmp_path / f"{name}.nii.gz"))
    paths = {"mri_path": str(tmp_path / "mri.nii.gz"), "pet_path": str(tmp_path / "pet.nii.gz")}
    fov = torch.ones((1, 6, 7, 5), dtype=torch.bool)
    fov[..., :2] = False
    for scale, expected in (("mri", 120.5), ("unit", 0.0)):
        d = LoadVolumed(["mri", "pet"])({"mri": paths["mri_path"], "pet": paths["pet_path"], **paths})
        d["mri"].meta[WINDOW_KEY] = (120.5, 880.0)
        fused = d["mri"].clone()
        fused[..., :2] = expected
        d.update(fused=fused, pet_fov=fov, mri_head=torch.ones_like(fov), pet_registration={},
                 output=str(tmp_path / f"{scale}_fused.nii.gz"))
        SaveSubjectd({"fused": "output"}, settings={"outputs": {"scale": scale}})(d)
        record = json.loads((tmp_path / f"{scale}_fused.json").read_text())["fusion"]["outside_pet_fov"]
        written = np.asarray(nib.load(str(tmp_path / f"{scale}_fused.nii.gz")).dataobj)
        assert record == {"voxels": 84, "head_fraction": 0.4, "value": expected}
        assert np.all(written[..., :2] == np.float32(record["value"]))


def test_a_training_run_records_the_bundle_command_as_typed(monkeypatch):
    """Probe 48 #4: train.json recorded the fixed string "monai.bundle run --config_file configs/train.json" as
    the command of every training run, whatever its overrides."""
    import types

    from asfe3d.bundle import command_line

    assert command_line("fallback") == "fallback"  # pytest is not the monai.bundle command line
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="monai.bundle.__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["x/__main__.py", "run", "--config_file", "b/configs/train.json",
                                      "--training#data#crop", "[24,24,24]"])
    assert command_line("fallback") == ("python -m monai.bundle run --config_file b/configs/train.json "
                                        "'--training#data#crop' '[24,24,24]'")
    assert "command=asfe3d.bundle.command_line(" in (CONFIGS / "train.json").read_text()
