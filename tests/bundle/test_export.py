"""The bundle's export and weights as the MONAI model zoo uses them: ``models/model.pt`` a plain state dict,
``ckpt_export`` (scripted TorchScript, no ``--key_in_ckpt``) equal to the eager network at any size, a clear error
for an input the network cannot take, and override typos refused in one line."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.bundle.cli_runs import one_error_line, started

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "asfe3d_mri_pet_fusion"
CONFIGS = BUNDLE / "configs"
META = CONFIGS / "metadata.json"
INFERENCE = str(CONFIGS / "inference.json")
SLICE = [INFERENCE, str(CONFIGS / "inference_slice.json")]
SHIPPED = {"model.pt": ROOT / "asfe3d" / "weights" / "asfe3d_mri_pet.pt",
           "model_2d.pt": ROOT / "asfe3d" / "weights" / "asfe2d_slice_mri_pet.pt"}
#: a small 3D network with every block of the shipped one (light and full fusion, deformable blend, attention and
#: expert windows, refinement), so that an export test takes seconds
TINY_3D = {"network_def#encoder_channels": [4, 8, 8], "network_def#embed_dim": 8,
           "network_def#expert_hidden": 8, "network_def#attn_window": 2, "network_def#moe_window": 2}


def _documented_commands(name: str) -> list[str]:
    """The ``python -m monai.bundle <name> ...`` commands of the bundle's README (continuation lines joined)."""
    text = (BUNDLE / "docs" / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if f"-m monai.bundle {name}" in line]


def _export(tmp_path: Path, configs: str | list[str], ckpt: Path, **override) -> torch.jit.ScriptModule:
    """``ckpt_export`` in-process, as the README's command calls it (no key_in_ckpt, no tracing)."""
    from monai.bundle import ckpt_export

    path = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(path), ckpt_file=str(ckpt), meta_file=str(META),
                config_file=configs, **override)
    return torch.jit.load(str(path))


def _network_def(configs: str | list[str], **override) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs)
    parser.update(override)
    return parser.get_parsed_content("network_def")


def _eager(configs: str | list[str], state: dict, **override) -> torch.nn.Module:
    net = _network_def(configs, **override)
    net.load_state_dict(state, strict=True)
    return net.eval()


def _max_diff(a: torch.nn.Module, b: torch.nn.Module, shape: tuple[int, ...], seed: int = 0) -> float:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape == (shape[0], 1, *shape[2:])
    return (ya - yb).abs().max().item()


def test_bundle_models_are_plain_state_dicts_of_the_shipped_weights():
    """As in the zoo's bundles: a dict of tensors (no asfe3d envelope), the tensors of the package's weights, loading
    strictly into ``network_def`` (the config stored beside the package's weights)."""
    from asfe3d.fusion.weights import load_weights

    for name, configs in (("model.pt", INFERENCE), ("model_2d.pt", SLICE)):
        state = torch.load(BUNDLE / "models" / name, map_location="cpu", weights_only=True)
        assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()), name
        assert not {"format", "config", "state_dict", "meta"} & set(state), name
        shipped = load_weights(SHIPPED[name])
        assert list(state) == list(shipped["state_dict"]), name
        for key, value in shipped["state_dict"].items():
            assert torch.equal(state[key], value), (name, key)
        net = _network_def(configs)
        assert json.loads(json.dumps(net.config)) == shipped["config"], name
        net.load_state_dict(state, strict=True)


def test_asfe3d_refuses_the_plain_state_dict_in_one_line():
    """``asfe3d fuse --weights <bundle>/models/model.pt`` cannot rebuild the network (no config): it says so."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.fusion.weights import load_weights

    with pytest.raises(Asfe3dInputError, match="model.pt: a plain state dict without the network's config"):
        load_weights(BUNDLE / "models" / "model.pt")


def test_checkpoint_loader_of_the_inference_config_loads_model_pt():
    """The config's CheckpointLoader loads the plain ``models/model.pt`` into ``network`` (``run`` needs no flag), and
    an asfe3d weight file given as ``--ckpt_path`` (its ``state_dict`` entry; e.g. ``train.json``'s ``best.pt``)."""
    from ignite.engine import Engine
    from monai.bundle import ConfigParser

    expected = torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True)
    for ckpt in (None, SHIPPED["model.pt"]):
        parser = ConfigParser()
        parser.read_config(INFERENCE)
        parser.update({"bundle_root": str(BUNDLE), "device": "cpu", **({"ckpt_path": str(ckpt)} if ckpt else {})})
        net = parser.get_parsed_content("network")
        with torch.no_grad():
            for p in net.parameters():
                p.zero_()
        loader = parser.get_parsed_content("handlers#0")
        assert type(loader).__name__ == "CheckpointLoader"
        loader(Engine(lambda engine, batch: None))
        for key, value in net.state_dict().items():
            assert torch.equal(value.cpu(), expected[key]), (ckpt, key)


@pytest.mark.parametrize("shape", [(1, 2, 16, 16, 16), (2, 2, 23, 17, 9), (1, 2, 5, 31, 12), (1, 2, 1, 3, 2)])
def test_scripted_export_equals_eager_at_any_size_tiny_network(tmp_path, shape):
    """A tiny network through the documented ``ckpt_export`` (scripted): equal to the eager one at sizes that are
    not multiples of anything (the traced export froze the size it was traced at)."""
    net = _network_def(INFERENCE, **TINY_3D)
    assert net.config["encoder_channels"] == (4, 8, 8) and net.config["deform"] and net.config["refine"]
    with torch.no_grad():  # trained-looking weights: the default init leaves some blocks at identity
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(net.state_dict(), tmp_path / "tiny.pt")
    scripted = _export(tmp_path, INFERENCE, tmp_path / "tiny.pt", **TINY_3D)
    assert isinstance(scripted, torch.jit.ScriptModule)
    diff = _max_diff(scripted, net.eval(), shape)
    assert diff < 1e-5, diff


def test_scripted_export_of_the_shipped_weights_equals_eager_whole_volumes(tmp_path):
    """The issue's sizes, whole volumes, with the shipped weights: 64^3, 96x80x72 and 100x90x37."""
    scripted = _export(tmp_path, INFERENCE, BUNDLE / "models" / "model.pt")
    state = torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True)
    eager = _eager(INFERENCE, state)
    for shape in ((64, 64, 64), (96, 80, 72), (100, 90, 37)):
        diff = _max_diff(scripted, eager, (1, 2, *shape))
        assert diff < 1e-5, (shape, diff)


def test_scripted_export_refuses_what_the_network_cannot_take_clearly(tmp_path):
    """An empty axis, a channel count other than 2, a missing spatial axis: one clear message, as in eager mode."""
    scripted = _export(tmp_path, INFERENCE, BUNDLE / "models" / "model.pt")
    for shape in ((1, 2, 0, 16, 16), (1, 3, 16, 16, 16), (1, 2, 16, 16)):
        with pytest.raises(torch.jit.Error) as info:  # what a TorchScript model raises, wrapping the ValueError
            scripted(torch.rand(shape))
        last = str(info.value).strip().splitlines()[-1]
        expected = f"got shape ({', '.join(map(str, shape))})"
        assert "ValueError: ASFEFusion(3D) expects (B, 2, *spatial)" in last and expected in last, last


def test_the_documented_export_command_works_without_extra_flags(tmp_path):
    """The README's ``ckpt_export`` commands (3D and 2D), run as written (only the output path moved): scripted
    files that carry their network's description and equal the eager network at odd sizes."""
    commands = _documented_commands("ckpt_export")
    assert commands, "the README documents no ckpt_export command"
    for command in commands:
        assert "--use_trace" not in command and "--key_in_ckpt" not in command, command
        assert "--input_shape" not in command, command  # nothing size-specific
    for weights, config, shapes, spatial in (("model.pt", INFERENCE, [(1, 2, 45, 38, 27)], ["*", "*", "*"]),
                                             ("model_2d.pt", SLICE, [(4, 2, 96, 80), (1, 2, 37, 29)], ["*", "*"])):
        command = next(c for c in commands if f"/{weights}" in c)  # the 2D command failed: one meta file only
        args = shlex.split(command.replace("$B", str(BUNDLE)))
        assert args[:3] == ["python", "-m", "monai.bundle"], args
        out = tmp_path / f"exported_{weights}.ts"
        args[args.index("--filepath") + 1] = str(out)
        proc = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        extra = {"metadata.json": ""}
        scripted = torch.jit.load(str(out), _extra_files=extra)
        assert json.loads(extra["metadata.json"])["network_data_format"]["inputs"]["image"]["spatial_shape"] == spatial
        state = torch.load(BUNDLE / "models" / weights, map_location="cpu", weights_only=True)
        eager = _eager(config, state)
        for shape in shapes:  # the shipped 2D weights too (any size; this replaced a test of its own)
            diff = _max_diff(scripted, eager, shape)
            assert diff < 1e-5, (weights, shape, diff)


def test_override_check_uses_the_configs_and_component_signatures():
    """Top-level typos, misspelt component arguments (after a ``_target_`` override too), good overrides."""
    from asfe3d.bundle import check_overrides, unknown_override_problems
    from asfe3d.errors import Asfe3dInputError

    good = {"device": "cpu", "bundle_root": ".", "inferer#roi_size": [64, 64, 64], "inferer#_target_":
            "SlidingWindowInferer", "inferer#progress": True, "network_def#residual_scale": 0.5,
            "_meta_#version": "x", "preprocessing#transforms#0#nifti_geometry": "sform",
            "preprocessing#transforms#0#key_kwargs#pet#frame_reference": "first", "config_file": "x", "meta_file": "y"}
    assert unknown_override_problems(INFERENCE, good) == []
    assert check_overrides(INFERENCE, good) == []
    assert unknown_override_problems(SLICE, {"inferer#slice_axis": 2}) == []
    problems = unknown_override_problems(INFERENCE, {"devcie": "cpu", "inferer#roi_sise": 8, "zzz": 1})
    assert problems[0] == "--devcie (did you mean --device?)"
    assert problems[1].startswith("--inferer#roi_sise: asfe3d.inferers.FusionInferer takes no argument "
                                  "'roi_sise' (did you mean --inferer#roi_size")
    assert problems[2].startswith("--zzz (the configs declare ") and "network_def" in problems[2]
    # a step setting given to the inferer itself points to where it sits since 0.3.19; one under steps is checked
    assert unknown_override_problems(INFERENCE, {"inferer#pet_consistency": 0.5}) == [
        "--inferer#pet_consistency: asfe3d.inferers.FusionInferer takes no argument 'pet_consistency' (it is an "
        "argument of --inferer#steps: --inferer#steps#pet_consistency)"]
    assert unknown_override_problems(INFERENCE, {"inferer#steps#pet_consistency": 0.5}) == []
    assert "did you mean --inferer#steps#detail_steer" in unknown_override_problems(
        INFERENCE, {"inferer#steps#detail_ster": 0.5})[0]
    # MONAI's own inferer (after a _target_ override) is checked by its own signature
    problems = unknown_override_problems(INFERENCE, {"inferer#_target_": "SlidingWindowInferer",
                                                     "inferer#progres": True})
    assert problems == ["--inferer#progres: SlidingWindowInferer takes no argument 'progres' "
                        "(did you mean --inferer#progress?)"]
    with pytest.raises(Asfe3dInputError, match=r"inference\.json: unknown override key\(s\): --devcie"):
        check_overrides(INFERENCE, {"devcie": "cpu"})
    assert check_overrides(INFERENCE, {"devcie": "cpu"}, strict=False) == ["--devcie (did you mean --device?)"]
    # the training and evaluation configs are checked the same way
    assert unknown_override_problems(str(CONFIGS / "train.json"), {"resum": True})[0].startswith("--resum")
    assert unknown_override_problems(str(CONFIGS / "evaluate.json"), {"evaluate_arg": []}) == [
        "--evaluate_arg (did you mean --evaluate_args?)"]
    # outside a `python -m monai.bundle` command line (here: pytest) there is nothing to read
    assert check_overrides() == []


def test_command_line_overrides_are_read_as_fire_reads_them():
    from asfe3d.bundle import _command_line_overrides

    argv = ["monai/bundle/__main__.py", "run", "training", "--config_file", "['a.json','b.json']", "--device=cpu",
            "--overwrite", "--inferer#roi_size", "[8,8,8]", "--seed", "-1", "--num-workers", "2"]
    assert _command_line_overrides(argv) == {"config_file": ["a.json", "b.json"], "device": "cpu", "overwrite": True,
                                             "inferer#roi_size": [8, 8, 8], "seed": -1, "num_workers": 2}


TYPOS = [
    (["--devcie", "cpu"], "unknown override key(s): --devcie (did you mean --device?)"),
    (["--inferer#roi_sise", "[64,64,64]"], "takes no argument 'roi_sise' (did you mean --inferer#roi_size?)"),
]


@pytest.fixture(scope="module")
def typo_runs(tmp_path_factory):
    """Both ``TYPOS`` commands started at once, each in its own folder."""
    runs = {}
    for i, (typo, _) in enumerate(TYPOS):
        folder = tmp_path_factory.mktemp(f"typo{i}")
        datalist = folder / "datalist.csv"
        datalist.write_text("subject,mri,pet\n")
        runs[i] = (folder, ["--datalist", str(datalist), "--output_dir", str(folder / "out"), *typo])
    yield from started(runs)


@pytest.mark.parametrize("index", range(len(TYPOS)), ids=[f"typo{i}" for i in range(len(TYPOS))])
def test_override_typo_on_the_command_line_is_one_line(typo_runs, index):
    """``python -m monai.bundle run ... <typo>``: exit 2, one ``asfe3d: error:`` line, no traceback, nothing run."""
    line = one_error_line(*typo_runs[index])
    assert line.startswith("asfe3d: error: ") and TYPOS[index][1] in line
