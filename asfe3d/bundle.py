"""Helpers that the MONAI bundle ``bundles/asfe3d_mri_pet_fusion`` names in its configs (``_target_`` / ``$``).

The bundle composes the same transform chain as :func:`asfe3d.pipeline.fuse_pair` (see
:mod:`asfe3d.transforms.dictionary`), run by a ``monai.engines.SupervisedEvaluator``; what MONAI does not provide
for that lives here, small and declarative:

- :func:`datalist_items`: the datalist (CSV ``subject,mri,pet[,output]`` or a folder of subject folders) as the
  dataset's dicts, without the subjects whose completion record is complete (resumable runs).
- :func:`collate_one`: one subject per batch; only ``image`` gets a batch dimension, every other item (MetaTensors
  with their headers, the registration transform and report, paths) travels as it is.
- the ``inferer`` is :class:`asfe3d.inferers.FusionInferer`, the same class ``asfe3d fuse`` runs the network with.
- :class:`FusionOutputd`: the network's prediction as :class:`asfe3d.fusion.FusionMethod` returns it
  (:func:`asfe3d.fusion.base.fused_output`: clipped to ``[0, 1]``, faded to 0 where neither input holds signal).
- :class:`SaveSubjectd`: :class:`~asfe3d.transforms.SaveLikeReferenced` with per-subject paths from the data and
  the completion record that makes reruns skip the subject.
- :func:`check_overrides`: refuses, in one line, command-line overrides of keys that no config declares
  (``--devcie cpu``, which MONAI's runner would otherwise accept silently) or that a component does not take
  (``--inferer#roi_sise``); :func:`unknown_override_problems` is the check itself (MONAI's public ``ConfigParser``).
  From the command line it then refuses, in one line too, bad values of the run's inputs (``--registration bogus``,
  a missing ``--datalist`` or ``--ckpt_path``, an ``--output_dir`` that cannot be written): :func:`input_errors`.
- :func:`run_step`: the configs' ``run`` step; an input that turns out unusable only when it is read (a truncated
  volume, a header that cannot be trusted, a failed registration under ``--qc strict``) stops the run with the same
  one line and exit code 2 instead of MONAI's wrapped traceback; the subjects finished before it are kept.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import json
import logging
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

if TYPE_CHECKING:
    from asfe3d.errors import Asfe3dInputError

__all__ = [
    "datalist_items",
    "collate_one",
    "FusionOutputd",
    "SaveSubjectd",
    "check_overrides",
    "unknown_override_problems",
    "input_errors",
    "run_step",
    "command_line",
]

logger = logging.getLogger("asfe3d")


def datalist_items(datalist: str | Path, output_dir: str | Path, overwrite: bool = False,
                   settings: Mapping[str, Any] | None = None,
                   shard: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """The subjects of a datalist still to fuse, as dataset items.

    Args:
        datalist: CSV with the columns ``subject,mri,pet[,output]`` (relative paths against the CSV's folder) or a
            folder of subject folders (:func:`asfe3d.cohort.read_datalist`).
        output_dir: where ``<subject>_fused.nii.gz`` and its record ``<subject>_fused.json`` go (made when the first
            is written); a CSV ``output`` cell overrides it for its subject.
        overwrite: keep every subject (redo complete ones) instead of skipping those whose completion record is
            complete, lists the fused output with its size, and matches the unchanged inputs
            (:func:`asfe3d.cohort.subject_done`).
        settings: what this run records as its ``settings`` (``SaveSubjectd``'s: the settings' ``as_dict()`` and
            the bundle's weights, network and inferer); a subject recorded complete with settings that change its
            output is refused (one line naming the first difference; ``overwrite`` redoes it), not skipped as done.
        shard: ``(rank, world_size)`` of a multi-process run: this process keeps the subjects at positions
            ``i % world_size == rank`` of the whole datalist, chosen before the complete ones are skipped, so every
            process splits the same list whatever it finds done when it looks (a sampler splitting each process's
            own list of subjects still to fuse skipped or repeated subjects when one process looked later).

    Returns:
        ``[{"subject", "mri", "pet", "output"}]`` (paths as strings) in datalist order; may be empty.

    Raises:
        Asfe3dInputError: the datalist is missing or malformed, or names a missing input; a subject recorded
            complete with other settings, or whose outputs exist but are not a complete run of these inputs (an
            input changed since) and were not left by an unfinished run (without ``overwrite``).
        ValueError: ``output_dir`` is empty, or a bad ``shard``.
    """
    from asfe3d.cohort import planned_outputs, read_datalist, subject_done, subject_output_path
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.io.record import (
        check_outputs_are_ours,
        check_record_name,
        read_record,
        redo_hint,
        replaceable_outputs,
        same_weights,
        settings_difference,
        weights_path,
    )
    from asfe3d.settings import as_bool

    overwrite = as_bool("--overwrite", overwrite)  # the word "false" from a command line is a truthy string

    if not str(output_dir).strip():
        raise ValueError(f"output_dir must name a folder, got {output_dir!r}")
    if shard is not None and not (isinstance(shard, (tuple, list)) and len(shard) == 2
                                  and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
                                  and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard!r}")
    subjects = read_datalist(datalist)
    if shard is not None:
        subjects = subjects[shard[0]::shard[1]]
    items, skipped = [], []
    writers: dict[Path, str] = {}
    for subject in subjects:
        output = subject_output_path(subject, output_dir)
        planned = planned_outputs(output)
        for path in planned.values():  # two subjects of the datalist writing one file
            other = writers.setdefault(path.resolve(), subject.subject)
            if other != subject.subject:
                raise Asfe3dInputError(path, f"subjects {other!r} and {subject.subject!r} would both write this "
                                             "output; give each its own output")
        reason = None if overwrite else subject_done(subject, output, weights=weights_path(settings))
        ours = {p.resolve() for p in replaceable_outputs(output)}
        if not overwrite and reason is not None:  # files in the way that no unfinished run of ours left: as cohorts
            foreign = [p for p in planned.values() if p.exists() and p.resolve() not in ours]
            if foreign:
                hint = redo_hint(output, foreign).replace("--overwrite", "--overwrite true")
                raise Asfe3dInputError(foreign[0], f"exists but is not a complete output of this run of subject "
                                                   f"{subject.subject!r} ({reason}); not replaced ({hint})")
        if overwrite:  # --overwrite true replaces asfe3d's own files only, found now rather than when written
            check_record_name(planned["record"])
            check_outputs_are_ours(output, [p for k, p in planned.items() if k != "record"], ours)
        if not overwrite and reason is None:
            record = read_record(planned["record"]) or {}
            changed = None if settings is None else settings_difference(  # retrained weights under the same
                record.get("settings"), settings, same_weights=same_weights(record, settings))  # path: by content
            if changed is not None:
                raise Asfe3dInputError(output, f"subject {subject.subject!r} was fused with other settings ({changed}); "
                                               "not replaced (pass --overwrite true to redo it)")
            skipped.append(subject.subject)
            continue
        items.append({"subject": subject.subject, "mri": str(subject.mri), "pet": str(subject.pet),
                      "output": str(output)})
    if skipped:
        logger.info("bundle: %d of %d subject(s) already complete, skipped: %s", len(skipped), len(subjects),
                    ", ".join(skipped))
    logger.info("bundle: %d subject(s) to fuse", len(items))
    return items


def collate_one(batch: Sequence[Mapping[Hashable, Any]], image_key: str = "image") -> dict[Hashable, Any]:
    """Collate ONE subject into a batch: ``image`` gets a leading batch dimension, the rest is kept as it is.

    MONAI's default collation would split or stack the non-tensor state of a subject (headers, the registration
    transform, its report); with one subject per batch nothing needs stacking. Use with ``batch_size=1`` and an
    evaluator with ``decollate=False`` (postprocessing then sees the subject's dict).

    Args:
        batch: the items of one batch (exactly one).
        image_key: the network input, ``(C, *spatial)``.

    Returns:
        The item with ``image`` as ``(1, C, *spatial)``.

    Raises:
        ValueError: not exactly one item, or no ``image_key`` in it.
    """
    if len(batch) != 1:
        raise ValueError(f"collate_one takes batches of one subject (batch_size=1), got {len(batch)} items")
    item = dict(batch[0])
    if image_key not in item:
        raise ValueError(f"collate_one: key {image_key!r} is not in the item (keys: {sorted(map(str, item))})")
    item[image_key] = item[image_key].unsqueeze(0)
    return item


class FusionOutputd(MapTransform):
    """The network's prediction as a fused image, as every asfe3d fusion method returns it.

    ``pred`` ``(1, 1, *spatial)`` (or ``(1, *spatial)``) goes through :func:`asfe3d.fusion.base.fused_output` with
    the two input channels (clipped to ``[0, 1]``, exactly 0 where neither input holds signal), the function
    :meth:`asfe3d.fusion.FusionMethod.__call__` ends with; the result is a ``(1, *spatial)`` float32 MetaTensor on
    the reference's grid.

    Args:
        keys: the prediction(s).
        image_key: the 2-channel ``[MRI, PET]`` network input.
        ref_key: the reference image (its affine and metadata go to the output).
        output_key: where the fused image goes (default: replace the prediction). Only with one key.
        allow_missing_keys: skip absent keys.

    Raises:
        ValueError: ``output_key`` with several keys.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", ref_key: str = "mri",
                 output_key: str | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_key is not None and len(self.keys) != 1:
            raise ValueError(f"output_key needs exactly one key, got keys={self.keys}")
        self.image_key = image_key
        self.ref_key = ref_key
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from asfe3d.fusion.base import fused_output

        d = dict(data)
        for key in (self.image_key, self.ref_key):
            if key not in d:
                raise KeyError(f"FusionOutputd: key {key!r} is not in the data (keys: {sorted(map(str, d))})")
        image = _numpy(d[self.image_key])
        image = image[0] if image.ndim == 5 else image
        if image.shape[0] != 2:
            raise ValueError(f"FusionOutputd: {self.image_key!r} must hold 2 channels [MRI, PET], got "
                             f"{tuple(image.shape)}")
        mri, pet = image[0].astype(np.float32, copy=False), image[1].astype(np.float32, copy=False)
        ref = d[self.ref_key]
        for key in self.key_iterator(d):
            pred = _numpy(d[key]).astype(np.float32, copy=False)
            if pred.size != mri.size or pred.shape[-mri.ndim:] != mri.shape:
                raise ValueError(f"FusionOutputd: {key!r} has shape {tuple(d[key].shape)}, the inputs "
                                 f"{tuple(image.shape)}")
            fused = fused_output(pred.reshape(mri.shape), mri, pet).astype(np.float32, copy=False)
            meta = {k: v for k, v in getattr(ref, "meta", {}).items() if k != "affine"}
            d[self.output_key or key] = MetaTensor(torch.from_numpy(fused[None]), affine=ref.affine.clone(),
                                                   meta=meta)
        return d


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


class SaveSubjectd(MapTransform):
    """:class:`~asfe3d.transforms.SaveLikeReferenced` with the output paths taken from each subject's data.

    Writes the chosen images on the reference's grid with its header, as one set, then the completion record
    ``<first output stem>.json``: the inputs' fingerprints (so that :func:`datalist_items` skips the subject on
    the next run), what the readers found, the registration report and QC verdict, and ``settings``.

    Args:
        outputs: data key of an image -> data key of its output path (e.g. ``{"fused": "output"}``). A path key
            must not end in ``_path`` (those are the inputs, protected from being overwritten).
        ref_key: the reference image (grid and header; the MRI).
        overwrite: replace existing outputs (never an input).
        settings: JSON-able settings for the record (weights, inferer, registration...).
        subject_key: the subject's name (logged).

    Raises:
        ValueError: no outputs, or a path key ending in ``_path``.
    """

    def __init__(self, outputs: Mapping[str, str], ref_key: str = "mri", overwrite: bool = False,
                 settings: Mapping[str, Any] | None = None, subject_key: str = "subject") -> None:
        if not outputs:
            raise ValueError("outputs must map at least one image key to a path key")
        bad = [k for k in outputs.values() if str(k).endswith("_path")]
        if bad:
            raise ValueError(f"path keys must not end in '_path' (input paths), got {bad}")
        super().__init__(list(outputs), allow_missing_keys=False)
        from asfe3d.settings import as_bool

        self.outputs = dict(outputs)
        self.ref_key = ref_key
        self.overwrite = as_bool("overwrite", overwrite)  # "false" from a command line replaced the outputs
        self.settings = dict(settings or {})
        self.subject_key = subject_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from asfe3d.io.record import run_fields
        from asfe3d.pipeline import ABOVE_KEY, FOV_KEY, above_window_summary, blank_value, outside_fov_summary
        from asfe3d.transforms import SaveLikeReferenced

        d = dict(data)
        missing = [k for k in [*self.outputs.values(), "mri_path", "pet_path"] if k not in d]
        if missing:
            raise KeyError(f"SaveSubjectd: key(s) {missing} not in the data (keys: {sorted(map(str, d))})")
        d["record"] = {**run_fields(d), "subject": d.get(self.subject_key), "settings": self.settings,
                       "written_by": "bundle asfe3d_mri_pet_fusion"}
        fusion = {}
        if ABOVE_KEY in d and "mri_head" in d:  # the PET's hottest uptake shown above the MRI's window
            fusion["pet_above_window"] = above_window_summary(d[ABOVE_KEY], d["mri_head"])
        if FOV_KEY in d and "mri_head" in d:  # the MRI's grid outside the PET's field of view (fused image 0)
            scale = ((self.settings or {}).get("outputs") or {}).get("scale", "mri")
            fusion["outside_pet_fov"] = outside_fov_summary(d[FOV_KEY], d["mri_head"],
                                                            blank_value(d.get(self.ref_key), scale))
        if fusion:
            d["record"]["fusion"] = fusion
        saver = SaveLikeReferenced({k: d[p] for k, p in self.outputs.items()}, ref_key=self.ref_key,
                                   overwrite=self.overwrite, record_key="record")
        d = saver(d)
        logger.info("bundle: %s -> %s", d.get(self.subject_key), ", ".join(str(p) for p in d["outputs"].values()))
        return d


#: arguments of ``monai.bundle`` entry points that are not config overrides
_NOT_OVERRIDES = frozenset({
    "run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file",
    "workflow_name", "workflow_type", "properties_path", "workflow",
})
#: keys MONAI's config syntax gives every component
_SPECIAL_KEYS = frozenset({"_target_", "_disabled_", "_desc_", "_requires_", "_mode_"})


def _literal(text: str) -> Any:
    """A command-line value as ``fire`` (behind ``python -m monai.bundle``) reads it: a Python literal, else text."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _command_line_overrides(argv: Sequence[str]) -> dict[str, Any]:
    """The ``--key value`` / ``--key=value`` / ``--flag`` pairs of a ``python -m monai.bundle`` command line.

    Args:
        argv: ``sys.argv`` (the program, the sub-command such as ``run``, positional arguments, then the flags).

    Returns:
        ``{key: value}`` in command-line order (``True`` for a flag without a value), values read as literals.
    """
    pairs: dict[str, Any] = {}
    args = list(argv[1:])
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("--") or token == "--":
            continue
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i < len(args) and not args[i].startswith("--"):
                value, i = args[i], i + 1
            else:
                value = "True"
        pairs[key.replace("-", "_") if "#" not in key else key] = _literal(value)
    return pairs


def _target_parameters(target: Any) -> set[str] | None:
    """The keyword arguments a config component's ``_target_`` takes, or ``None`` when any is accepted / unknown."""
    import pydoc

    from monai.bundle import ConfigComponent

    if not isinstance(target, str) or target.startswith(("$", "@", "%")):
        return None
    try:
        obj = pydoc.locate(str(ConfigComponent({"_target_": target}).resolve_module_name()))
        params = inspect.signature(obj).parameters.values() if obj is not None else None
    except (TypeError, ValueError):  # not introspectable: leave it to the component
        return None
    if params is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _did_you_mean(key: str, known: Sequence[str], prefix: str = "--") -> str:
    close = difflib.get_close_matches(key, sorted(known), n=2)
    return f" (did you mean {' or '.join(prefix + c for c in close)}?)" if close else ""


def unknown_override_problems(config_file: str | Sequence[str], overrides: Mapping[str, Any],
                              extra_keys: Sequence[str] = ()) -> list[str]:
    """The overrides that name no key of the configs, each as ``--key`` with the closest known keys.

    Checked with MONAI's public :class:`monai.bundle.ConfigParser` (the configs' merged content) and the
    components' signatures: a top-level key must be declared by one of ``config_file`` (or be ``_meta_``); a
    nested key (``inferer#roi_size``) under a component (``_target_``, after any ``_target_`` override) must be
    one of its target's arguments, unless the target takes ``**kwargs``. Other nested keys (under a plain dict or
    a list) are not checked; an override whose parent does not exist is refused by MONAI before any check runs.

    Args:
        config_file: the run's config file(s), as given to ``monai.bundle.run``.
        overrides: the run's override ids (``--key value`` of the command line) and values; the arguments of
            ``monai.bundle.run`` itself (``config_file``, ``meta_file``...) are ignored.
        extra_keys: further top-level keys to accept.

    Returns:
        One entry per unknown key, e.g. ``"--devcie (did you mean --device?)"``; empty when all are known.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_file)
    declared = {str(k) for k in parser.get()} | {"_meta_"} | set(extra_keys)
    problems = []
    for key in (str(k) for k in overrides if str(k) not in _NOT_OVERRIDES):
        top, _, _ = key.partition("#")
        if top not in declared:
            hint = _did_you_mean(top, [k for k in declared if not k.startswith("_")])
            problems.append(f"--{key}" + (hint or f" (the configs declare {', '.join(sorted(declared))})"))
            continue
        parent_id, _, name = key.rpartition("#")
        if not parent_id or name in _SPECIAL_KEYS or parent_id not in parser:
            continue
        parent = parser[parent_id]
        if not isinstance(parent, dict) or "_target_" not in parent or name in parent:
            continue
        target = overrides.get(f"{parent_id}#_target_", parent["_target_"])
        accepted = _target_parameters(target)
        if accepted is not None and name not in accepted:
            problems.append(f"--{key}: {target} takes no argument {name!r}"
                            + (_child_taking(parent, parent_id, name)
                               or _did_you_mean(name, sorted(accepted), prefix=f"--{parent_id}#")))
    return problems


def _child_taking(parent: Mapping[str, Any], parent_id: str, name: str) -> str:
    """``" (it is an argument of --<parent>#<child>: --<parent>#<child>#<name>)"`` when a component nested in
    ``parent`` takes ``name`` (``inferer#pet_consistency`` is ``inferer#steps#pet_consistency``), else ``""``."""
    for child, value in parent.items():
        if isinstance(value, dict) and "_target_" in value and name in (_target_parameters(value["_target_"]) or ()):
            return f" (it is an argument of --{parent_id}#{child}: --{parent_id}#{child}#{name})"
    return ""


def _bundle_command_line() -> tuple[Any, dict[str, Any]] | None:
    """``(config_file, overrides)`` of this process when it is ``python -m monai.bundle run|run_workflow ...``."""
    import sys

    from monai.bundle import ConfigParser

    if not _is_bundle_command():
        return None
    given = _command_line_overrides(sys.argv)
    defaults = ConfigParser.load_config_file(given["args_file"]) if given.get("args_file") else {}
    args = {**defaults, **given}
    return (args["config_file"], args) if args.get("config_file") else None


def command_line(default: str) -> str:
    """This process's command as typed, ``python -m monai.bundle run --config_file ... --training#train#epochs 1``,
    when it is the ``monai.bundle`` command line (a training run's provenance: a fixed string hid the overrides);
    else ``default`` (``monai.bundle.run(...)`` called from Python has no command line).

    Args:
        default: what to record without that command line.

    Returns:
        The command, quoted as a shell reads it.
    """
    import shlex
    import sys

    return "python -m monai.bundle " + shlex.join(sys.argv[1:]) if _is_bundle_command() else default


def _is_bundle_command() -> bool:
    """Whether this process is ``python -m monai.bundle <command> ...``."""
    import sys

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "monai.bundle.__main__" and len(sys.argv) >= 2


def _input_error(exc: BaseException) -> Asfe3dInputError | None:
    """The :class:`~asfe3d.errors.Asfe3dInputError` that ``exc`` is or was raised from (MONAI wraps what a
    component or expression raises in a ``RuntimeError``), else ``None``."""
    from asfe3d.errors import Asfe3dInputError, ConfigError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, Asfe3dInputError):
            return current
        if isinstance(current, ConfigError):  # train.json's ``training`` (a key typo, a bad value): the user's
            return Asfe3dInputError("--training", str(current))
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _checked_value(parser: Any, id_: str) -> Any:
    """``parser``'s parsed content of ``id_``; raises the Asfe3dInputError behind a failure, else returns ``None``
    (a failure that is not the user's input is left for the run itself to report)."""
    try:
        return parser.get_parsed_content(id_)
    except Exception as exc:  # noqa: BLE001 - only the user's input errors are reported here
        error = _input_error(exc)
        if error is not None:
            raise error from None
        logger.debug("input_errors: %r not checked (%s: %s)", id_, type(exc).__name__, exc)
        return None


def _check_checkpoint_fits(path: Path, network: Any) -> None:
    """Refuse a checkpoint whose tensors do not fit ``network`` (the config's ``network_def``): the bundle's 2D
    weights given to the 3D config ended in MONAI's traceback of some hundred size mismatches, after the first
    subject's registration."""
    import torch

    from asfe3d.errors import Asfe3dInputError
    from asfe3d.fusion.weights import load_checkpoint

    if not isinstance(network, torch.nn.Module):
        return  # not built from the user's input alone: the run reports it
    state, config = load_checkpoint(path)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or shapes):
        _check_checkpoint_config(path, config, getattr(network, "config", None))
        return
    dims = getattr(network, "spatial_dims", None)
    if shapes:
        k = shapes[0]
        first = f"{len(shapes)} tensor(s) of other shapes, e.g. {k} {list(state[k].shape)} != {list(expected[k].shape)}"
    else:
        first = f"{len(missing)} missing and {len(unexpected)} unexpected tensor(s), e.g. {(missing or unexpected)[0]}"
    hint = " (2D weights for a 3D network_def? the slice variant is inference_slice.json)" if dims == 3 and shapes \
        and any(state[k].ndim == expected[k].ndim - 1 for k in shapes) else ""
    raise Asfe3dInputError(path, f"checkpoint (--ckpt_path) does not fit network_def: {first}{hint}")


def _check_checkpoint_config(path: Path, recorded: Mapping[str, Any] | None, built: Mapping[str, Any] | None) -> None:
    """Refuse an asfe3d weight file whose recorded network config differs from ``network_def``'s in a value that
    leaves the tensors' shapes alone (``train.json``'s ``best.pt``, trained with ``detail_injection`` 0.0, ran under
    ``network_def``'s 0.8 without a word, against the README's "keep network_def equal to their config")."""
    import json
    import shlex

    from asfe3d.errors import Asfe3dInputError

    if not isinstance(recorded, Mapping) or not isinstance(built, Mapping):
        return  # a plain state dict records no config: the README's models/model.pt

    def plain(value: Any) -> Any:  # tuples and lists, numpy and Python numbers alike
        return json.loads(json.dumps(value, default=str))

    for key in sorted(set(recorded) & set(built) - {"preset"}):
        if plain(recorded[key]) != plain(built[key]):
            raise Asfe3dInputError(path, f"checkpoint (--ckpt_path) was trained with {key} {recorded[key]!r}, "
                                         f"network_def has {built[key]!r}: pass --network_def#{key} "
                                         f"{shlex.quote(json.dumps(plain(recorded[key])))} (network_def must "
                                         f"equal the checkpoint's config)")


#: components built by :func:`input_errors` after the inputs passed: a bad value given for one of them
#: (``--inferer#overlap 1.5``, ``--num_workers -1``) is refused in one line before any subject is read
_CHECKED_COMPONENTS = ("network_def", "inferer", "dataloader")


def _check_component(parser: Any, id_: str, overrides: Mapping[str, Any]) -> None:
    """Build component ``id_`` of ``parser``; a ``ValueError`` or ``TypeError`` (a value it refuses) becomes an
    :class:`~asfe3d.errors.Asfe3dInputError` naming the overrides that feed it (other failures are the run's)."""
    from asfe3d.errors import Asfe3dInputError

    if not (isinstance(parser.get(id_), dict) and "_target_" in parser[id_]):
        return
    try:
        parser.get_parsed_content(id_)
    except Exception as exc:  # noqa: BLE001 - only what the component refuses is reported here
        error = _input_error(exc)
        if error is not None:
            raise error from None
        inner: BaseException = exc
        while (inner.__cause__ or inner.__context__) is not None and isinstance(inner, RuntimeError):
            inner = inner.__cause__ or inner.__context__
        if not isinstance(inner, (ValueError, TypeError)):
            logger.debug("input_errors: %r not checked (%s: %s)", id_, type(exc).__name__, exc)
            return
        text = json.dumps(parser.get(id_))
        keys = [str(k) for k in overrides if str(k) not in _NOT_OVERRIDES]
        given = [k for k in keys if k.split("#")[0] == id_] or [k for k in keys if f"@{k.split('#')[0]}" in text]
        # a component fed through another (settings -> dataset -> dataloader): the override whose key the message
        # quotes ("unknown setting 'pet_smoth_mm'" was blamed on --dataloader)
        given = given or [k for k in keys if f"'{k.split('#')[-1]}'" in str(inner)]
        given = [k for k in given if _quoted(overrides[k], str(inner))] or given  # the one the message quotes
        where = ", ".join(f"--{k} {overrides[k]!r}" for k in given) if given else f"--{id_}"
        raise Asfe3dInputError(where, f"{id_}: {' '.join(str(inner).split())}") from None


def _quoted(value: Any, message: str) -> bool:
    """Whether an error message quotes an override's value (``got 1.5``; a list also as the tuple it became)."""
    forms = {str(value), repr(value)}
    if isinstance(value, (list, tuple)):
        forms |= {repr(tuple(value)), repr(list(value))}
    return any(f and f in message for f in forms if len(f) > 1 or not f.isdigit())


def input_errors(config_file: str | Sequence[str], overrides: Mapping[str, Any]) -> list[Asfe3dInputError]:
    """The run's inputs that cannot work, found before anything runs: one error per bad id, in run order.

    The configs are read with MONAI's public :class:`monai.bundle.ConfigParser` and the overrides applied, as
    ``monai.bundle run`` does; then, for each of these ids that a config declares:

    - ``settings`` (a component): built, so that a bad value (``--registration bogus``, ``--qc sloppy``) is
      refused as :class:`asfe3d.settings.Settings` refuses it;
    - ``ckpt_path``: must be an existing file (the checkpoint the ``CheckpointLoader`` handler reads);
    - ``datalist``: read with :func:`asfe3d.cohort.read_datalist` (it must exist, be well formed and name existing
      inputs);
    - ``output_dir``: a folder that can be made and written (:func:`asfe3d.io.check_writable_folder`);
    - ``dataset#data`` (when the others passed): evaluated, so that a subject recorded complete with settings that
      change its output is refused (:func:`datalist_items`);
    - ``network_def``, ``inferer``, ``dataloader`` (when the others passed): built, so that a value they refuse
      (``--inferer#overlap 1.5``, ``--num_workers -1``) is one line naming the overrides that feed them.

    A value that fails for another reason than the user's input (e.g. an unknown ``--device``) is not reported
    here; the run reports it as before.

    Args:
        config_file: the run's config file(s), as given to ``monai.bundle.run``.
        overrides: the run's overrides (``--key value`` of the command line); the arguments of
            ``monai.bundle.run`` itself (``config_file``, ``meta_file``...) are ignored.

    Returns:
        :class:`~asfe3d.errors.Asfe3dInputError` per bad id, each one line ``<file or option>: <problem>``;
        empty when every input can be used.
    """
    from monai.bundle import ConfigParser

    from asfe3d.cohort import read_datalist
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.io import check_writable_folder

    parser = ConfigParser()
    parser.read_config(config_file)
    parser.update({k: v for k, v in overrides.items() if str(k) not in _NOT_OVERRIDES})

    def settings() -> None:
        if isinstance(parser.get("settings"), dict) and "_target_" in parser["settings"]:
            _checked_value(parser, "settings")

    def ckpt_path() -> None:
        path = _checked_value(parser, "ckpt_path")
        if isinstance(path, (str, Path)) and not Path(path).expanduser().is_file():
            raise Asfe3dInputError(path, "checkpoint (--ckpt_path) " + (
                "is a folder, not a file" if Path(path).expanduser().is_dir() else "does not exist"))
        if isinstance(path, (str, Path)) and isinstance(parser.get("network_def"), dict):
            _check_checkpoint_fits(Path(path).expanduser(), _checked_value(parser, "network_def"))

    def datalist() -> None:
        path = _checked_value(parser, "datalist")
        if isinstance(path, (str, Path)):
            read_datalist(path)

    def output_dir() -> None:
        path = _checked_value(parser, "output_dir")
        if isinstance(path, (str, Path)) and not str(path).strip():  # e.g. an unset shell variable
            raise Asfe3dInputError("--output_dir", f"must name a folder, got {str(path)!r}")
        if isinstance(path, (str, Path)) and str(path).strip():
            try:
                check_writable_folder(Path(path) / "output")
            except Asfe3dInputError as exc:
                raise Asfe3dInputError(path, f"output folder (--output_dir): {exc.problem}") from None

    def dataset() -> None:  # the subjects to fuse: one recorded complete with other settings is refused here
        if isinstance(parser.get("dataset"), dict) and "data" in parser["dataset"]:
            _checked_value(parser, "dataset#data")

    errors = []
    for key, check in (("settings", settings), ("ckpt_path", ckpt_path), ("datalist", datalist),
                       ("output_dir", output_dir), ("dataset", dataset),
                       *((c, functools.partial(_check_component, parser, c, overrides)) for c in _CHECKED_COMPONENTS)):
        if key in parser and not (key not in ("settings", "ckpt_path", "datalist", "output_dir") and errors):
            try:
                check()
            except Asfe3dInputError as exc:
                errors.append(exc)
    return errors


def check_overrides(config_file: str | Sequence[str] | None = None, overrides: Mapping[str, Any] | None = None,
                    strict: bool = True, extra_keys: Sequence[str] = (), check_values: bool | None = None,
                    ) -> list[str]:
    """Refuse (or warn about) overrides that name no key of the run's configs, or bad input values, in one line.

    MONAI's runner (``python -m monai.bundle run ... --devcie cpu``) adds any override to the config, so a typo
    at the top level changes nothing and says nothing, and a misspelt argument of a component
    (``--inferer#roi_sise``) fails later with a long traceback. Called without arguments from a config's
    ``initialize`` list, this reads the run's config files and overrides from the command line of
    ``python -m monai.bundle run|run_workflow`` (``sys.argv``, with ``--args_file`` defaults) and checks them with
    :func:`unknown_override_problems`; an unknown key then ends the process with one line on stderr,
    ``asfe3d: error: <config files>: unknown override key(s): --devcie (did you mean --device?)``, and exit code 2,
    before anything runs. When every key is known, the values of the run's inputs are checked the same way
    (:func:`input_errors`: ``--registration bogus``, ``--qc sloppy``, a missing ``--datalist`` or ``--ckpt_path``,
    an ``--output_dir`` that cannot be written): the first bad one ends the process with one line,
    ``asfe3d: error: <file or option>: <problem>``, and exit code 2, before any subject is read. In another process
    (``monai.bundle.run(...)`` called from Python) there is no command line to read: nothing is checked, unless
    ``config_file`` and ``overrides`` are given.

    Args:
        config_file: the config file(s) to check against (``None``: those of the command line).
        overrides: the overrides to check (with ``config_file``).
        strict: refuse an unknown key (``False``: log a warning and go on).
        extra_keys: further top-level keys to accept.
        check_values: also check the input values (:func:`input_errors`) when every key is known (``None``: only
            those of the command line).

    Returns:
        The problems found (empty when every key is known, every checked value usable, or there was nothing to
        check).

    Raises:
        Asfe3dInputError: with ``strict`` and explicit ``config_file``, an override names no known key (or, with
            ``check_values``, a value is bad).
        SystemExit: (code 2) the same from the ``python -m monai.bundle`` command line, after the one line.
    """
    from asfe3d.errors import Asfe3dInputError

    from_command_line = config_file is None
    if from_command_line:
        found = _bundle_command_line()
        if found is None:
            logger.debug("check_overrides: not a `python -m monai.bundle run` command line; nothing to check")
            return []
        config_file, overrides = found
    problems = unknown_override_problems(config_file, dict(overrides or {}), extra_keys)
    if problems:
        files = ", ".join(str(f) for f in ([config_file] if isinstance(config_file, str) else config_file))
        error = Asfe3dInputError(files, f"unknown override key(s): {'; '.join(problems)}")
    elif from_command_line if check_values is None else check_values:
        errors = input_errors(config_file, dict(overrides or {}))
        if not errors:
            return []
        error, problems = errors[0], [str(e) for e in errors]
    else:
        return []
    if not strict:
        logger.warning("%s", error)
    elif from_command_line:
        import sys

        print(f"asfe3d: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    else:
        raise error
    return problems


class _DropInputErrors(logging.Filter):
    """Drop a log record about an input error (its ``exc_info``, or the exception being handled where it was logged):
    MONAI's ``StatsHandler`` and ignite's engine logged it with its traceback (about 136 lines on the bundle's
    stdout) before :func:`run_step` reported it in one line. Other failures are logged as before."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging's name
        import sys

        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        return exc is None or _input_error(exc) is None


@contextlib.contextmanager
def _input_errors_unlogged() -> Iterator[None]:
    """:class:`_DropInputErrors` on every handler of the configured loggers while a bundle step runs."""
    handlers = {h for h in logging.getLogger().handlers}
    for logger_ in list(logging.Logger.manager.loggerDict.values()):
        handlers.update(getattr(logger_, "handlers", ()))
    drop = _DropInputErrors()
    for handler in handlers:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop)


def run_step(step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one step of a bundle's ``run`` list (``"$asfe3d.bundle.run_step(@evaluator.run)"``), reporting a bad input.

    MONAI wraps what a transform or handler raises in ``RuntimeError`` s, so an input that is refused only when
    it is read (a truncated volume, an untrustworthy header, a swapped pair, a registration that failed its check
    under ``--qc strict``) would end a ``python -m monai.bundle run`` in a long traceback. Here the
    :class:`~asfe3d.errors.Asfe3dInputError` behind such a failure (or the :class:`~asfe3d.errors.ConfigError` of
    a bad ``--training#...`` value, as ``--training``) ends the run as a bad option does: one line
    ``asfe3d: error: <file>: <problem>`` on stderr and exit code 2. The subjects finished before it keep their
    outputs and records, so a rerun (after the input is mended or taken out of the datalist) goes on from there.
    Other failures propagate unchanged.

    Args:
        step: the callable to run (e.g. the evaluator's ``run``, or :func:`asfe3d.training.train`).
        *args: its positional arguments.
        **kwargs: its keyword arguments.

    Returns:
        What ``step`` returns.

    Raises:
        SystemExit: (code 2) from the ``python -m monai.bundle`` command line, after the one line.
        Asfe3dInputError: in another process (``monai.bundle.run(...)`` from Python), unwrapped from the
            transform's ``RuntimeError`` s (MONAI's config expression wraps it once more: it is then that
            ``RuntimeError``'s ``__cause__``).
    """
    try:
        with _input_errors_unlogged():
            return step(*args, **kwargs)
    except Exception as exc:
        error = _input_error(exc)
        if error is None:
            raise
        if _bundle_command_line() is None:
            raise error from exc
        import sys

        logger.debug("run_step: stopped by an input error", exc_info=True)
        print(f"asfe3d: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
