"""Training engine: config checks, loss decrease, checkpoints and resume, on a tiny fake HMIF folder."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asfe3d.distributed import setup_training as setup_distributed
from asfe3d.errors import Asfe3dInputError
from asfe3d.fusion.weights import build_network, load_weights
from asfe3d.training import TrainResult, resolve_config, train


def _fake_hmif(root: Path, n: int = 8, size: int = 32) -> Path:
    """A PET-MRI task folder with structured images (a bright disc in the MRI, a blob in the PET)."""
    folder = root / "PET-MRI"
    (folder / "MRI").mkdir(parents=True)
    (folder / "PET").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for s in range(n):
        r = np.hypot(yy - size / 2, xx - size / 2)
        mri = (np.clip(1.2 - r / (size / 3), 0, 1) * 200 + (xx % 6 < 2) * 40).astype(np.uint8)
        pet = np.zeros((size, size, 3), np.uint8)
        blob = np.exp(-((yy - 10 - s) ** 2 + (xx - 12) ** 2) / 30.0)
        pet[..., 0] = (blob * 255).astype(np.uint8)
        pet[..., 1] = (blob * 120).astype(np.uint8)
        name = f"25{s:03d}.png"
        Image.fromarray(mri, "L").save(folder / "MRI" / name)
        Image.fromarray(pet, "RGB").save(folder / "PET" / name)
    return folder


def _config(data: Path, out: Path, epochs: int = 2) -> dict:
    return {
        "spatial_dims": 2,
        "data": {"source": "hmif", "path": str(data), "crop": 32, "val_fraction": 0.25, "gap": 1},
        "train": {"epochs": epochs, "batch_size": 2, "steps_per_epoch": 3, "lr": 5e-3, "seed": 0, "device": "cpu",
                  "val_batch_size": 2},
        "out": str(out),
    }


def test_resolve_config_rejects_bad_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['learning_rate'\]"):
        resolve_config({"learning_rate": 1.0, "data": {"path": "x"}})
    with pytest.raises(ValueError, match=r"'bogus'.*in train"):
        resolve_config({"data": {"path": "x"}, "train": {"bogus": 1}})
    with pytest.raises(ValueError, match=r"'w_sharp'.*in loss"):
        resolve_config({"data": {"path": "x"}, "loss": {"w_sharp": 1}})
    assert resolve_config({"data": {"path": "x"}, "loss": {"w_edge": 20.0}})["loss"] == {"w_edge": 20.0}
    with pytest.raises(ValueError, match="needs spatial_dims 2"):
        resolve_config({"spatial_dims": 3, "data": {"path": "x"}})
    with pytest.raises(ValueError, match="data.path"):
        resolve_config({})
    with pytest.raises(ValueError, match="train.epochs"):
        resolve_config({"data": {"path": "x"}, "train": {"epochs": 0}})
    cfg = resolve_config({"data": {"path": "x"}})
    assert cfg["train"]["batch_size"] == 8 and cfg["data"]["gap"] == 2


@pytest.mark.slow
def test_train_lowers_loss_and_writes_outputs(tmp_path: Path) -> None:
    data = _fake_hmif(tmp_path)
    result = train(_config(data, tmp_path / "run", epochs=4), command="pytest")
    assert isinstance(result, TrainResult) and result.epochs_run == 4
    vals = [h["val_loss"] for h in result.history]
    assert vals[-1] < vals[0]
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "train_content", "train_gradient", "train_ssim", "val_loss", "seconds", "lr"} <= set(rows[0])
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    net, meta = build_network(result.best_path)
    assert meta["command"] == "pytest" and meta["epochs"] == 4 and meta["best_epoch"] == result.best_epoch
    assert meta["data"]["val"] == ["25006.png", "25007.png"] and meta["hardware"]["torch"] == torch.__version__
    with torch.inference_mode():
        out = net(torch.rand(1, 2, 32, 32))
    assert out.shape == (1, 1, 32, 32)


@pytest.mark.slow
def test_checkpoint_and_resume(tmp_path: Path) -> None:
    data = _fake_hmif(tmp_path)
    first = train(_config(data, tmp_path / "run", epochs=1))
    state = torch.load(first.last_path, weights_only=False)
    assert state["epoch"] == 1 and "optimizer" in state and "scheduler" in state
    resumed = train(_config(data, tmp_path / "run", epochs=3), resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[0] == first.history[0]  # the first epoch came from the checkpoint, not re-run
    assert torch.load(resumed.last_path, weights_only=False)["epoch"] == 3
    assert load_weights(resumed.best_path)["meta"]["epochs"] == 3
    with pytest.raises(ValueError, match="already holds 3 of 3 epochs"):
        train(_config(data, tmp_path / "run", epochs=3), resume=True)
    with pytest.raises(ValueError, match="does not exist"):
        train(_config(data, tmp_path / "other", epochs=1), resume=True)


def test_setup_distributed_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    info = setup_distributed(torch.device("cpu"))
    assert not info.enabled and info.is_main and info.world_size == 1
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="environment variable WORLD_SIZE: must be an integer, got .two."):
        setup_distributed(torch.device("cpu"))


def test_wholehead_source_config_and_datasets(tmp_path: Path) -> None:
    from asfe3d.data.wholehead import WholeHeadPairDataset
    from asfe3d.training.engine import build_datasets

    cfg = resolve_config({"spatial_dims": 3, "data": {"source": "wholehead", "path": str(tmp_path)}})
    assert cfg["data"]["val_anatomies"] == ["avg305T1"] and "avg305T1" not in cfg["data"]["anatomies"]
    train_ds, val_ds, desc = build_datasets(cfg)
    assert isinstance(train_ds, WholeHeadPairDataset) and isinstance(val_ds, WholeHeadPairDataset)
    assert val_ds.anatomies == ("avg305T1",) and val_ds.refresh == 0 and not val_ds.flip
    assert desc["source"] == "wholehead" and desc["val_anatomies"] == ["avg305T1"]


def test_wholehead_source_bad_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SPM12 data folder"):
        resolve_config({"spatial_dims": 3, "data": {"source": "wholehead"}})
    with pytest.raises(ValueError, match=r"held out of data.anatomies, both hold \['avg152T1'\]"):
        resolve_config({"spatial_dims": 3, "data": {"source": "wholehead", "path": "x", "val_anatomies": ["avg152T1"]}})
    assert resolve_config({"spatial_dims": 2, "data": {"source": "wholehead", "path": "x"}})["spatial_dims"] == 2
    with pytest.raises(ValueError, match="mix_hmif mixes in 2D HMIF images and needs spatial_dims 2, got 3"):
        resolve_config({"spatial_dims": 3, "data": {"source": "wholehead", "path": "x", "mix_hmif": True}})
    with pytest.raises(ValueError, match="data.bank_workers must be an integer >= 0, got -1"):
        resolve_config({"spatial_dims": 3, "data": {"source": "wholehead", "path": "x", "bank_workers": -1}})
    with pytest.raises(ValueError, match=r"data.bank_workers \(2\) and train.num_workers \(1\) both start"):
        resolve_config({"spatial_dims": 3, "data": {"source": "wholehead", "path": "x", "bank_workers": 2},
                        "train": {"num_workers": 1}})
    assert resolve_config({"spatial_dims": 3, "data": {"source": "wholehead", "path": "x", "bank_workers": 2}}
                          )["data"]["bank_workers"] == 2
    with pytest.raises(ValueError, match="needs spatial_dims 3"):
        resolve_config({"spatial_dims": 2, "data": {"source": "simulated"}})
    with pytest.raises(ValueError, match="data.source must be one of"):
        resolve_config({"data": {"source": "nifti", "path": "x"}})


def test_init_starts_from_a_weight_file(tmp_path: Path) -> None:
    data = _fake_hmif(tmp_path)
    cfg = _config(data, tmp_path / "a", epochs=1)
    cfg["train"].update(steps_per_epoch=1, num_threads=1)
    first = train(cfg)
    tuned_cfg = _config(data, tmp_path / "b", epochs=1)
    tuned_cfg["train"].update(steps_per_epoch=1, num_threads=1, lr=1e-12, min_lr=0.0, weight_decay=0.0,
                              init=str(first.best_path))
    tuned = train(tuned_cfg)
    a, b = load_weights(first.best_path)["state_dict"], load_weights(tuned.best_path)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)  # started from, barely moved
    from asfe3d.io.record import content_digest

    init = load_weights(tuned.best_path)["meta"]["init"]  # probe 48 #5: the starting weights by content
    assert init == {"path": str(first.best_path.resolve()), "sha256": content_digest(first.best_path)}
    with pytest.raises(ValueError, match=r"train.init must be null, 'shipped' or an existing weight file \(a relative "
                                         r"path is taken from the current folder, '.*'\), got '.*nope.pt'"):
        resolve_config({"data": {"path": "x"}, "train": {"init": str(tmp_path / "nope.pt")}})
    other = _config(data, tmp_path / "c", epochs=1)
    other["network"] = {"expert_hidden": 16}
    other["train"]["init"] = str(first.best_path)
    with pytest.raises(ValueError, match="another network config"):
        train(other)


def test_change_term_trains_logs_and_resumes(tmp_path: Path) -> None:
    """loss.w_change > 0: each batch also goes through the net with a focal PET change; the term is logged, the
    draws are reproducible under the seed, and their generator is saved for resume."""
    data = _fake_hmif(tmp_path)

    def cfg(out: str, epochs: int) -> dict:
        c = _config(data, tmp_path / out, epochs=epochs)
        c["train"].update(steps_per_epoch=1, num_threads=1)
        c["loss"] = {"w_change": 5.0, "change_size_mm": [4.0, 8.0], "change_min_pet": 0.2}
        return c

    first = train(cfg("a", 1))
    again = train(cfg("b", 1))
    assert first.history[0]["train_change"] > 0 and first.history[0] == {**again.history[0],
                                                                          "seconds": first.history[0]["seconds"]}
    assert "train_change" in next(csv.DictReader(open(tmp_path / "a" / "log.csv")))
    state = torch.load(first.last_path, weights_only=False)
    assert isinstance(state["change_rng"], torch.Tensor)
    assert load_weights(first.best_path)["meta"]["config"]["loss"]["w_change"] == 5.0
    resumed = train(cfg("a", 2), resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2] and resumed.history[1]["train_change"] > 0
    bad = cfg("c", 1)
    bad["loss"]["w_change"] = -1.5
    with pytest.raises(ValueError, match=r"'w_change': -1.5"):
        train(bad)
    bad["loss"] = {"w_change": 1.0, "change_fraction": [0.5, 0.2]}
    with pytest.raises(ValueError, match=r"change_fraction .*\[0.5, 0.2\]"):
        train(bad)


def test_resolve_config_takes_the_change_keys() -> None:
    keys = {"w_change": 2.0, "change_size_mm": [6, 20], "change_fraction": [0.15, 0.4], "change_raise": 0.25,
            "change_voxel_mm": 1.4, "change_min_pet": 0.2}
    assert resolve_config({"data": {"path": "x"}, "loss": keys})["loss"] == keys
    with pytest.raises(ValueError, match=r"\['change_size'\] in loss"):
        resolve_config({"data": {"path": "x"}, "loss": {"change_size": 5}})


def test_batch_loss_gives_the_change_term_the_batch_voxel_sizes() -> None:
    """With ``loss.change_grid_mm`` the change term sizes its PET changes from the batch's ``spacing``: a coarser
    grid gives a different loss for the same crop; a batch without it is refused, not sized in 1 mm voxels."""
    from asfe3d.losses import ASFEFusionLoss
    from asfe3d.training import engine

    torch.manual_seed(0)
    x = torch.rand(2, 2, 12, 12, 12)
    model = torch.nn.Conv3d(2, 1, 3, padding=1)  # a blur: how much of a change it keeps depends on its size
    loss_fn = ASFEFusionLoss(3, w_change=1.0, change_grid_mm=True, change_size_mm=(4.0, 4.0))

    def loss(spacing):
        return float(engine._batch_loss(model, loss_fn, x, False, torch.Generator().manual_seed(1), spacing))

    fine, coarse = loss(torch.ones(2, 3)), loss(torch.full((2, 3), 2.0))
    assert fine == loss(torch.ones(2, 3)) and fine != coarse
    with pytest.raises(ValueError, match="change_grid_mm needs each item's voxel size"):
        loss(None)


def test_an_interrupted_run_resumed_is_the_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped after epoch 1 (its last.pt written) and resumed: the same losses and weights as a run never stopped
    (the sampler's generator is saved and put back, not seeded again). It is stopped while epoch 2's files are
    written, before its last.pt (probe 48 #3: last.pt was written first, so a kill before best.pt left a stale
    best.pt that the resume, finding every epoch done, refused to mend)."""
    import asfe3d.training.engine as engine

    data = _fake_hmif(tmp_path)
    straight = train(_config(data, tmp_path / "a", epochs=2))
    plot = engine._plot

    def stop_once(history, out):
        if len(history) < 2:
            return plot(history, out)
        monkeypatch.setattr(engine, "_plot", plot)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_plot", stop_once)
    with pytest.raises(KeyboardInterrupt):
        train(_config(data, tmp_path / "b", epochs=2))
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["epoch"] == 1
    resumed = train(_config(data, tmp_path / "b", epochs=2), resume=True)
    keep = ("train_loss", "val_loss", "lr")
    assert [{k: h[k] for k in keep} for h in resumed.history] == [{k: h[k] for k in keep} for h in straight.history]
    a = torch.load(straight.last_path, weights_only=False)["net"]
    b = torch.load(resumed.last_path, weights_only=False)["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    best_a = torch.load(straight.best_path, weights_only=False)
    best_b = torch.load(resumed.best_path, weights_only=False)
    assert best_a["meta"]["best_epoch"] == best_b["meta"]["best_epoch"]
    # probe 48 #4: the resumed run's provenance keeps both calls (it held only the last command)
    runs = best_b["meta"]["runs"]
    assert [(r["from_epoch"], r["epochs"]) for r in runs] == [(0, 2), (1, 2)] and len(best_a["meta"]["runs"]) == 1
    assert all(r["working_directory"] and "git_local_changes" in r for r in runs)
    assert all(torch.equal(best_a["state_dict"][k], best_b["state_dict"][k]) for k in best_a["state_dict"])


def test_pairs_source_trains_on_the_users_own_volumes_with_whole_subjects_held_out(demo_files, tmp_path: Path) -> None:
    """``data.source: pairs``: a pairs CSV (subject, mri, pet), prepared by the command's chain; the last subject (or
    the named ones) held out for validation; the run's provenance names both sides."""
    from tests.conftest import make_cohort

    csv_path = make_cohort(tmp_path / "cohort", demo_files, 3, distinct=True)
    cfg = {"spatial_dims": 3, "preset": "efficient",
           "data": {"source": "pairs", "path": str(csv_path), "crop": [16, 16, 16], "length": 2, "val_length": 1},
           "train": {"epochs": 1, "batch_size": 2, "lr": 1e-3, "seed": 0, "device": "cpu", "num_threads": 1},
           "out": str(tmp_path / "run")}
    result = train(cfg, command="pytest")
    assert np.isfinite(result.final_train_loss) and np.isfinite(result.best_val_loss)
    data = load_weights(result.best_path)["meta"]["data"]
    assert data["source"] == "pairs" and data["train"] == ["sub01", "sub02"] and data["val"] == ["sub03"]
    # one prepared pair per subject (named by content: the demo copies, identical before, shared one)
    assert sorted(p.suffix for p in (tmp_path / "run" / "prepared_pairs").iterdir()) == [".json"] * 3 + [".npy"] * 6
    import asfe3d.data.pairs as pairs

    def no_registration(*args, **kwargs):
        raise AssertionError("a resumed run registered its pairs again")

    with pytest.MonkeyPatch.context() as mp:  # the resumed run reads the prepared pairs from the run folder
        mp.setattr(pairs, "prepare_pair", no_registration)
        resumed = train({**cfg, "train": {**cfg["train"], "epochs": 2}}, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    named = resolve_config({**cfg, "data": {**cfg["data"], "val_subjects": ["sub01"]}})
    from asfe3d.training.engine import split_subjects

    rows = [{"subject": s} for s in ("sub01", "sub02", "sub03")]
    assert split_subjects(rows, named["data"]["val_subjects"], 0.2) == (rows[1:], rows[:1])


@pytest.mark.parametrize("data, match", [
    ({}, r"data.path \(the pairs CSV: subject, mri, pet\) is required"),
    ({"path": "x.csv", "crop": [16, 16]}, r"data.crop must be 3 integers >= 8 \(spatial_dims 3; 2D: the axial plane\), "
                                          r"got \[16, 16\]"),
    ({"path": "x.csv", "registration": "elastic"}, "data.registration must be one of .* got 'elastic'"),
    ({"path": "x.csv", "val_subjects": "sub01"}, "data.val_subjects must be null or a non-empty list of subject "
                                                 "names, got 'sub01'"),
    ({"path": "x.csv", "val_fraction": 1.0}, r"data.val_fraction must be a number in \(0, 1\), got 1.0"),
    ({"path": "x.csv", "flip": "yes"}, "data.flip must be true or false, got 'yes'"),
    ({"path": "x.csv", "anatomies": ["otsu"]}, r"unknown config key\(s\) \['anatomies'\] in data \(source 'pairs'\)"),
])
def test_pairs_source_bad_config_is_one_config_error(data, match) -> None:
    from asfe3d.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        resolve_config({"spatial_dims": 3, "data": {"source": "pairs", **data}})


def test_pairs_split_refuses_unknown_names_and_an_empty_side() -> None:
    from asfe3d.errors import ConfigError
    from asfe3d.training.engine import split_subjects

    rows = [{"subject": "a"}, {"subject": "b"}]
    with pytest.raises(ConfigError, match=r"names subjects the pairs CSV does not hold: \['c'\]"):
        split_subjects(rows, ["c"], 0.2)
    with pytest.raises(ConfigError, match="give 0 for training and 2 for validation"):
        split_subjects(rows, ["a", "b"], 0.2)


def test_pairs_crop_defaults_to_the_networks_dimension_and_epoch_drawing_datasets_get_fresh_workers() -> None:
    """The 2D pairs config's default crop was 3D (refused, quoting a value the user never wrote); workers kept
    across epochs never saw ``set_epoch``: a dataset that draws per epoch would repeat epoch 0's items."""
    from asfe3d.training.engine import _loaders

    assert resolve_config({"spatial_dims": 2, "data": {"source": "pairs", "path": "p.csv"}})["data"]["crop"] == [64, 64]
    assert resolve_config({"spatial_dims": 3, "data": {"source": "pairs", "path": "p.csv"}})["data"]["crop"] == [64] * 3

    class Plain(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict:
            return {"image": torch.zeros(2, 8, 8)}

    class PerEpoch(Plain):
        def set_epoch(self, epoch: int) -> None:
            pass

    from asfe3d.distributed import DistInfo

    t = {**resolve_config({"data": {"path": "hmif"}})["train"], "num_workers": 1, "batch_size": 2}
    single = DistInfo()
    assert _loaders(Plain(), Plain(), t, single)[0].persistent_workers
    assert not _loaders(PerEpoch(), Plain(), t, single)[0].persistent_workers


def test_a_resume_on_other_volumes_under_the_same_names_is_refused_before_any_pair_is_prepared(
        demo_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run records what each subject's files hold: the same names pointing at other volumes were taken (the
    best epoch then chosen across different validation volumes); the refusal comes before the pairs are read and
    registered."""
    import nibabel as nib

    from asfe3d.data.pairs import VolumePairDataset
    from asfe3d.errors import Asfe3dInputError
    from tests.conftest import make_cohort

    csv_path = make_cohort(tmp_path / "cohort", demo_files, 3, distinct=True)
    cfg = {"spatial_dims": 3,
           "data": {"source": "pairs", "path": str(csv_path), "crop": [16, 16, 16], "length": 2, "val_length": 1},
           "train": {"epochs": 1, "batch_size": 2, "seed": 0, "device": "cpu", "num_threads": 1},
           "out": str(tmp_path / "run")}
    first = train(cfg)
    files = load_weights(first.best_path)["meta"]["data"]["files"]
    assert sorted(files) == ["sub01", "sub02", "sub03"] and len(files["sub01"]["mri"]) == 64
    mri = tmp_path / "cohort" / "sub03" / "mri.nii.gz"
    img = nib.load(str(mri))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) * 2.0, img.affine), str(mri))  # another volume, same name
    prepared = []
    monkeypatch.setattr(VolumePairDataset, "prepare", lambda self: prepared.append(self))
    with pytest.raises(Asfe3dInputError, match=r"was trained on other data: files.sub03.mri was '[0-9a-f]{64}'"):
        train({**cfg, "train": {**cfg["train"], "epochs": 2}}, resume=True)
    assert prepared == []


def test_pairs_split_refuses_a_file_shared_across_the_split_and_names_the_csv(tmp_path: Path) -> None:
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.training.engine import split_subjects

    rows = [{"subject": "a", "mri": tmp_path / "a_mri", "pet": tmp_path / "pet"},
            {"subject": "b", "mri": tmp_path / "b_mri", "pet": tmp_path / "pet"}]
    with pytest.raises(Asfe3dInputError, match="validation subject 'b' and training subject 'a' share the PET"):
        split_subjects(rows, None, 0.2, tmp_path / "pairs.csv")
    with pytest.raises(Asfe3dInputError, match=r"pairs.csv: its 1 subject\(s\) give 0 for training and 1"):
        split_subjects(rows[:1], None, 0.2, tmp_path / "pairs.csv")


def test_too_few_items_for_one_batch_is_refused_with_the_config() -> None:
    from asfe3d.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no full training batch: data.length 1 items with train.batch_size 2"):
        resolve_config({"spatial_dims": 3, "data": {"source": "pairs", "path": "p.csv", "length": 1},
                        "train": {"batch_size": 2}})


def test_a_template_mri_may_be_shared_across_the_split_a_pet_not(tmp_path: Path) -> None:
    from asfe3d.training.engine import split_subjects

    rows = [{"subject": s, "mri": tmp_path / "mni_t1", "pet": tmp_path / f"{s}_pet"} for s in ("a", "b", "c")]
    assert split_subjects(rows, None, 0.2, tmp_path / "pairs.csv") == (rows[:2], rows[2:])


def test_resume_as_a_word(tmp_path: Path) -> None:
    """Probe 40 #3: a bundle's ``--resume false`` reached ``train`` as the truthy string 'false' and resumed."""
    data = _fake_hmif(tmp_path)
    with pytest.raises(Asfe3dInputError, match="resume asked for but the file does not exist"):
        train(_config(data, tmp_path / "run", epochs=1), resume="true")
    with pytest.raises(Asfe3dInputError, match="resume: must be True or False, got 'no'"):
        train(_config(data, tmp_path / "run", epochs=1), resume="no")
    assert not (tmp_path / "run").exists()


def test_resume_false_as_a_word_starts_no_resume(tmp_path: Path) -> None:
    """Review 43 #10: "false" must mean a new run: in a folder that holds an earlier run's last.pt a new run is
    refused (as it is for False), where the truthy string resumed it."""
    data = _fake_hmif(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"an earlier run")
    with pytest.raises(Asfe3dInputError) as words:
        train(_config(data, run, epochs=1), resume="false")
    with pytest.raises(Asfe3dInputError) as plain:
        train(_config(data, run, epochs=1), resume=False)
    assert str(words.value) == str(plain.value) and "resume asked for" not in str(plain.value)


def test_pairs_split_refuses_a_pet_copied_under_another_name(tmp_path: Path) -> None:
    """Probe 48 #1: a training subject's PET copied under a new name and listed as the held-out subject trained and
    validated on the same volume (only resolved paths were compared)."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.training.engine import split_subjects

    rows = [{"subject": s, "mri": tmp_path / f"{s}_mri", "pet": tmp_path / f"{s}_pet", "pet_sha256": digest}
            for s, digest in (("a", "1" * 64), ("b", "2" * 64), ("held", "1" * 64))]
    with pytest.raises(Asfe3dInputError, match=r"validation subject 'held' and training subject 'a' share one PET: "
                                               r".*held_pet' holds the bytes of .*a_pet'"):
        split_subjects(rows, ["held"], 0.2, tmp_path / "pairs.csv")
    rows[2]["pet_sha256"] = "3" * 64
    assert split_subjects(rows, ["held"], 0.2, tmp_path / "pairs.csv") == (rows[:2], rows[2:])


def test_wholehead_validation_holds_out_people_not_names(caplog) -> None:
    """Probe 48 #2: ``bert_synth`` (bert's labels in new contrasts) validated a network trained on ``bert`` (names
    were compared); training on ``otsu``, the person the shipped weights were chosen on, said nothing."""
    import logging

    with pytest.raises(ValueError, match=r"both hold \['bert_synth'\]; bert_synth and bert are one person"):
        resolve_config({"spatial_dims": 3, "data": {"source": "wholehead", "path": "x", "anatomies": ["bert", "gd"],
                                                    "val_anatomies": ["bert_synth"]}})
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        resolve_config({"spatial_dims": 3, "data": {"source": "wholehead", "path": "x", "anatomies": ["gd"],
                                                    "val_anatomies": ["bert_synth"]}})
        assert "otsu" not in caplog.text
        resolve_config({"spatial_dims": 3, "data": {"source": "wholehead", "path": "x", "anatomies": ["otsu", "gd"],
                                                    "val_anatomies": ["bert"]}})
    assert "data.anatomies trains on otsu, the person the shipped weights were chosen on" in caplog.text


@pytest.mark.parametrize("section, key, value, match", [
    ("train", "seed", "abc", r"train.seed must be an integer, got 'abc'"),
    ("train", "seed", 1.5, r"train.seed must be an integer, got 1.5"),
    ("train", "epochs", True, r"train.epochs must be an integer >= 1, got True"),
    ("train", "batch_size", True, r"train.batch_size must be an integer >= 1, got True"),
    ("train", "amp", "maybe", r"train.amp must be true or false, got 'maybe'"),
    ("train", "device", "gpu", r"train.device must be 'auto', 'cpu', 'cuda\[:N\]' or a torch.device, got 'gpu'"),
    ("train", "device", " cpu", r"train.device must be .* got ' cpu'"),
    ("train", "min_lr", 1.0, r"train.min_lr \(1.0\) must not exceed train.lr \(0.002\)"),
    ("data", "val_crop", -5, r"data.val_crop must be null \(the training crop\) or an integer >= 8, got -5"),
    ("data", "val_limit", 0, r"data.val_limit must be null \(every validation image\) or an integer >= 1, got 0"),
    ("data", "crop", "big", r"data.crop must be an integer >= 8 or \[height, width\], got 'big'"),
    ("data", "crop", 0, r"data.crop must be an integer >= 8 or \[height, width\], got 0"),
    ("data", "task", "XX-MRI", r"data.task must be one of \['CT-MRI', 'PET-MRI', 'SPECT-MRI'\], got 'XX-MRI'"),
    (None, "out", None, r"out \(the run folder; CLI: --out\) must be a path, got None"),
])
def test_values_that_crashed_or_ran_as_something_else_are_refused(section, key, value, match) -> None:
    """Probe 48 #6-#7: these gave a traceback when used, or ran silently as another value (``epochs: true`` one
    epoch, ``amp: maybe`` true, ``min_lr`` above ``lr`` a schedule climbing to it, ``val_limit: 0`` every image)."""
    from asfe3d.errors import ConfigError

    cfg: dict = {"spatial_dims": 2, "data": {"source": "hmif", "path": "x"}}
    if section is None:
        cfg[key] = value
    else:
        cfg.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError, match=match):
        resolve_config(cfg)


def test_a_network_override_names_the_preset_setting_it_clashes_with() -> None:
    from asfe3d.errors import ConfigError
    from asfe3d.training.engine import _check_network_and_loss

    cfg = resolve_config({"spatial_dims": 2, "data": {"source": "hmif", "path": "x"},
                          "network": {"encoder_channels": [8]}})
    with pytest.raises(ConfigError, match=r"fusion needs one mode per scale, as encoder_channels has \(1\), got "
                                          r".* \(the preset's: set fusion too\)"):
        _check_network_and_loss(cfg)


def test_a_cuda_device_without_cuda_is_refused_in_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from asfe3d.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"train.device 'cuda:1' requested but CUDA is not available"):
        resolve_config({"spatial_dims": 2, "data": {"source": "hmif", "path": "x"}, "train": {"device": "cuda:1"}})
    base = {"spatial_dims": 2, "data": {"source": "hmif", "path": "x"}}
    assert resolve_config({**base, "train": {"amp": "false"}})["train"]["amp"] is False  # the bundle's word
    assert resolve_config({**base, "train": {"device": torch.device("cpu")}})["train"]["device"] == torch.device("cpu")


def test_a_run_says_what_it_trains_before_the_first_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Probe 48 #11: a 3D run printed nothing for minutes (its subjects being made) before the first epoch's line."""
    train(_config(_fake_hmif(tmp_path), tmp_path / "o", epochs=1))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "training epochs 1-1, 3 steps of 2 each, on cpu" and out[1].startswith("epoch 1/1: train ")


def test_a_run_resumed_from_a_checkpoint_without_runs_says_its_first_calls_are_unknown(monkeypatch) -> None:
    """Review 49 #7: a last.pt written before ``runs`` was recorded: the resume read as the run's first call, and a
    fine-tune's starting weights as none."""
    from asfe3d.training.engine import _command_text, _earlier_runs

    old = {"epoch": 3, "config": {"train": {"init": "runs/init/rr_g0.pt"}}}
    runs = _earlier_runs(old)
    assert len(runs) == 1 and runs[0]["unrecorded"].startswith("trained before asfe3d recorded its calls")
    assert runs[0]["epochs"] == 3 and runs[0]["init"] == {"path": "runs/init/rr_g0.pt"}
    assert _earlier_runs({"runs": [{"command": "x"}]}) == [{"command": "x"}]
    assert _command_text("given") == "given"
    monkeypatch.setattr(sys, "argv", ["/bin/prog", "--data", "my data"])
    assert _command_text(None) == "prog --data 'my data'"  # quoted as a shell reads it (review 49 #8)
