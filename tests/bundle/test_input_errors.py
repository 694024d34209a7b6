"""Bad input values of the bundle (``--registration bogus``, ``--qc sloppy``, a missing ``--datalist`` or
``--ckpt_path``, an ``--output_dir`` that cannot be written): one line ``asfe3d: error: <file or option>: <problem>``
and exit code 2 from ``python -m monai.bundle run``, before anything runs (no traceback, no output folder)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundle.cli_runs import one_error_line, started

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "asfe3d_mri_pet_fusion"
CONFIGS = BUNDLE / "configs"
INFERENCE = str(CONFIGS / "inference.json")
SLICE = [INFERENCE, str(CONFIGS / "inference_slice.json")]

#: (override, value, the problem the one line must hold); ``{t}`` is the test's folder
BAD_VALUES = [
    ("registration", "bogus", "registration: must be one of ('auto', 'rigid', 'affine', 'deformable', 'none'), "
                              "got 'bogus'"),
    ("qc", "sloppy", "qc: must be one of ('warn', 'strict'), got 'sloppy'"),
    ("datalist", "nope.csv", "nope.csv: datalist does not exist"),
    ("ckpt_path", "/nonexistent.pt", "/nonexistent.pt: checkpoint (--ckpt_path) does not exist"),
]


def _datalist(tmp_path: Path) -> Path:
    """A one-subject datalist whose inputs exist (their content is never read by the checks)."""
    for name in ("mri.nii.gz", "pet.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "datalist.csv"
    path.write_text("subject,mri,pet\nb1,mri.nii.gz,pet.nii.gz\n")
    return path


def _overrides(tmp_path: Path, **override) -> dict:
    return {"bundle_root": str(BUNDLE), "datalist": str(_datalist(tmp_path)), "output_dir": str(tmp_path / "out"),
            "device": "cpu", **override}


def test_input_errors_accepts_good_values(tmp_path):
    from asfe3d.bundle import check_overrides, input_errors

    assert input_errors(INFERENCE, _overrides(tmp_path)) == []
    assert input_errors(SLICE, _overrides(tmp_path, registration="none", qc="strict")) == []
    assert check_overrides(INFERENCE, _overrides(tmp_path), check_values=True) == []
    assert not (tmp_path / "out").exists()  # checked, not made
    # configs without those ids (training, evaluation) have nothing to check
    assert input_errors(str(CONFIGS / "evaluate.json"), {"bundle_root": str(BUNDLE)}) == []


@pytest.mark.parametrize("key, value, problem", BAD_VALUES)
def test_input_errors_names_the_bad_value(tmp_path, monkeypatch, key, value, problem):
    from asfe3d.bundle import check_overrides, input_errors
    from asfe3d.errors import Asfe3dInputError

    monkeypatch.chdir(tmp_path)
    errors = input_errors(INFERENCE, _overrides(tmp_path, **{key: value}))
    assert [str(e) for e in errors] == [problem]
    assert all(isinstance(e, Asfe3dInputError) for e in errors)
    with pytest.raises(Asfe3dInputError) as exc:
        check_overrides(INFERENCE, _overrides(tmp_path, **{key: value}), check_values=True)
    assert str(exc.value) == problem
    assert check_overrides(INFERENCE, _overrides(tmp_path, **{key: value})) == []  # values: command line only


def test_input_errors_output_dir_and_datalist_contents(tmp_path):
    from asfe3d.bundle import input_errors

    (tmp_path / "afile").write_text("x")
    errors = input_errors(INFERENCE, _overrides(tmp_path, output_dir=str(tmp_path / "afile" / "out")))
    assert len(errors) == 1 and "output folder (--output_dir)" in str(errors[0])
    assert "afile is a file where a folder is expected" in str(errors[0])
    errors = input_errors(INFERENCE, _overrides(tmp_path, output_dir="/proc/asfe3d-no-such/out"))
    assert len(errors) == 1 and str(errors[0]).startswith("/proc/asfe3d-no-such/out: output folder (--output_dir): "
                                                          "cannot write in /proc")
    errors = input_errors(INFERENCE, _overrides(tmp_path, ckpt_path=str(tmp_path)))
    assert [str(e) for e in errors] == [f"{tmp_path}: checkpoint (--ckpt_path) is a folder, not a file"]
    # the bundle's own 2D weights for the 3D config: one line before anything runs (a 269-line traceback, after
    # the first subject's registration); the 2D config takes them, and a file that is not a checkpoint is named
    two_d = str(BUNDLE / "models" / "model_2d.pt")
    errors = input_errors(INFERENCE, _overrides(tmp_path, ckpt_path=two_d))
    assert len(errors) == 1 and "does not fit network_def: " in str(errors[0])
    assert "the slice variant is inference_slice.json" in str(errors[0]) and "\n" not in str(errors[0])
    assert input_errors(SLICE, _overrides(tmp_path, ckpt_path=two_d)) == []
    errors = input_errors(INFERENCE, _overrides(tmp_path, ckpt_path=str(tmp_path / "mri.nii.gz")))
    assert len(errors) == 1 and "not a readable checkpoint" in str(errors[0])
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,mri,pet\nb1,mri.nii.gz,missing_pet.nii.gz\n")
    errors = input_errors(INFERENCE, _overrides(tmp_path, datalist=str(bad)))
    assert len(errors) == 1 and "subject 'b1': PET" in str(errors[0]) and "does not exist" in str(errors[0])
    # several bad values: each reported, in the order the run would meet them
    errors = input_errors(INFERENCE, _overrides(tmp_path, qc="sloppy", datalist="nope.csv"))
    assert [str(e).split(":")[0] for e in errors] == ["qc", "nope.csv"]


@pytest.fixture(scope="module")
def bad_value_runs(tmp_path_factory, demo_files):
    """Every ``BAD_VALUES`` command, and a cohort whose second MRI is cut short, started at once, each in its own
    folder (one after another they took ~70 s)."""
    runs = {}
    for key, value, _ in BAD_VALUES:
        folder = tmp_path_factory.mktemp(f"bad_{key}")
        runs[key] = (folder, ["--datalist", str(_datalist(folder)), "--output_dir", str(folder / "out"),
                              "--overwrite", "True", f"--{key}", value])
    folder = tmp_path_factory.mktemp("mid_run")
    datalist, broken = _cohort_with_a_truncated_mri(folder, demo_files)
    (folder / "broken.txt").write_text(str(broken))
    runs["mid_run"] = (folder, ["--datalist", str(datalist), "--output_dir", str(folder / "out")])
    yield from started(runs)


@pytest.mark.parametrize("key, value, problem", BAD_VALUES)
def test_bad_value_on_the_command_line_is_one_line(bad_value_runs, key, value, problem):
    """``python -m monai.bundle run ... --<key> <bad value>``: exit 2, one ``asfe3d: error:`` line, no traceback,
    nothing written (the check runs first in ``initialize``)."""
    assert one_error_line(*bad_value_runs[key]) == f"asfe3d: error: {problem}"


def _cohort_with_a_truncated_mri(tmp_path: Path, demo_files) -> tuple[Path, Path]:
    """Two subjects; the second one's MRI is cut short (it passes every check made before the run)."""
    from tests.conftest import make_cohort

    datalist = make_cohort(tmp_path / "data", demo_files, 2)
    broken = tmp_path / "data" / "sub02" / "mri.nii.gz"
    broken.write_bytes(broken.read_bytes()[:2000])
    return datalist, broken


def test_an_input_unreadable_mid_run_is_the_input_error_in_process(tmp_path, demo_files):
    """``monai.bundle.run(...)`` from Python: the Asfe3dInputError is the direct cause of the error that MONAI's
    config expression raises (not buried under the transforms' wrappers); the subject finished before it keeps its
    output."""
    from monai.bundle import run

    from asfe3d.errors import Asfe3dInputError

    datalist, broken = _cohort_with_a_truncated_mri(tmp_path, demo_files)
    with pytest.raises(RuntimeError) as info:
        run(config_file=INFERENCE, bundle_root=str(BUNDLE), datalist=str(datalist), output_dir=str(tmp_path / "out"),
            device="cpu")
    error = info.value.__cause__
    assert isinstance(error, Asfe3dInputError), repr(error)
    assert error.path == str(broken) and "cannot be read" in str(error)
    assert [p.name for p in (tmp_path / "out").glob("*.nii.gz")] == ["sub01_fused.nii.gz"]


def test_an_input_unreadable_mid_run_is_one_line_on_the_command_line(bad_value_runs):
    """``python -m monai.bundle run``: one ``asfe3d: error: <file>: <problem>`` line and exit 2, no traceback."""
    proc, folder = bad_value_runs["mid_run"]
    stdout, stderr = proc.communicate(timeout=600)
    broken = (folder / "broken.txt").read_text()
    assert proc.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    # nor on stdout, where the bundle's logging goes: MONAI's StatsHandler and ignite logged it there twice, with
    # its traceback (probe 40 #5: 136 lines before the one line)
    assert "Traceback" not in stdout and "terminating due to exception" not in stdout, stdout[-3000:]
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(f"asfe3d: error: {broken}: MRI NIfTI voxel data cannot be read")
    assert (folder / "out" / "sub01_fused.nii.gz").is_file()
    assert not (folder / "out" / "sub02_fused.nii.gz").exists()


def test_the_record_holds_the_steps_after_the_network_and_none_switches_one_off(tmp_path):
    """The bundle's record says which steps ran (so a rerun with --inferer#steps#... is another run), and '$None'
    switches a per-grid variant off from the command line (MONAI drops a plain None override)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.update({**_overrides(tmp_path), "inferer#steps#pet_consistency": 0,
                   "inferer#steps#pet_consistency_coarse": "$None", "inferer#steps#pet_consistency_fine": "$None"})
    steps = parser.get_parsed_content("bundle_record")["inferer_settings"]
    assert steps["pet_consistency"] == 0 and steps["pet_consistency_coarse"] is None
    assert steps["pet_consistency_fine"] is None and steps["detail_steer"] == 0.5


#: a value a component refuses when it is built: (override, as typed, as Python, the one line's problem)
COMPONENT_VALUES = [
    ("inferer#overlap", "1.5", 1.5, "--inferer#overlap 1.5: inferer: overlap must be a number in [0, 1), got 1.5"),
    ("num_workers", "-1", -1, "--num_workers -1: dataloader: num_workers option should be non-negative; use "
                              "num_workers=0 to disable multiprocessing."),
]


@pytest.mark.parametrize("key, typed, value, problem", COMPONENT_VALUES)
def test_a_value_a_component_refuses_is_one_line_before_anything_runs(tmp_path, key, typed, value, problem):
    """``--inferer#overlap 1.5``, ``--num_workers -1``: a 55-63-line traceback (exit 1) when the evaluator was built;
    now one line naming the override, exit 2, nothing written."""
    from asfe3d.bundle import input_errors

    assert [str(e) for e in input_errors(INFERENCE, _overrides(tmp_path, **{key: value}))] == [problem]
    if key != "inferer#overlap":  # the command line once is enough (a run costs its imports)
        return
    datalist = _datalist(tmp_path)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", INFERENCE, "--bundle_root", str(BUNDLE),
           "--datalist", str(datalist), "--output_dir", str(tmp_path / "out"), "--device", "cpu", f"--{key}", typed]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert [line for line in proc.stderr.splitlines() if "error" in line.lower()] == [f"asfe3d: error: {problem}"]
    assert not (tmp_path / "out").exists()


def test_a_refused_value_names_its_own_override_only(tmp_path):
    """``--inferer#roi_size [64,64,64] --inferer#overlap 1.5``: the line named both (and ``--device``); only the
    value the component quotes is named now."""
    from asfe3d.bundle import input_errors

    over = _overrides(tmp_path, **{"inferer#overlap": 1.5, "inferer#roi_size": [64, 64, 64]})
    assert [str(e) for e in input_errors(INFERENCE, over)] == [COMPONENT_VALUES[0][3]]


def test_an_empty_output_dir_is_refused_by_name(tmp_path):
    """``--output_dir "$OUT"`` with ``OUT`` unset: one line, not the ValueError deep in the dataset's expression."""
    from asfe3d.bundle import input_errors

    assert [str(e) for e in input_errors(INFERENCE, _overrides(tmp_path, output_dir=""))] == [
        "--output_dir: must name a folder, got ''"]


def test_monais_own_inferer_replaces_the_component(tmp_path):
    """Probe 40 #4: the README's ``--inferer '{"_target_": "SlidingWindowInferer", ...}'`` failed: ``settings`` and
    the record referred to ``@inferer#mode`` and ``@inferer#roi_size``, which MONAI's class has no key for."""
    from monai.bundle import ConfigParser
    from monai.inferers import SlidingWindowInferer

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.update({**_overrides(tmp_path), "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96],
                                                       "overlap": 0.25, "sw_batch_size": 4}})
    assert isinstance(parser.get_parsed_content("inferer"), SlidingWindowInferer)
    assert parser.get_parsed_content("settings").fusion.mode == "volume"
    record = parser.get_parsed_content("bundle_record")
    assert record["roi_size"] == [96, 96, 96] and record["inferer"] == "SlidingWindowInferer"
    ours = ConfigParser()
    ours.read_config(INFERENCE)
    ours.update({**_overrides(tmp_path), "inferer#roi_size": [64, 64, 64]})
    assert ours.get_parsed_content("bundle_record")["roi_size"] == [64, 64, 64]  # as recorded before
    one = ConfigParser()  # MONAI's inferer takes one number for every axis (review 43 #3: 'int' not iterable)
    one.read_config(INFERENCE)
    one.update({**_overrides(tmp_path), "inferer": {"_target_": "SlidingWindowInferer", "roi_size": 96}})
    assert one.get_parsed_content("bundle_record")["roi_size"] == 96


@pytest.mark.parametrize("word, meant", [("false", False), ("False", False), ("true", True)])
def test_a_switch_typed_as_a_word_means_what_it_says(word, meant):
    """Probe 40 #1: ``--overwrite false`` reached the datalist and the saver as the string 'false', which is truthy:
    complete subjects were fused again and their outputs replaced."""
    from asfe3d.bundle import SaveSubjectd

    assert SaveSubjectd({"image": "fused"}, overwrite=word).overwrite is meant


def test_a_switch_that_is_no_word_for_true_or_false_is_refused(tmp_path):
    from asfe3d.bundle import datalist_items
    from asfe3d.errors import Asfe3dInputError

    with pytest.raises(Asfe3dInputError, match=r"--overwrite: must be True or False, got 'no'"):
        datalist_items(_datalist(tmp_path), tmp_path / "out", overwrite="no")
    # the word means False: the same items as False (an unfinished subject to fuse), not a redo of everything
    assert datalist_items(_datalist(tmp_path), tmp_path / "out", overwrite="false") == datalist_items(
        _datalist(tmp_path), tmp_path / "out", overwrite=False)


def test_a_bad_training_value_is_the_input_error_of_training(tmp_path):
    """Probe 40 #6: ``--training#train#epoch 1`` (a typo) ended train.json in a 75-line traceback with exit 1; the
    ConfigError behind it is reported as ``--training``'s (one line and exit 2 on the command line)."""
    from asfe3d.bundle import run_step
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.training import train

    with pytest.raises(Asfe3dInputError, match=r"^--training: unknown config key\(s\) \['epoch'\] in train"):
        run_step(train, {"train": {"epoch": 1}, "out": str(tmp_path / "run")})
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_trained_with_another_network_config_is_refused(tmp_path):
    """Probe 40 #12: train.json's best.pt (detail_injection 0.0) ran under network_def's 0.8 without a word; the
    README says to keep network_def equal to the checkpoint's config."""
    from monai.bundle import ConfigParser

    from asfe3d.bundle import input_errors
    from asfe3d.fusion.weights import save_weights
    from asfe3d.networks.nets import ASFEFusion

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    config = dict(parser.get_parsed_content("network_def").config)
    net = ASFEFusion(**{k: v for k, v in config.items() if k != "preset"}, preset=config["preset"])
    assert input_errors(INFERENCE, _overrides(tmp_path, ckpt_path=str(save_weights(net, tmp_path / "same.pt")))) == []
    config["detail_injection"] = 0.0
    other = ASFEFusion(**{k: v for k, v in config.items() if k != "preset"}, preset=config["preset"])
    path = save_weights(other, tmp_path / "best.pt")
    assert [str(e) for e in input_errors(INFERENCE, _overrides(tmp_path, ckpt_path=str(path)))] == [
        f"{path}: checkpoint (--ckpt_path) was trained with detail_injection 0.0, network_def has 0.8: pass "
        "--network_def#detail_injection 0.0 (network_def must equal the checkpoint's config)"]
    assert input_errors(INFERENCE, _overrides(tmp_path, ckpt_path=str(path),
                                              **{"network_def#detail_injection": 0.0})) == []


def test_the_zoos_dataset_dir_names_the_datalist(tmp_path):
    """Probe 40 #8/#11: ``--dataset_dir`` (the zoo's key, a required property of MONAI's inference workflow) was an
    unknown override whose hint pointed at ``--dataset``, the Dataset component."""
    from monai.bundle import ConfigParser

    from asfe3d.bundle import check_overrides, input_errors

    over = {**_overrides(tmp_path), "dataset_dir": str(_datalist(tmp_path))}
    del over["datalist"]
    assert check_overrides(INFERENCE, over, check_values=True) == [] and input_errors(INFERENCE, over) == []
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.update(over)
    assert parser.get_parsed_content("datalist") == str(tmp_path / "datalist.csv")
    missing = {**over, "dataset_dir": str(tmp_path / "nope")}
    assert [str(e) for e in input_errors(INFERENCE, missing)] == [f"{tmp_path / 'nope'}: datalist does not exist"]


def test_a_setting_typo_is_blamed_on_its_own_override(tmp_path):
    """Probe 40 #11: ``--settings#pet_smoth_mm 3`` was refused as ``--dataloader``'s (the component it reaches
    through the dataset), an option the user never passed."""
    from asfe3d.bundle import input_errors

    over = _overrides(tmp_path, **{"settings#pet_smoth_mm": 3})
    assert [str(e) for e in input_errors(INFERENCE, over)] == [
        "--settings#pet_smoth_mm 3: dataloader: unknown setting 'pet_smoth_mm' (did you mean pet_smooth_mm?)"]
