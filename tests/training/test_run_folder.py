"""``asfe3d train``: the run folder, resume and argument checks, all before any data is made."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asfe3d.errors import Asfe3dInputError
from asfe3d.training import train
from asfe3d.training.cli import main
from tests.training.test_engine import _config, _fake_hmif


def _tiny(data: Path, out: Path, epochs: int = 1) -> dict:
    cfg = _config(data, out, epochs=epochs)
    cfg["train"].update(steps_per_epoch=1, num_threads=1)
    return cfg


def test_new_run_never_replaces_files_in_its_folder(tmp_path: Path) -> None:
    """A user's own log.csv (or an earlier run's best.pt) in --out was replaced silently by a new run."""
    data = _fake_hmif(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.csv").write_text("my notes\n")
    with pytest.raises(Asfe3dInputError, match=r"run: already holds log.csv .*--resume") as info:
        train(_tiny(data, out))
    assert "in the MONAI bundle: --resume True, or another --output_dir" in str(info.value)  # its keys
    assert (out / "log.csv").read_text() == "my notes\n" and not (out / "best.pt").exists()
    done = train(_tiny(data, tmp_path / "earlier"))
    before = done.best_path.read_bytes()
    with pytest.raises(Asfe3dInputError, match=r"already holds last.pt, best.pt, log.csv, loss.png"):
        train(_tiny(data, tmp_path / "earlier"))
    assert done.best_path.read_bytes() == before


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    """A changed learning rate or crop on --resume was used (crop) or silently overridden by the saved scheduler
    (lr) instead of being refused."""
    data = _fake_hmif(tmp_path)
    train(_tiny(data, tmp_path / "run"))
    changed = _tiny(data, tmp_path / "run", epochs=2)
    changed["train"]["lr"] = 0.5
    with pytest.raises(Asfe3dInputError, match=r"last.pt: was trained with train.lr = 0.005, the configuration now "
                                               r"gives 0.5"):
        train(changed, resume=True)
    changed = _tiny(data, tmp_path / "run", epochs=2)
    changed["data"]["crop"] = 16
    with pytest.raises(Asfe3dInputError, match=r"data.crop = 32, .* gives 16"):
        train(changed, resume=True)
    ok = _tiny(data, tmp_path / "run", epochs=2)
    ok["train"]["num_threads"] = 2  # threads, device, epochs and data.path may change
    assert train(ok, resume=True).epochs_run == 2


def test_resume_on_other_data_is_refused_but_a_moved_copy_resumes(tmp_path: Path) -> None:
    """data.path may change on --resume for a moved copy; another data set (a SPECT-MRI folder for a PET-MRI run,
    other pairs) was taken silently, and best.pt then said it was trained on it."""
    import shutil

    data = _fake_hmif(tmp_path / "a")
    train(_tiny(data, tmp_path / "run"))
    other = _fake_hmif(tmp_path / "b", n=10)  # more pairs: another split
    with pytest.raises(Asfe3dInputError, match=r"last.pt: was trained on other data: n_pairs was 8, the data given "
                                               r"now have 10; --data may name a moved copy"):
        train(_tiny(other, tmp_path / "run", epochs=2), resume=True)
    moved = tmp_path / "moved" / "PET-MRI"
    shutil.copytree(data, moved)
    assert train(_tiny(moved, tmp_path / "run", epochs=2), resume=True).epochs_run == 2


def test_resume_to_more_epochs_replans_the_cosine(tmp_path: Path) -> None:
    """Resumed to more epochs, the saved cosine (planned for the old total) climbed back up to train.lr; it now
    follows the cosine of the new total to train.min_lr."""
    data = _fake_hmif(tmp_path)
    first = train(_tiny(data, tmp_path / "run", epochs=2))
    assert first.history[-1]["lr"] == pytest.approx(1e-5)
    resumed = train(_tiny(data, tmp_path / "run", epochs=4), resume=True)
    lrs = [h["lr"] for h in resumed.history]
    fresh = [h["lr"] for h in train(_tiny(data, tmp_path / "fresh", epochs=4)).history]
    assert lrs[2:] == pytest.approx(fresh[2:]) and lrs[-1] == pytest.approx(1e-5)


def test_resume_checks_last_pt_and_init_before_any_data(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_text("not a checkpoint")
    no_data = tmp_path / "no-data"  # the refusal comes before the data is looked at
    with pytest.raises(Asfe3dInputError, match=r"last.pt: not a checkpoint of asfe3d train"):
        train(_tiny(no_data, out, epochs=2), resume=True)
    cfg = _tiny(no_data, tmp_path / "init")
    cfg["spatial_dims"] = 2
    shipped3d = Path(__file__).resolve().parents[2] / "asfe3d" / "weights" / "asfe3d_mri_pet.pt"
    cfg["train"]["init"] = str(shipped3d)
    with pytest.raises(ValueError, match=r"holds another network config \(spatial_dims = 3, .* has 2\)"):
        train(cfg)


def test_cli_mistakes_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {source: hmif}\ntrain: {epochs: 1}\n")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cases = [
        (["--config", str(cfg), "--epochs", "x"], "argument --epochs: invalid int value: 'x' (see asfe3d train --help)"),
        (["--config", str(cfg), "--bogus"], "unrecognized arguments: --bogus"),
        (["--config", str(cfg), "--data", "x", "--out", str(blocker)], f"{blocker}: the run folder (--out / out) is a file"),
        (["--config", str(cfg), "--data", "x", "--out", str(blocker / "sub")], f"{blocker / 'sub'}: cannot create the run folder"),
        (["--config", str(cfg), "--data", "x", "--epochs", "0"], f"{cfg}: train.epochs must be an integer >= 1"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("asfe3d: error: ") and expected in err and err.count("\n") == 1, err


def test_checkpoint_from_another_architecture_is_refused(tmp_path: Path) -> None:
    data = _fake_hmif(tmp_path)
    first = train(_tiny(data, tmp_path / "run"))
    state = torch.load(first.last_path, weights_only=False)
    other = _tiny(data, tmp_path / "run", epochs=2)
    other["network"] = {"expert_hidden": 16}
    with pytest.raises(Asfe3dInputError, match=r"was trained with network.expert_hidden = \(not set\)"):
        train(other, resume=True)
    assert state["epoch"] == 1


def test_outputs_leave_the_plot_backend_alone_and_share_one_mode(tmp_path: Path) -> None:
    """The loss plot switched the process to ``matplotlib.use("Agg")`` (a notebook calling ``train`` lost its inline
    backend) and was written in place (a partial loss.png on Ctrl-C); last.pt and log.csv were 0600, best.pt 0644."""
    import os

    import matplotlib

    data = _fake_hmif(tmp_path)
    backend = matplotlib.get_backend()
    matplotlib.rcParams["backend"] = "svg"
    try:
        result = train(_tiny(data, tmp_path / "run"))
        assert matplotlib.get_backend().lower() == "svg"
    finally:
        matplotlib.rcParams["backend"] = backend
    mask = os.umask(0o022)
    os.umask(mask)
    modes = {n: (result.out_dir / n).stat().st_mode & 0o777 for n in ("last.pt", "best.pt", "log.csv", "loss.png")}
    assert set(modes.values()) == {0o666 & ~mask}, modes
    assert not [p for p in result.out_dir.iterdir() if p.name.startswith(".")]


def test_resume_of_a_run_saved_before_a_config_key_existed(tmp_path: Path) -> None:
    """A last.pt whose saved configuration lacks a key added later (here data.val_limit) is resumed: the key takes
    its default, as it did then."""
    data = _fake_hmif(tmp_path)
    first = train(_tiny(data, tmp_path / "run"))
    state = torch.load(first.last_path, weights_only=False)
    del state["config"]["data"]["val_limit"]
    torch.save(state, first.last_path)
    assert train(_tiny(data, tmp_path / "run", epochs=2), resume=True).epochs_run == 2


def test_data_for_a_simulated_config_names_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--data with a data.source simulated config said "unknown config key(s) ['path'] in data" of the YAML."""
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("spatial_dims: 3\ndata: {source: simulated}\n")
    assert main(["--config", str(cfg), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asfe3d: error: --data: ") and "simulated" in err and err.count("\n") == 1


def test_malformed_config_sections_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``train:`` left empty, ``data: [1, 2]`` or ``train: 5`` ended in a TypeError traceback."""
    for text, expected in (("data: [1, 2]\n", "data must be a mapping of settings"),
                           ("train: 5\n", "train must be a mapping of settings"),
                           ("data: {source: hmif}\ntrain:\n", "train.epochs must be an integer")):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(text)
        assert main(["--config", str(cfg), "--epochs", "0", "--data", "x", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("asfe3d: error: ") and expected in err and err.count("\n") == 1, err


def test_a_run_refused_for_its_data_leaves_no_folder(tmp_path: Path) -> None:
    """--data pointing nowhere: refused, and the run folder it would have made is not left behind empty (a folder
    that existed before is kept)."""
    out = tmp_path / "deep" / "run"
    with pytest.raises(Asfe3dInputError):
        train(_tiny(tmp_path / "nowhere", out))
    assert not out.exists()
    out.mkdir(parents=True)
    with pytest.raises(Asfe3dInputError):
        train(_tiny(tmp_path / "nowhere", out))
    assert out.is_dir()


def test_a_diverging_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A NaN loss ended in a FloatingPointError traceback (exit 1, with a torch warning on stderr)."""
    import yaml

    data = _fake_hmif(tmp_path)
    cfg = _tiny(data, tmp_path / "run")
    cfg["train"].update(lr=1e30, grad_clip=0, steps_per_epoch=3)
    path = tmp_path / "diverge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "diverge.yaml: training diverged (non-finite training loss" in err, err


def test_config_mistakes_are_one_line_and_a_bug_keeps_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Review 32 #1: every ValueError of a whole training run was printed as a mistake in the config file (exit 2,
    no traceback), a bug in the data code included; an empty validation set was found after a whole epoch. Now a
    config mistake (also one the datasets refuse, or an empty validation set) is one line naming the file before
    any training, and anything else keeps its traceback."""
    import yaml

    import asfe3d.training.engine as engine

    data = _fake_hmif(tmp_path)
    cfg = tmp_path / "c.yaml"
    # (probe 48 #9: the messages now name the key: "split gives 8 train and 0 val" named only the data folder)
    for extra, expected in (({"val_fraction": 0.1, "gap": 7}, "PET-MRI: data.val_fraction 0.1 and data.gap 7 split its 8 "
                             "pairs into 8 for training and 0 for validation"),
                            ({"val_fraction": 0.0}, f"{cfg}: data.val_fraction must be a number in (0, 1), got 0.0"),
                            ({"val_fraction": 1.5}, f"{cfg}: data.val_fraction must be a number in (0, 1), got 1.5")):
        cfg.write_text(yaml.safe_dump(_tiny(data, tmp_path / "o") | {"data": _tiny(data, tmp_path)["data"] | extra}))
        monkeypatch.setattr(engine, "_train_epoch", lambda *a, **k: pytest.fail("trained before the refusal"))
        assert main(["--config", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("asfe3d: error: ") and expected in err and err.count("\n") == 1, err

    def bug(*args, **kwargs):
        raise ValueError("an internal mistake")

    cfg.write_text(yaml.safe_dump(_tiny(data, tmp_path / "o2")))
    monkeypatch.setattr(engine, "_train_epoch", bug)
    with pytest.raises(ValueError, match="an internal mistake"):
        main(["--config", str(cfg)])


def test_a_missing_config_is_refused_before_torch_is_imported(tmp_path: Path) -> None:
    """The config file is read before the training engine (torch, ~2.7 s) is imported."""
    import subprocess
    import sys

    code = ("import sys; from asfe3d.training.cli import main; rc = main(['--config', sys.argv[1]]); "
            "print(rc, 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none.yaml")], capture_output=True, text=True,
                         timeout=120)
    assert run.stdout.split() == ["2", "False"], (run.stdout, run.stderr)
    assert run.stderr == f"asfe3d: error: {tmp_path / 'none.yaml'}: config file not found\n"


def test_a_saved_config_this_version_cannot_read_is_said_on_resume(tmp_path: Path) -> None:
    """A last.pt whose saved configuration no longer resolves was compared as saved: the refusal named a setting as
    "(not set)". It now says the saved configuration cannot be resumed, and why."""
    data = _fake_hmif(tmp_path)
    first = train(_tiny(data, tmp_path / "run"))
    state = torch.load(first.last_path, weights_only=False)
    state["config"]["train"]["lr"] = -1.0
    torch.save(state, first.last_path)
    with pytest.raises(Asfe3dInputError, match=r"last\.pt: its saved configuration is not one this version can "
                                               r"resume \(train\.lr must be a finite number >= 0, got -1\.0\)"):
        train(_tiny(data, tmp_path / "run", epochs=2), resume=True)


def test_network_and_loss_mistakes_are_one_line_before_any_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Review 36 #1: a bad preset, network override or loss value was the network's or the loss's own ValueError,
    after the datasets were built; with ConfigError the CLI then showed a traceback. They are one line naming the
    config file, found before any data is made."""
    import yaml

    import asfe3d.training.engine as engine

    data = _fake_hmif(tmp_path)
    cfg = tmp_path / "c.yaml"
    monkeypatch.setattr(engine, "build_datasets", lambda *a, **k: pytest.fail("data made before the refusal"))
    for extra, expected in (({"preset": "giant"}, "preset / network: "),
                            ({"network": {"encoder_channels": [8.5, 16]}}, "preset / network: encoder_channels"),
                            ({"loss": {"w_ssim": -1}}, "loss: "),
                            # with train.init, the network was first built to check the weight file: its ValueError
                            ({"network": {"encoder_channels": [8.5, 16]}, "init": True}, "preset / network: ")):
        config = _tiny(data, tmp_path / "o") | {k: v for k, v in extra.items() if k != "init"}
        if extra.get("init"):
            from asfe3d.fusion.weights import shipped_weights

            config["train"]["init"] = str(shipped_weights("image"))
        cfg.write_text(yaml.safe_dump(config))
        assert main(["--config", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"asfe3d: error: {cfg}: ") and expected in err and err.count("\n") == 1, err
