"""The training engine: ``train(config) -> TrainResult``.

One configuration dict (YAML in ``configs/``; keys in :data:`DEFAULT_CONFIG` and ``docs/training.md``) fully
describes a run: the network (``spatial_dims``, ``preset``, ``network`` overrides), the data (HMIF 2D pairs or the
simulated 3D pairs), the loss weights, and the optimisation (AdamW, per-step cosine learning rate).

Each epoch: training on the train part, the loss on the validation part, then ``<out>/last.pt`` (network,
optimizer, scheduler and scaler state, history: for ``resume``), ``<out>/best.pt`` when the validation loss
improved (the :func:`asfe3d.fusion.weights.save_weights` format with provenance in ``meta``), ``<out>/log.csv``
and ``<out>/loss.png``. Under torchrun, only rank 0 writes.
"""

from __future__ import annotations

import copy
import csv
import inspect
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from asfe3d.distributed import DistInfo, cleanup_training, setup_training
from asfe3d.errors import Asfe3dInputError, ConfigError
from asfe3d.utils.checks import is_int, is_real

__all__ = ["DEFAULT_CONFIG", "TrainResult", "resolve_config", "build_datasets", "train"]

_HMIF_DATA = {
    "source": "hmif", "path": None, "task": "PET-MRI", "val_fraction": 0.2, "gap": 2, "crop": 128,
    "val_crop": None, "val_limit": None,
}
_SIM_DATA = {
    "source": "simulated", "length": 64, "val_length": 8, "crop": [64, 64, 64], "resolution": 1.5, "bank_size": 8,
    "val_bank_size": 2, "tracers": ["fdg", "amyloid"], "fwhm_range": [4.0, 8.0], "noise_range": [0.02, 0.08],
    "motion_deg": 2.0, "motion_mm": 2.0, "gamma_range": [0.8, 1.25],
}
_WHOLEHEAD_DATA = {
    "source": "wholehead", "path": None, "anatomies": ["avg152T1", "avg152T2", "avg152PD", "mni_synth"],
    "val_anatomies": ["avg305T1"], "patterns": ["fdg", "fdg_ad", "amyloid_neg", "amyloid_pos"], "length": 64,
    "val_length": 8, "crop": [48, 48, 48], "bank_size": 12, "val_bank_size": 4, "refresh": 2,
    "mix_hmif": False, "hmif_task": "PET-MRI", "mri_mm": None, "bank_workers": 0,
}
#: the user's own MRI/PET pairs (a pairs CSV: ``subject, mri, pet``), fine-tuning on them
_PAIRS_DATA = {
    "source": "pairs", "path": None, "val_subjects": None, "val_fraction": 0.2, "registration": "auto",
    "length": 64, "val_length": 8, "crop": None, "flip": True,
}
_DATA_DEFAULTS = {"hmif": _HMIF_DATA, "simulated": _SIM_DATA, "wholehead": _WHOLEHEAD_DATA, "pairs": _PAIRS_DATA}
_LOSS_KEYS = ("w_content", "w_gradient", "w_ssim", "content_target", "sigma_tensor", "sigma_ssim", "w_edge",
              "w_change", "change_size_mm", "change_fraction", "change_raise", "change_voxel_mm", "change_min_pet", "change_hot", "change_grid_mm", "w_petc", "w_detail", "band_fwhm_mm",
              "band_voxel_mm", "detail_gain")
#: offsets of the seeds of the focal PET changes (``loss.w_change > 0``): training draws, validation draws
_CHANGE_SEED, _VAL_CHANGE_SEED = 7919, 104723

#: Every key a configuration may hold, with its default. ``data`` defaults depend on ``data.source``.
DEFAULT_CONFIG: dict[str, Any] = {
    "spatial_dims": 2,
    "preset": "efficient",
    "network": {},
    "data": _HMIF_DATA,
    "loss": {},
    "train": {
        "epochs": 8,
        "batch_size": 8,
        "steps_per_epoch": None,
        "lr": 2e-3,
        "min_lr": 1e-5,
        "weight_decay": 1e-4,
        "grad_clip": 1.0,
        "val_batch_size": 1,
        "num_workers": 0,
        "num_threads": 2,
        "seed": 0,
        "device": "auto",
        "amp": True,
        "init": None,
    },
    "out": "runs/train",
}


def _merge(defaults: dict[str, Any], given: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} in {where}; allowed: {sorted(defaults)}")
    out = copy.deepcopy(defaults)
    out.update(copy.deepcopy(given))
    return out


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Fill in defaults and check every key and value of a training configuration.

    Args:
        config: a (possibly partial) configuration; see :data:`DEFAULT_CONFIG`.

    Returns:
        The complete configuration (a new dict).

    Raises:
        ValueError: an unknown key (quoting it and the allowed ones) or a bad value.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a dict, got {type(config).__name__}")
    for section in ("data", "train", "loss", "network"):
        if config.get(section) is not None and not isinstance(config[section], dict):
            raise ConfigError(f"{section} must be a mapping of settings (key: value lines), got {config[section]!r}")
    cfg = _merge({k: v for k, v in DEFAULT_CONFIG.items() if k != "data"} | {"data": {}}, config, "the config")
    data = dict(config.get("data") or {})
    source = data.get("source", "hmif")
    if source not in _DATA_DEFAULTS:
        raise ConfigError(f"data.source must be one of {sorted(_DATA_DEFAULTS)}, got {source!r}")
    cfg["data"] = _merge(_DATA_DEFAULTS[source], data, f"data (source {source!r})")
    cfg["train"] = _merge(DEFAULT_CONFIG["train"], dict(config.get("train") or {}), "train")
    loss = dict(config.get("loss") or {})
    bad = sorted(set(loss) - set(_LOSS_KEYS))
    if bad:
        raise ConfigError(f"unknown config key(s) {bad} in loss; allowed: {sorted(_LOSS_KEYS)}")
    cfg["loss"] = loss
    if not isinstance(cfg["network"], dict):
        raise ConfigError(f"network must be a mapping of ASFEFusion overrides, got {cfg['network']!r}")
    if cfg["spatial_dims"] not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {cfg['spatial_dims']!r}")
    if source == "hmif" and cfg["spatial_dims"] != 2:
        raise ConfigError(f"data.source 'hmif' holds 2D images and needs spatial_dims 2, got {cfg['spatial_dims']}")
    if source == "simulated" and cfg["spatial_dims"] != 3:
        raise ConfigError(f"data.source {source!r} gives 3D crops and needs spatial_dims 3, got {cfg['spatial_dims']}")
    if source == "hmif" and not cfg["data"]["path"]:
        raise ConfigError("data.path (the HMIF folder) is required for data.source 'hmif' (CLI: --data)")
    if source == "wholehead" and not cfg["data"]["path"]:
        raise ConfigError("data.path (the SPM12 data folder) is required for data.source 'wholehead' (CLI: --data)")
    if source == "pairs":
        _check_pairs_data(cfg["data"], cfg["spatial_dims"])
    if source == "wholehead" and cfg["data"]["mix_hmif"] and cfg["spatial_dims"] != 2:
        raise ConfigError(f"data.mix_hmif mixes in 2D HMIF images and needs spatial_dims 2, got {cfg['spatial_dims']}")
    if source == "wholehead":
        _check_people(cfg["data"]["anatomies"], cfg["data"]["val_anatomies"])
        workers = cfg["data"]["bank_workers"]
        if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0):
            raise ConfigError(f"data.bank_workers must be an integer >= 0, got {workers!r}")
        if workers > 0 and cfg["train"]["num_workers"] > 0:
            raise ConfigError(f"data.bank_workers ({workers}) and train.num_workers ({cfg['train']['num_workers']}) "
                             "both start worker processes: use one of them")
    t = cfg["train"]
    for key in ("epochs", "batch_size", "val_batch_size", "num_threads"):
        if not (is_int(t[key]) and t[key] >= 1):  # (``true`` is no count: it ran one epoch)
            raise ConfigError(f"train.{key} must be an integer >= 1, got {t[key]!r}")
    _check_run_values(cfg, source)
    if t["steps_per_epoch"] is not None and not (isinstance(t["steps_per_epoch"], int) and t["steps_per_epoch"] >= 1):
        raise ConfigError(f"train.steps_per_epoch must be null or an integer >= 1, got {t['steps_per_epoch']!r}")
    if not (isinstance(t["num_workers"], int) and t["num_workers"] >= 0):
        raise ConfigError(f"train.num_workers must be an integer >= 0, got {t['num_workers']!r}")
    for key in ("lr", "min_lr", "weight_decay", "grad_clip"):
        v = t[key]
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"train.{key} must be a finite number >= 0, got {v!r}")
    if not t["lr"] > 0:
        raise ConfigError(f"train.lr must be > 0, got {t['lr']!r}")
    if t["min_lr"] > t["lr"]:  # the cosine schedule would climb to it
        raise ConfigError(f"train.min_lr ({t['min_lr']!r}) must not exceed train.lr ({t['lr']!r}): the schedule "
                          "falls from lr to min_lr")
    if t["init"] == "shipped":  # the weights the package ships for this dimension (wherever it is installed)
        from asfe3d.fusion.weights import shipped_weights

        t["init"] = str(shipped_weights("volume" if cfg["spatial_dims"] == 3 else "slice"))
    if t["init"] is not None and not (isinstance(t["init"], str) and Path(t["init"]).expanduser().is_file()):
        raise ConfigError(f"train.init must be null, 'shipped' or an existing weight file (a relative path is taken "
                          f"from the current folder, {str(Path.cwd())!r}), got {t['init']!r}")
    if t["init"] is not None:
        t["init"] = str(Path(t["init"]).expanduser())
    length = cfg["data"].get("length") if source == "pairs" else None  # (wholehead's mix_hmif adds items)
    if t["steps_per_epoch"] is None and isinstance(length, int) and length < t["batch_size"]:
        raise ConfigError(f"no full training batch: data.length {length} items with train.batch_size "
                          f"{t['batch_size']} (and train.steps_per_epoch null)")
    return cfg


def _check_run_values(cfg: dict[str, Any], source: str) -> None:
    """The values :func:`resolve_config` checked only when they were used (a traceback then, or a silent
    stand-in): ``train.seed``, ``amp``, ``device``, ``out``, and the HMIF validation crop and limit.

    Raises:
        ConfigError: the key and the value quoted.
    """
    t, d = cfg["train"], cfg["data"]
    if not is_int(t["seed"]):
        raise ConfigError(f"train.seed must be an integer, got {t['seed']!r}")
    from asfe3d.fusion.learned import resolve_device
    from asfe3d.settings import as_bool

    try:  # ("maybe" ran as true; the bundle's command line gives the words "true" / "false")
        t["amp"] = as_bool("train.amp", t["amp"])
    except Asfe3dInputError:
        raise ConfigError(f"train.amp must be true or false, got {t['amp']!r}") from None
    try:  # what the run will use: a torch.device, or a GPU this machine lacks, as the run itself would judge it
        resolve_device(t["device"])
    except ValueError as exc:
        raise ConfigError(f"train.{exc}") from None
    if not (isinstance(cfg["out"], (str, os.PathLike)) and str(cfg["out"]).strip()):
        raise ConfigError(f"out (the run folder; CLI: --out) must be a path, got {cfg['out']!r}")
    if "val_fraction" in d and not (is_real(d["val_fraction"]) and 0 < d["val_fraction"] < 1):  # hmif, pairs
        raise ConfigError(f"data.val_fraction must be a number in (0, 1), got {d['val_fraction']!r}")
    if source == "hmif":
        from asfe3d.data.hmif import HMIF_TASKS

        crop = d["crop"]
        if not ((is_int(crop) and crop >= 8) or (isinstance(crop, (list, tuple)) and len(crop) == 2
                                                   and all(is_int(c) and c >= 8 for c in crop))):
            raise ConfigError(f"data.crop must be an integer >= 8 or [height, width], got {crop!r}")
        if d["task"] not in HMIF_TASKS:
            raise ConfigError(f"data.task must be one of {sorted(HMIF_TASKS)}, got {d['task']!r}")
        if d["val_crop"] is not None and not (is_int(d["val_crop"]) and d["val_crop"] >= 8):
            raise ConfigError(f"data.val_crop must be null (the training crop) or an integer >= 8, got "
                              f"{d['val_crop']!r}")
        if d["val_limit"] is not None and not (is_int(d["val_limit"]) and d["val_limit"] >= 1):
            raise ConfigError(f"data.val_limit must be null (every validation image) or an integer >= 1, got "
                              f"{d['val_limit']!r}")


def _check_people(anatomies: list[str], val_anatomies: list[str]) -> None:
    """Refuse a validation anatomy whose person is trained on (``bert_synth`` is ``bert``'s labels in another
    contrast: :data:`asfe3d.data.individual.SAME_PERSON`); warn when training takes the person the shipped weights'
    selection holds out (:data:`asfe3d.data.individual.HELD_OUT`).

    Raises:
        ConfigError: naming the anatomies and the person they share.
    """
    import logging

    from asfe3d.data.individual import HELD_OUT, SAME_PERSON

    people = {name: SAME_PERSON.get(name, name) for name in [*anatomies, *val_anatomies]}
    trained = {people[name]: name for name in anatomies}
    shared = [(name, trained[people[name]]) for name in val_anatomies if people[name] in trained]
    if shared:
        same = "".join(f"; {v} and {t} are one person (its labels in another contrast)" for v, t in shared if v != t)
        raise ConfigError(f"data.val_anatomies must be held out of data.anatomies, both hold "
                          f"{sorted(v for v, _ in shared)}{same}")
    taken = sorted(people[name] for name in anatomies if people[name] in HELD_OUT)
    if taken:
        logging.getLogger("asfe3d").warning(
            "data.anatomies trains on %s, the person the shipped weights were chosen on (held out of their training, "
            "docs/training.md): weights trained on it cannot be chosen on it", ", ".join(taken))


def _check_pairs_data(d: dict[str, Any], spatial_dims: int) -> None:
    """The ``data`` keys of ``data.source: pairs`` (the CSV itself is read when the datasets are built)."""
    from asfe3d.defaults import REGISTRATION_CHOICES

    if not d["path"]:
        raise ConfigError("data.path (the pairs CSV: subject, mri, pet) is required for data.source 'pairs' "
                          "(CLI: --data)")
    if d["crop"] is None:  # 64 voxels along every axis of the network's dimension
        d["crop"] = [64] * spatial_dims
    crop = d["crop"]
    if not (isinstance(crop, list) and len(crop) == spatial_dims and all(is_int(c) and c >= 8 for c in crop)):
        raise ConfigError(f"data.crop must be {spatial_dims} integers >= 8 (spatial_dims {spatial_dims}; 2D: the "
                          f"axial plane), got {crop!r}")
    for key in ("length", "val_length"):
        if not (is_int(d[key]) and d[key] >= 1):
            raise ConfigError(f"data.{key} must be an integer >= 1, got {d[key]!r}")
    if d["registration"] not in REGISTRATION_CHOICES:
        raise ConfigError(f"data.registration must be one of {list(REGISTRATION_CHOICES)}, got {d['registration']!r}")
    val = d["val_subjects"]
    if val is not None and not (isinstance(val, list) and val and all(isinstance(v, str) and v for v in val)):
        raise ConfigError(f"data.val_subjects must be null or a non-empty list of subject names, got {val!r}")
    if not isinstance(d["flip"], bool):
        raise ConfigError(f"data.flip must be true or false, got {d['flip']!r}")


def split_subjects(rows: list[dict[str, Any]], val_subjects: list[str] | None, val_fraction: float,
                   csv_path: str | Path = "the pairs CSV") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training and validation pairs of a pairs CSV, whole subjects apart: ``val_subjects`` by name, else the last
    ``max(1, round(val_fraction * n))`` rows.

    Raises:
        ConfigError: a named subject not in the CSV, or naming every subject.
        Asfe3dInputError: a CSV too short to split, or a PET that a training and a validation subject share (the
            validation would not be held out; a shared MRI is taken: a template in which every PET is given): the
            same file, or, when the rows hold ``pet_sha256``, the same contents under another name.
    """
    from asfe3d.errors import Asfe3dInputError

    names = [r["subject"] for r in rows]
    if val_subjects is not None:
        unknown = [v for v in val_subjects if v not in names]
        if unknown:
            raise ConfigError(f"data.val_subjects names subjects the pairs CSV does not hold: {unknown} (it holds "
                              f"{names})")
        val = [r for r in rows if r["subject"] in val_subjects]
        train = [r for r in rows if r["subject"] not in val_subjects]
    else:
        k = max(1, round(val_fraction * len(rows)))
        train, val = rows[: len(rows) - k], rows[len(rows) - k:]
    if not train or not val:
        problem = (f"its {len(rows)} subject(s) give {len(train)} for training and {len(val)} for validation: both "
                   "need at least one (whole subjects are held out)")
        if val_subjects is not None:
            raise ConfigError(f"data.val_subjects and the pairs CSV {str(csv_path)!r}: {problem}")
        raise Asfe3dInputError(csv_path, problem)
    # a PET is a subject's own: one on both sides would not be held out (an MRI may be a template all PETs share)
    seen = {str(Path(r["pet"]).resolve()): r for r in train if "pet" in r}
    contents = {r["pet_sha256"]: r for r in train if r.get("pet_sha256")}
    for r in val:
        if "pet" not in r:
            continue
        same = seen.get(str(Path(r["pet"]).resolve()))
        if same is not None:
            what = f"the PET {str(r['pet'])!r}"
        else:
            same = contents.get(r.get("pet_sha256") or "")
            what = "" if same is None else f"one PET: {str(r['pet'])!r} holds the bytes of {str(same['pet'])!r}"
        if same is not None:
            raise Asfe3dInputError(csv_path, f"validation subject {r['subject']!r} and training subject "
                                             f"{same['subject']!r} share {what}: the validation would not be held out")
    return train, val


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        out_dir: the run folder.
        best_path: ``best.pt`` (weights in the ``save_weights`` format).
        last_path: ``last.pt`` (full state for resuming).
        epochs_run: epochs completed in total (including those before a resume).
        best_epoch: epoch (1-based) of the lowest validation loss.
        best_val_loss: that loss.
        final_train_loss: training loss of the last epoch.
        final_val_loss: validation loss of the last epoch.
        seconds: wall time of the epochs of this call (excluding the data set-up).
        history: one dict per epoch (the rows of ``log.csv``).
    """

    out_dir: Path
    best_path: Path
    last_path: Path
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    final_train_loss: float
    final_val_loss: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


class _CentreCrop(Dataset):
    """Validation view of an HMIF dataset: optional centre crop and a deterministic subset."""

    def __init__(self, base: Dataset, crop: int | None, limit: int | None) -> None:
        self.base = base
        self.crop = crop
        n = len(base)  # type: ignore[arg-type]
        self.indices = list(range(n)) if not limit or limit >= n else np.linspace(0, n - 1, limit).round().astype(int).tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.base[self.indices[i]])
        if self.crop:
            img = item["image"]
            h, w = img.shape[-2:]
            top, left = max(0, (h - self.crop) // 2), max(0, (w - self.crop) // 2)
            item["image"] = img[:, top: top + self.crop, left: left + self.crop]
        return item


def build_datasets(cfg: dict[str, Any]) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """Training and validation datasets of a resolved configuration.

    Args:
        cfg: output of :func:`resolve_config`.

    Returns:
        ``(train_ds, val_ds, description)``: items are ``{"image": (2, *spatial)}``; ``description`` records
        what data was used (for the provenance of the weights).

    Raises:
        Asfe3dInputError: the HMIF folder is missing or malformed, or a split is empty.
    """
    from asfe3d.errors import Asfe3dInputError

    d = cfg["data"]
    seed = cfg["train"]["seed"]
    if d["source"] == "pairs":
        from asfe3d.data.pairs import VolumePairDataset, read_pairs_csv
        from asfe3d.io.record import content_digest

        rows = read_pairs_csv(d["path"])
        split_subjects(rows, d["val_subjects"], d["val_fraction"], Path(d["path"]).expanduser())  # names: no reading
        for r in rows:  # what each subject's files hold: the provenance, the resume check, the prepared pairs' names
            # and the split's check (a PET copied under another name is the same PET)
            r.update({f"{k}_sha256": content_digest(r[k]) for k in ("mri", "pet")})
        train_rows, val_rows = split_subjects(rows, d["val_subjects"], d["val_fraction"], Path(d["path"]).expanduser())
        # prepared pairs are kept in the run folder, memory-mapped (a cohort larger than the memory; a resume
        # skips the registration)
        common = {"crop": d["crop"], "registration": d["registration"], "spatial_dims": cfg["spatial_dims"],
                  "cache_dir": Path(cfg["out"]) / "prepared_pairs"}
        train_ds = VolumePairDataset(train_rows, d["length"], seed=seed, flip=d["flip"], **common)
        # validation: the held-out subjects, the same crops every epoch (no set_epoch), no flips; the pairs are
        # prepared (read, registered, judged) by train() after its cheap checks, before the first step
        val_ds = VolumePairDataset(val_rows, d["val_length"], seed=seed + 100003, flip=False, **common)
        desc = {"source": "pairs", "path": str(Path(d["path"]).expanduser().resolve()),
                **{k: d[k] for k in d if k not in ("source", "path", "val_subjects")},
                "train": [r["subject"] for r in train_rows], "val": [r["subject"] for r in val_rows],
                # what each subject's files hold: a resume on the same names with other volumes is refused
                "files": {r["subject"]: {k: r[f"{k}_sha256"] for k in ("mri", "pet")} for r in rows}}
        return train_ds, val_ds, desc
    if d["source"] == "hmif":
        from asfe3d.data.hmif import HmifDataset, list_pairs, split_pairs

        root = Path(d["path"])
        pairs = list_pairs(root, None if (root / "MRI").is_dir() else d["task"])
        train_pairs, val_pairs = split_pairs(pairs, d["val_fraction"], d["gap"])
        if not train_pairs or not val_pairs:
            raise Asfe3dInputError(root, f"data.val_fraction {d['val_fraction']!r} and data.gap {d['gap']!r} split its "
                                         f"{len(pairs)} pairs into {len(train_pairs)} for training and "
                                         f"{len(val_pairs)} for validation: both need some")
        train_ds = HmifDataset(train_pairs, augment=True, crop=d["crop"], seed=seed)
        val_ds = _CentreCrop(HmifDataset(val_pairs, augment=False), d["val_crop"], d["val_limit"])
        desc = {
            "source": "hmif", "path": str(root.resolve()), "task": d["task"], "val_fraction": d["val_fraction"],
            "gap": d["gap"], "n_pairs": len(pairs), "train": [p.name for p in train_pairs],
            "val": [p.name for p in val_pairs], "val_used": len(val_ds),
            "cases": sorted({p.case for p in pairs}), "other_kind": pairs[0].other_kind,
        }
        return train_ds, val_ds, desc
    if d["source"] == "wholehead":
        from asfe3d.data.wholehead import WholeHeadPairDataset

        root = Path(d["path"])
        if not root.is_dir():
            raise Asfe3dInputError(root, "SPM12 data folder not found (data.path / --data)")
        nd = cfg["spatial_dims"]  # 2: axial-slice crops of the same subjects, for the slice-wise network
        train_ds = WholeHeadPairDataset(root, d["length"], d["anatomies"], d["crop"], seed=seed,
                                        bank_size=d["bank_size"], refresh=d["refresh"], patterns=d["patterns"],
                                        spatial_dims=nd, mri_mm=d["mri_mm"], workers=d["bank_workers"])
        train_ds.epochs = cfg["train"]["epochs"]  # no subjects made ahead for an epoch the run will not reach
        # validation: held-out anatomies, a fixed bank (another seed), no flips, the same items every epoch
        val_ds = WholeHeadPairDataset(root, d["val_length"], d["val_anatomies"], d["crop"], seed=seed + 100003,
                                      bank_size=d["val_bank_size"], refresh=0, patterns=d["patterns"], flip=False,
                                      spatial_dims=nd, mri_mm=d["mri_mm"], workers=d["bank_workers"])
        if d["bank_workers"]:
            val_ds.set_epoch(0)  # the fixed bank, made in parallel now
        desc = {"source": "wholehead", "path": str(root.resolve()), **{k: d[k] for k in d if k not in ("source", "path")}}
        if d["mix_hmif"]:  # 2D only: the HMIF train split's crops mixed in, one HMIF pair per simulated slice
            from asfe3d.data.hmif import HmifDataset, list_pairs, split_pairs

            hroot = root / "hmif"  # data.path holds spm12/, individual/ and hmif/
            if not hroot.is_dir():
                raise Asfe3dInputError(hroot, "data.mix_hmif needs the HMIF folder hmif/ inside data.path")
            pairs = list_pairs(hroot, None if (hroot / "MRI").is_dir() else d["hmif_task"])
            hmif_train, _ = split_pairs(pairs, _HMIF_DATA["val_fraction"], _HMIF_DATA["gap"])
            hmif = HmifDataset(hmif_train, augment=True, crop=tuple(d["crop"]), seed=seed)
            train_ds = _MixedImages([train_ds, hmif])
            desc["hmif"] = {"path": str(hroot.resolve()), "task": d["hmif_task"], "train": len(hmif_train)}
        return train_ds, val_ds, desc
    from asfe3d.data.volumes import SimulatedPairDataset

    common = {
        k: d[k] for k in ("crop", "resolution", "tracers", "fwhm_range", "noise_range", "motion_deg", "motion_mm")
    }
    train_ds = SimulatedPairDataset(d["length"], seed=seed, bank_size=d["bank_size"], gamma_range=d["gamma_range"], **common)
    # validation: its own PET bank (another seed), no flips/gamma, the same items every epoch
    val_ds = SimulatedPairDataset(d["val_length"], seed=seed + 100003, bank_size=d["val_bank_size"],
                                  gamma_range=(1.0, 1.0), flip=False, **common)
    desc = {"source": "simulated", "mni": "MNI152 2009a (nilearn package data)", **{k: d[k] for k in d if k != "source"}}
    return train_ds, val_ds, desc


def close_datasets(*datasets: Any) -> None:
    """Stop the worker processes of the datasets that have them (``close``, e.g. ``data.bank_workers``)."""
    for ds in datasets:
        if hasattr(ds, "close"):
            ds.close()


class _MixedImages(Dataset):
    """Items of several datasets in turn (``{"image"}`` only, so batches mix them); ``set_epoch`` is passed on."""

    def __init__(self, parts: list[Dataset]) -> None:
        self.parts = parts
        self.length = len(parts) * min(len(p) for p in parts)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)

    def close(self) -> None:
        close_datasets(*self.parts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        part = self.parts[index % len(self.parts)]
        return {"image": part[(index // len(self.parts)) % len(part)]["image"]}  # type: ignore[arg-type]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _git(*args: str) -> subprocess.CompletedProcess | None:
    """``git args`` in the package's own checkout, or ``None`` when it is not one (an install in site-packages,
    perhaps inside a user's repository, whose commit is not the package's code)."""
    root = Path(__file__).resolve().parents[2]
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             timeout=10)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
            return None
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit() -> str | None:
    """The commit of the package's checkout (``None`` outside one)."""
    out = _git("rev-parse", "HEAD")
    return (out.stdout.strip() or None) if out is not None and out.returncode == 0 else None


def _git_changed() -> bool | None:
    """Whether the package's checkout has local changes (``git status``: tracked files changed, or files not yet
    tracked), so that a commit recorded with weights is known to be their code or not; ``None`` outside one."""
    out = _git("status", "--porcelain")
    return bool(out.stdout.strip()) if out is not None and out.returncode == 0 else None


def _this_run(command: str | None, progress: _Progress, t: dict[str, Any], resume: bool) -> dict[str, Any]:
    """The entry of :attr:`_Progress.runs` for this call."""
    from asfe3d.io.record import content_digest

    init = None
    if t["init"] is not None and not resume:  # used only when a run starts (a resume's is not)
        path = Path(t["init"]).expanduser().resolve()
        init = {"path": str(path), "sha256": content_digest(path)}
    return {"command": _command_text(command), "working_directory": os.getcwd(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "from_epoch": progress.start_epoch, "epochs": t["epochs"],
            "git_commit": _git_commit(), "git_local_changes": _git_changed(), "init": init}


def _command_text(command: str | None) -> str:
    """The command to record: the one given, else this process's (quoted as a shell reads it; from Python, e.g. a
    notebook, the host program's)."""
    import shlex

    return command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def _earlier_runs(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The :attr:`_Progress.runs` of a ``last.pt``; one written before they were recorded (2026-12-08) gets an
    entry saying its first calls are unknown (else the resume read as the run's first call, and a fine-tune's
    starting weights as none)."""
    if "runs" in state:
        return list(state["runs"] or [])
    init = (state.get("config") or {}).get("train", {}).get("init")
    return [{"command": None, "unrecorded": "trained before asfe3d recorded its calls: command, folder and the "
                                          "starting weights' content unknown",
             "from_epoch": 0, "epochs": state.get("epoch"), "init": None if init is None else {"path": str(init)}}]


def _hardware(device: torch.device, threads: int) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device), "torch": str(torch.__version__), "python": platform.python_version(),
        "cpu_threads": threads, "cpu_count": os.cpu_count(), "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _atomic_torch_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # as any new file (mkstemp makes it 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_log(history: list[dict[str, float]], out: Path) -> None:
    if not history:
        return
    keys = list(history[0])
    fd, tmp = tempfile.mkstemp(prefix=".log.csv.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(history)
        os.chmod(tmp, 0o666 & ~_umask())  # as any new file (mkstemp makes it 0600)
        os.replace(tmp, out / "log.csv")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plot(history: list[dict[str, float]], out: Path) -> None:
    """Write ``out/loss.png`` atomically (a temporary file renamed into place: an interrupted run leaves no partial
    PNG), on an Agg canvas of its own (never ``pyplot``: the caller's backend, e.g. a notebook's, is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(5, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax.plot(ep, [h["val_loss"] for h in history], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=".loss.png.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out / "loss.png")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@dataclass
class _Optimisation:
    """The network being trained and what updates it.

    Attributes:
        net: the network (not wrapped for torchrun).
        loss_fn: the ``ASFEFusionLoss`` of ``cfg["loss"]``.
        opt: AdamW over ``net``'s parameters.
        sched: the per-step cosine learning rate.
        scaler: the mixed-precision gradient scaler (disabled unless ``train.amp`` on CUDA).
        use_amp: mixed precision on.
        change_gen: draws the focal PET changes of the change-fidelity term (saved in ``last.pt`` for resume).
    """

    net: torch.nn.Module
    loss_fn: Any
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    use_amp: bool
    change_gen: torch.Generator


@dataclass
class _Progress:
    """What the run has done so far: nothing, or what ``last.pt`` holds on resume.

    Attributes:
        history: one row of ``log.csv`` per epoch done.
        start_epoch: epochs done (the 0-based index of the next one).
        best_val: the lowest validation loss so far.
        best_epoch: its epoch (1-based; 0 before the first).
        best_state: the network's state at that epoch (CPU tensors), or None.
        prior_seconds: epoch time of earlier calls (resume).
        runs: one entry per call that trained this run (the first, then each ``--resume``): its command, working
            folder, date, the epochs it started from and was planned to, the code's commit and local changes, and
            the starting weights it used (``train.init``: absolute path and SHA-256).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    prior_seconds: float = 0.0
    runs: list[dict[str, Any]] = field(default_factory=list)


def _setup_process(t: dict[str, Any], out: Path) -> tuple[torch.device, DistInfo]:
    """Set this process's threads, device, torchrun group and seeds; rank 0 makes the run folder ``out``.

    Args:
        t: the ``train`` part of the configuration.
        out: the run folder.

    Returns:
        ``(device, dist_info)``; under torchrun on CUDA the device is this rank's GPU.
    """
    from asfe3d.fusion.learned import resolve_device

    torch.set_num_threads(t["num_threads"])
    device = resolve_device(t["device"])
    dist_info: DistInfo = setup_training(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    _seed_everything(t["seed"] + dist_info.rank)
    if dist_info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    return device, dist_info


def _loaders(train_ds: Dataset, val_ds: Dataset, t: dict[str, Any],
             dist_info: DistInfo) -> tuple[DataLoader, DataLoader, int]:
    """The training and validation loaders, and the training steps per epoch.

    Training batches are ``(train.batch_size, 2, *spatial)``: ``train.steps_per_epoch`` of them drawn with
    replacement when set, else one pass in random order; under torchrun each rank gets its shard. Validation
    batches (``train.val_batch_size``) go through the validation set in order.

    Args:
        train_ds, val_ds: from :func:`build_datasets`.
        t: the ``train`` part of the configuration.
        dist_info: this process's place in the torchrun group.

    Returns:
        ``(train_loader, val_loader, steps)``.

    Raises:
        ValueError: not one full training batch.
    """
    sampler: Any
    gen = torch.Generator().manual_seed(t["seed"] + dist_info.rank)
    if dist_info.enabled:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(train_ds, shuffle=True, seed=t["seed"])
    elif t["steps_per_epoch"]:
        sampler = torch.utils.data.RandomSampler(
            train_ds, replacement=True, num_samples=t["steps_per_epoch"] * t["batch_size"], generator=gen
        )
    else:
        sampler = torch.utils.data.RandomSampler(train_ds, generator=gen)
    train_loader = DataLoader(train_ds, batch_size=t["batch_size"], sampler=sampler, drop_last=True,
                              num_workers=t["num_workers"],
                              # workers kept across epochs draw from their own copy of the dataset: one that draws
                              # per epoch gets new workers each epoch unless its epoch is shared with them
                              # (asfe3d.data.shared.SharedEpoch: every dataset of the package shares it)
                              persistent_workers=t["num_workers"] > 0 and (not hasattr(train_ds, "set_epoch")
                                                                           or getattr(train_ds, "shares_epoch", False)))
    val_loader = DataLoader(val_ds, batch_size=t["val_batch_size"], shuffle=False, num_workers=0)
    steps = len(train_loader)
    if t["steps_per_epoch"] and dist_info.enabled:
        steps = min(steps, t["steps_per_epoch"])
    if steps < 1:
        raise ConfigError(f"no full training batch: {len(train_ds)} items with train.batch_size {t['batch_size']}")
    return train_loader, val_loader, steps


def _build_network(cfg: dict[str, Any], device: torch.device, resume: bool) -> torch.nn.Module:
    """The configuration's ``ASFEFusion`` on ``device``, started from ``train.init`` (fine-tuning) unless resuming.

    Raises:
        ValueError: ``train.init`` holds another network config.
    """
    from asfe3d.networks.nets import ASFEFusion

    t = cfg["train"]
    net = ASFEFusion(cfg["spatial_dims"], cfg["preset"], **cfg["network"]).to(device)
    if t["init"] is not None and not resume:  # fine-tuning: start from a weight file of the same network
        net.load_state_dict(_init_weights(t["init"], net.config)["state_dict"])
    return net


def _init_weights(path: str, config: dict[str, Any]) -> dict[str, Any]:
    """The weight file ``train.init``, checked to hold the network ``config``.

    Raises:
        Asfe3dInputError: not an asfe3d weight file.
        ValueError: another network config (the first setting that differs is named).
    """
    import json

    from asfe3d.fusion.weights import load_weights

    init = load_weights(path)
    theirs, ours = json.loads(json.dumps(init["config"])), json.loads(json.dumps(config))
    if theirs != ours:
        key = next(k for k in [*theirs, *ours] if theirs.get(k) != ours.get(k))
        raise ConfigError(f"train.init {path!r} holds another network config ({key} = {theirs.get(key)!r}, this "
                         f"configuration's network has {ours.get(key)!r}): {init['config']}")
    return init


def _check_network_and_loss(cfg: dict[str, Any]) -> dict[str, Any]:
    """Build the configuration's network (on the meta device: no memory, no random numbers drawn, so the run is
    unchanged) and its loss once, before any data is made: a bad ``preset``, ``network`` override or ``loss`` value
    is a :class:`ConfigError` (one line naming the config file), not a traceback after the datasets were built.

    Returns:
        The network's config (what ``train.init`` is checked against).

    Raises:
        ConfigError: what the network or the loss refused, under the section it came from.
    """
    from asfe3d.losses.fusion_loss import ASFEFusionLoss
    from asfe3d.networks.nets import ASFEFusion

    try:
        with torch.device("meta"):
            config = ASFEFusion(cfg["spatial_dims"], cfg["preset"], **cfg["network"]).config
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"preset / network: {exc}") from None
    loss_kwargs = dict(cfg["loss"])
    allowed = set(inspect.signature(ASFEFusionLoss).parameters) - {"spatial_dims"}
    bad = sorted(set(loss_kwargs) - allowed)
    if bad:
        raise ConfigError(f"loss key(s) {bad} are not arguments of ASFEFusionLoss; allowed: {sorted(allowed)}")
    try:
        ASFEFusionLoss(cfg["spatial_dims"], **loss_kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"loss: {exc}") from None
    return config


def _build_optimisation(cfg: dict[str, Any], net: torch.nn.Module, device: torch.device, steps: int,
                        rank: int) -> _Optimisation:
    """The loss, optimizer, per-step cosine schedule (``train.epochs * steps`` steps) and scaler for ``net``.

    The loss settings were checked before any data was made (:func:`_check_network_and_loss`).
    """
    from asfe3d.losses.fusion_loss import ASFEFusionLoss

    t = cfg["train"]
    loss_fn = ASFEFusionLoss(cfg["spatial_dims"], **cfg["loss"]).to(device)  # checked by _check_network_and_loss
    opt = torch.optim.AdamW(net.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t["epochs"] * steps, eta_min=t["min_lr"])
    use_amp = bool(t["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    # the focal PET changes of the change-fidelity term: their own generator, saved in last.pt for resume
    change_gen = torch.Generator().manual_seed(t["seed"] + _CHANGE_SEED + rank)
    return _Optimisation(net, loss_fn, opt, sched, scaler, use_amp, change_gen)


#: the files a run writes in its folder (``out``); a new run (not ``resume``) refuses a folder holding any of them
RUN_FILES = ("last.pt", "best.pt", "log.csv", "loss.png")
#: settings that may change when a run is resumed (``train.epochs`` re-plans the cosine schedule; the others do not
#: change what is trained); a change of any other setting is refused
RESUME_MAY_CHANGE = frozenset({"out", "data.path", "data.bank_workers", "train.epochs", "train.device",
                               "train.num_threads", "train.num_workers", "train.val_batch_size", "train.init"})


_UNSET = object()


def _flat(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (lists and tuples compared as lists)."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):  # an empty mapping (``network: {}``) is no setting
            flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def check_run_folder(out: Path, resume: bool) -> dict[str, Any] | None:
    """Check the run folder before any data is made: a new run never replaces files already there.

    Args:
        out: the run folder (``out``).
        resume: the run continues ``<out>/last.pt``.

    Returns:
        The state held in ``<out>/last.pt`` when resuming, else ``None``.

    Raises:
        Asfe3dInputError: ``out`` is not a folder or cannot be created or written; a new run in a folder that
            holds any of :data:`RUN_FILES` (an earlier run's, or the user's own); ``resume`` without ``last.pt`` or
            with a ``last.pt`` that is not a checkpoint of this engine.
    """
    from asfe3d.errors import Asfe3dInputError

    if out.exists() and not out.is_dir():
        raise Asfe3dInputError(out, "the run folder (--out / out) is a file, not a folder")
    last_path = out / "last.pt"
    if resume:
        if not last_path.is_file():
            raise Asfe3dInputError(last_path, "resume asked for but the file does not exist")
        try:
            state = torch.load(last_path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise Asfe3dInputError(last_path, f"not a checkpoint of asfe3d train ({type(exc).__name__})") from None
        if not (isinstance(state, dict) and {"epoch", "net", "net_config", "optimizer", "config"} <= set(state)):
            raise Asfe3dInputError(last_path, "not a checkpoint of asfe3d train (no epoch, network or optimizer "
                                              "state)")
    else:
        state = None
        found = [name for name in RUN_FILES if (out / name).exists()]
        if found:
            raise Asfe3dInputError(out, f"already holds {', '.join(found)} (an earlier run's or your own); nothing "
                                        "was replaced: continue that run with --resume, or choose another --out "
                                        "(in the MONAI bundle: --resume True, or another --output_dir)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Asfe3dInputError(out, f"cannot create the run folder: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise Asfe3dInputError(out, "cannot write in the run folder (permission denied)")
    return state


def check_resume_config(last_path: Path, saved: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Refuse to resume a run with settings other than those it was trained with.

    Only the settings in :data:`RESUME_MAY_CHANGE` may differ (``train.epochs`` to go on to more epochs).

    Args:
        last_path: the run's ``last.pt`` (named in the message).
        saved: the resolved configuration saved in it.
        cfg: the resolved configuration of this call.

    Raises:
        Asfe3dInputError: the first setting that differs, with both values.
    """
    from asfe3d.errors import Asfe3dInputError

    try:  # a run saved by an earlier version lacks the keys added since: they take their defaults, as then
        saved = resolve_config(dict(saved) | {"train": {**saved.get("train", {}), "init": None}})
    except (ValueError, TypeError) as exc:  # compared as saved, its differences read "(not set)": say why instead
        raise Asfe3dInputError(last_path, f"its saved configuration is not one this version can resume ({exc}); "
                                          "start a new run in another --out") from None
    before, now = _flat(_json_safe(saved)), _flat(_json_safe(cfg))
    for key in sorted(set(before) | set(now)):
        if key in RESUME_MAY_CHANGE or any(key.startswith(f"{k}.") for k in RESUME_MAY_CHANGE):
            continue
        if before.get(key, _UNSET) != now.get(key, _UNSET):
            old, new = (repr(c[key]) if key in c else "(not set)" for c in (before, now))
            raise Asfe3dInputError(
                last_path, f"was trained with {key} = {old}, the configuration now gives {new}; a resumed run "
                           "keeps its settings (only train.epochs, the device, threads, workers and data.path may "
                           "change): set it back, or start a new run in another --out")


def check_resume_data(last_path: Path, saved: Any, now: dict[str, Any]) -> None:
    """Refuse resuming on other data than the run was trained on: ``data.path`` may change for a moved copy of
    the same data (the same task, pairs, split), not for another data set (a SPECT-MRI folder given to a PET-MRI
    run was taken: its epochs trained on SPECT and best.pt's provenance said SPECT for PET weights). A ``last.pt``
    of an earlier version, without a data description, is not checked.

    Raises:
        Asfe3dInputError: the first part of the description that differs, with both values.
    """
    from asfe3d.errors import Asfe3dInputError

    if not isinstance(saved, dict):
        return

    def plain(desc: dict[str, Any]) -> dict[str, Any]:  # the description without where the data lie
        return {k: (plain(v) if isinstance(v, dict) else v) for k, v in desc.items() if k != "path"}

    if "files" not in saved:  # a run recorded before the files' digests were
        now = {k: v for k, v in now.items() if k != "files"}
    before, after = _flat(_json_safe(plain(saved))), _flat(_json_safe(plain(now)))
    for key in sorted(set(before) | set(after)):
        if before.get(key, _UNSET) != after.get(key, _UNSET):
            def show(v: Any) -> str:
                text = "(not set)" if v is _UNSET else repr(v)
                return text if len(text) <= 80 else text[:77] + "..."

            raise Asfe3dInputError(last_path, f"was trained on other data: {key} was {show(before.get(key, _UNSET))}, "
                                              f"the data given now have {show(after.get(key, _UNSET))}; --data may "
                                              "name a moved copy of the same data only (start a new run in another "
                                              "--out for other data)")


def _json_safe(value: Any) -> Any:
    """``value`` with tuples as lists and paths as strings (configurations compare as their YAML would)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _replan_schedule(optim: _Optimisation, total_steps: int, step: int) -> None:
    """Stretch (or shrink) the per-step cosine to ``total_steps`` on resume with another ``train.epochs``.

    The learning rate after ``step`` steps becomes the one a run configured with the new total would have there,
    and the chainable cosine goes on from it to ``min_lr`` at ``total_steps`` (without this, a run resumed to more
    epochs climbs back towards ``lr`` after the old end, as a cosine past its period does).
    """
    sched = optim.sched
    sched.T_max = total_steps
    for group, base in zip(optim.opt.param_groups, sched.base_lrs):
        group["lr"] = sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * step / total_steps)) / 2
    sched._last_lr = [group["lr"] for group in optim.opt.param_groups]


def _restore(last_path: Path, epochs: int, optim: _Optimisation, state: dict[str, Any] | None = None,
             steps: int | None = None, generators: dict[str, torch.Generator] | None = None) -> _Progress:
    """Load ``last.pt`` into ``optim`` (network, optimizer, scheduler, scaler, generators) for resume.

    Args:
        last_path: the run's ``last.pt``.
        epochs: ``train.epochs``, the total the resumed run ends at.
        optim: the freshly built network and optimisation.
        state: what ``last.pt`` holds, when already read (:func:`check_run_folder`).
        steps: training steps per epoch; with it, a ``train.epochs`` other than the saved one re-plans the cosine
            schedule to ``epochs * steps`` steps.
        generators: the training data's generators (:func:`_data_generators`), put back in the states saved
            with the checkpoint, so that the resumed epochs draw the batches and augmentations an uninterrupted
            run would.

    Returns:
        The :class:`_Progress` saved with it.

    Raises:
        ValueError: a different network config, or ``epochs`` already done.
    """
    if state is None:
        state = torch.load(last_path, map_location="cpu", weights_only=False)
    if state["net_config"] != optim.net.config:
        raise ConfigError(f"resume: {str(last_path)!r} holds a different network config: {state['net_config']}")
    optim.net.load_state_dict(state["net"])
    optim.opt.load_state_dict(state["optimizer"])
    optim.sched.load_state_dict(state["scheduler"])
    optim.scaler.load_state_dict(state["scaler"])
    progress = _Progress(history=state["history"], start_epoch=state["epoch"], best_val=state["best_val"],
                         best_epoch=state["best_epoch"], best_state=state["best_state"],
                         prior_seconds=state.get("seconds", 0.0), runs=_earlier_runs(state))
    torch.set_rng_state(state["torch_rng"])
    if "change_rng" in state:
        optim.change_gen.set_state(state["change_rng"])
    for name, saved in (state.get("data_rng") or {}).items():
        if name in (generators or {}):
            generators[name].set_state(saved)
    if progress.start_epoch >= epochs:
        raise ConfigError(
            f"nothing to do: {str(last_path)!r} already holds {progress.start_epoch} of {epochs} epochs "
            "(raise train.epochs / --epochs to continue)"
        )
    saved_epochs = (state.get("config") or {}).get("train", {}).get("epochs")
    if steps is not None and saved_epochs is not None and saved_epochs != epochs:
        _replan_schedule(optim, epochs * steps, optim.sched.last_epoch)
    return progress


def _train_epoch(model: torch.nn.Module, optim: _Optimisation, loader: DataLoader, steps: int, grad_clip: float,
                 device: torch.device, epoch: int) -> dict[str, float]:
    """One epoch of training: ``steps`` batches ``(B, 2, *spatial)`` of ``loader``, one optimizer step each.

    The loader's dataset and sampler are told the epoch first (a refreshed bank of subjects, a new shard order).

    Args:
        model: ``optim.net``, or its torchrun wrapper.
        optim: the network and what updates it.
        loader: the training loader.
        steps: batches per epoch.
        grad_clip: largest gradient norm (``<= 0``: no clipping).
        device: where the batches go.
        epoch: the 0-based epoch.

    Returns:
        The mean of each loss component (``loss_fn.last_components``, ``"total"`` included) over the steps.

    Raises:
        FloatingPointError: a non-finite loss.
    """
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)  # the workers get this copy each epoch: they are not kept (_loaders)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    model.train()
    opt, scaler = optim.opt, optim.scaler
    sums: dict[str, float] = {}
    n = 0
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        x = batch["image"].to(device, non_blocking=True)
        loss = _batch_loss(model, optim.loss_fn, x, optim.use_amp, optim.change_gen, batch.get("spacing"))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {float(loss.detach())} at epoch {epoch + 1}, step {step}")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(optim.net.parameters(), grad_clip)
        scaler.step(opt)
        scaler.update()
        optim.sched.step()
        for k, v in optim.loss_fn.last_components.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


def _mean_over_ranks(train_parts: dict[str, float], val_loss: float, device: torch.device,
                     dist_info: DistInfo) -> float:
    """Under torchrun, replace ``train_parts["total"]`` by its mean over the ranks; return the mean ``val_loss``."""
    if not dist_info.enabled:
        return val_loss
    import torch.distributed as dist

    vals = torch.tensor([train_parts.get("total", 0.0), val_loss], device=device)
    dist.all_reduce(vals)
    train_parts["total"], val_loss = (vals / dist_info.world_size).tolist()
    return val_loss


def _data_generators(loader: DataLoader) -> dict[str, torch.Generator]:
    """The random generators that the training data draws from, by name: the sampler's and the datasets' own
    (augmentation; a dataset of several parts gives each part's). A distributed sampler has none: it is seeded per
    epoch, as the volume datasets are."""
    found: dict[str, torch.Generator] = {}
    if isinstance(getattr(loader.sampler, "generator", None), torch.Generator):
        found["sampler"] = loader.sampler.generator
    datasets = [("dataset", loader.dataset)]
    datasets += [(f"dataset.part{i}", part) for i, part in enumerate(getattr(loader.dataset, "parts", None) or [])]
    for name, ds in datasets:
        if isinstance(getattr(ds, "generator", None), torch.Generator):
            found[name] = ds.generator
    return found


def _save_last(path: Path, epoch: int, optim: _Optimisation, progress: _Progress, cfg: dict[str, Any],
               seconds: float, generators: dict[str, torch.Generator] | None = None,
               data_desc: dict[str, Any] | None = None) -> None:
    """Write ``last.pt``: everything :func:`_restore` needs to go on after ``epoch`` (1-based) epochs (with
    ``generators``, the states of the training data's generators too: :func:`_data_generators`; with
    ``data_desc``, what the data are, so that a resume on other data is refused: :func:`check_resume_data`)."""
    net = optim.net
    _atomic_torch_save({
        "epoch": epoch, "net": net.state_dict(), "net_config": net.config, "optimizer": optim.opt.state_dict(),
        "scheduler": optim.sched.state_dict(), "scaler": optim.scaler.state_dict(), "history": progress.history,
        "best_val": progress.best_val, "best_epoch": progress.best_epoch, "best_state": progress.best_state,
        "config": cfg, "seconds": seconds, "torch_rng": torch.get_rng_state(), "data": data_desc,
        "change_rng": optim.change_gen.get_state(),
        "data_rng": {name: gen.get_state() for name, gen in (generators or {}).items()},
        "runs": progress.runs,
    }, path)


def train(config: dict[str, Any], *, resume: bool = False, command: str | None = None) -> TrainResult:
    """Train an ASFE-Fusion network.

    Args:
        config: training configuration (see :data:`DEFAULT_CONFIG` and ``docs/training.md``).
        resume: continue from ``<out>/last.pt`` (its epoch, optimizer, scheduler and history); the run then ends
            at ``train.epochs`` epochs in total.
        command: the command line to record in the weights' provenance (default: ``sys.argv``).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: a bad configuration, or ``resume`` with a different network config or nothing left to do.
        Asfe3dInputError: bad training data; a run folder that cannot be written or (a new run) already holds
            any of :data:`RUN_FILES`; ``resume`` without ``last.pt`` or with other settings than it was trained
            with (:func:`check_resume_config`).
    """
    from asfe3d.settings import as_bool

    resume = as_bool("resume", resume)  # the word "false" from a bundle's command line is a truthy string
    cfg = resolve_config(config)
    out = Path(cfg["out"])
    created = not out.exists()
    state = check_run_folder(out, resume)  # before any data is made: refusals come first
    try:
        return _train(cfg, state, resume, command)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):  # a run refused before its first file: no folder
            out.rmdir()
        raise


def _train(cfg: dict[str, Any], state: dict[str, Any] | None, resume: bool, command: str | None) -> TrainResult:
    """:func:`train` once its run folder is checked (``state``: what ``last.pt`` holds when resuming)."""
    from asfe3d.fusion.weights import save_weights

    t = cfg["train"]
    out = Path(cfg["out"])
    last_path, best_path = out / "last.pt", out / "best.pt"
    if state is not None:
        check_resume_config(last_path, state["config"], cfg)
        if state["epoch"] >= t["epochs"]:
            raise ConfigError(f"nothing to do: {str(last_path)!r} already holds {state['epoch']} of {t['epochs']} "
                             "epochs (raise train.epochs / --epochs to continue)")
    config = _check_network_and_loss(cfg)
    if state is None and t["init"] is not None:  # fine-tuning: the weight file holds this network
        _init_weights(t["init"], config)
    device, dist_info = _setup_process(t, out)
    try:
        train_ds, val_ds, data_desc = build_datasets(cfg)
    except (Asfe3dInputError, ConfigError):
        raise
    except ValueError as exc:  # a data setting the datasets refuse (data.crop, data.val_fraction...): the config's
        raise ConfigError(str(exc)) from exc
    if hasattr(val_ds, "__len__") and len(val_ds) == 0:  # found now, not after a whole training epoch
        raise ConfigError("the validation set is empty (data.val_fraction, data.val_anatomies or data.val_limit)")
    if state is not None:
        check_resume_data(last_path, state.get("data"), data_desc)
    try:  # the datasets' worker processes (data.bank_workers) stop however the run ends
        train_loader, val_loader, steps = _loaders(train_ds, val_ds, t, dist_info)
        for ds in (train_ds, val_ds):
            if hasattr(ds, "prepare"):  # the user's pairs read and registered: after every cheap check
                ds.prepare()
        net = _build_network(cfg, device, resume)
        optim = _build_optimisation(cfg, net, device, steps, dist_info.rank)
        generators = _data_generators(train_loader)
        progress = _restore(last_path, t["epochs"], optim, state, steps, generators) if resume else _Progress()
        progress.runs.append(_this_run(command, progress, t, resume))
        model: torch.nn.Module = net
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

        history = progress.history
        t0 = time.time()
        if dist_info.is_main:  # a line before the first epoch's (a 3D run made its subjects for minutes in silence)
            making = (" (the first epoch also makes the simulated subjects: minutes on a CPU)"
                      if cfg["data"]["source"] in ("wholehead", "simulated") else "")
            print(f"training epochs {progress.start_epoch + 1}-{t['epochs']}, {steps} steps of "
                  f"{t['batch_size']} each, on {device}{making}", flush=True)
        for epoch in range(progress.start_epoch, t["epochs"]):
            te = time.time()
            train_parts = _train_epoch(model, optim, train_loader, steps, t["grad_clip"], device, epoch)
            val_loss = _validate(net, optim.loss_fn, val_loader, device, optim.use_amp, t["seed"] + _VAL_CHANGE_SEED)
            val_loss = _mean_over_ranks(train_parts, val_loss, device, dist_info)
            row = {"epoch": epoch + 1, "train_loss": train_parts.get("total", float("nan"))}
            row.update({f"train_{k}": v for k, v in train_parts.items() if k != "total"})
            row.update({"val_loss": val_loss, "seconds": time.time() - te, "lr": optim.opt.param_groups[0]["lr"]})
            history.append(row)
            if val_loss < progress.best_val:
                progress.best_val, progress.best_epoch = val_loss, epoch + 1
                progress.best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            if dist_info.is_main:  # last.pt last: a run stopped before it redoes this epoch on --resume (it was
                # first, and a kill before best.pt left a stale best.pt that a resume, finding every epoch done, refused)
                _write_log(history, out)
                _plot(history, out)
                _save_best(net, progress.best_state, best_path, cfg, data_desc, history, progress.best_epoch,
                           progress.best_val, progress.prior_seconds + time.time() - t0, device, command, save_weights,
                           progress.runs)
                _save_last(last_path, epoch + 1, optim, progress, cfg, progress.prior_seconds + time.time() - t0,
                           generators, data_desc)
                print(f"epoch {epoch + 1}/{t['epochs']}: train {row['train_loss']:.4f} val {val_loss:.4f} "
                      f"({row['seconds']:.0f} s, lr {row['lr']:.2e})", flush=True)
        seconds = time.time() - t0
        cleanup_training(dist_info)
        return TrainResult(
            out_dir=out, best_path=best_path, last_path=last_path, epochs_run=len(history),
            best_epoch=progress.best_epoch, best_val_loss=progress.best_val, final_train_loss=history[-1]["train_loss"],
            final_val_loss=history[-1]["val_loss"], seconds=seconds, history=history,
        )
    finally:
        close_datasets(train_ds, val_ds)


def _batch_loss(model: torch.nn.Module, loss_fn: Any, x: torch.Tensor, use_amp: bool,
                change_gen: torch.Generator, spacing: torch.Tensor | None = None) -> torch.Tensor:
    """The loss of one batch ``x`` ``(B, 2, *spatial)`` (``spacing``: the items' voxel sizes ``(B, spatial_dims)``
    in mm when the dataset gives them, for the change term's sizes in mm).

    With the change-fidelity term on (``loss_fn.w_change > 0``), the batch gets a copy with a random focal PET
    change drawn from ``change_gen`` (``loss_fn.make_change``), and both go through the network in one forward
    pass (``(2B, 2, *spatial)``).
    """
    with_change = loss_fn.w_change > 0
    if with_change:
        x_changed, blob = loss_fn.make_change(x, change_gen, spacing)
        net_in = torch.cat([x, x_changed], dim=0)
    else:
        net_in = x
    with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=use_amp):
        out = model(net_in)
    out = out.float()
    if not with_change:
        return loss_fn(out, x)
    n = x.shape[0]
    return loss_fn(out[:n], x, out[n:], x_changed, blob)


def _validate(net: torch.nn.Module, loss_fn: Any, loader: DataLoader, device: torch.device,
              use_amp: bool, change_seed: int) -> float:
    """Mean loss over the validation set (focal PET changes, if any, from a generator seeded with
    ``change_seed`` at every call, so every epoch scores the same changes)."""
    net.eval()
    total, count = 0.0, 0
    change_gen = torch.Generator().manual_seed(change_seed)
    with torch.inference_mode():
        for batch in loader:
            x = batch["image"].to(device)
            total += float(_batch_loss(net, loss_fn, x, use_amp, change_gen, batch.get("spacing"))) * x.shape[0]
            count += x.shape[0]
    if count == 0:
        raise ValueError("the validation set is empty")
    return total / count


def _save_best(net: torch.nn.Module, best_state: dict[str, torch.Tensor] | None, path: Path, cfg: dict[str, Any],
               data_desc: dict[str, Any], history: list[dict[str, float]], best_epoch: int, best_val: float,
               seconds: float, device: torch.device, command: str | None, save_weights: Any,
               runs: list[dict[str, Any]] | None = None) -> None:
    """(Re)write ``best.pt`` with the best state and up-to-date provenance (``runs``: :attr:`_Progress.runs`)."""
    if best_state is None:
        return
    current = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    best_row = history[best_epoch - 1]
    meta = {
        "command": _command_text(command),
        "data": data_desc,
        "config": cfg,
        "epochs": len(history),
        "best_epoch": best_epoch,
        "train_loss_at_best": best_row["train_loss"],
        "val_loss_at_best": best_val,
        "final_train_loss": history[-1]["train_loss"],
        "final_val_loss": history[-1]["val_loss"],
        "seconds": round(seconds, 1),
        "hardware": _hardware(device, torch.get_num_threads()),
        "git_commit": runs[-1].get("git_commit") if runs else _git_commit(),  # (read once a call, not an epoch)
        "git_local_changes": runs[-1].get("git_local_changes") if runs else _git_changed(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        # every call that trained it (a resumed run's first command and schedule were lost) and the starting
        # weights by content (a relative path alone named whatever lay there later)
        "runs": runs or [],
        "init": next((r["init"] for r in runs or [] if r.get("init")), None),
    }
    try:
        save_weights(net, path, meta)
    finally:
        net.load_state_dict(current)
