"""Individual 1 mm anatomies: tissue classes, PET that follows tissues and parcels, random contrasts, 2D crops
(tiny synthetic volumes; no data files needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asfe3d.data import individual as ind
from asfe3d.data import wholehead as wh


def _tiny(synth: bool = False, shape: tuple[int, int, int] = (26, 28, 26)) -> ind.IndividualAnatomy:
    ijk = np.indices(shape).astype(float)
    r = np.sqrt(sum((ijk[k] - (shape[k] - 1) / 2.0) ** 2 for k in range(3)))
    t = ind.TISSUES
    labels = np.zeros(shape, np.int16)
    labels[r < 6] = t["wm"]
    labels[(r >= 6) & (r < 9)] = t["cortex"]
    labels[(r >= 9) & (r < 10)] = t["csf"]
    head = r < 12
    parcels = np.where(labels == t["cortex"], 1 + (ijk[1] > shape[1] / 2), 0).astype(np.int32)
    mri = np.select([labels == t["wm"], labels == t["cortex"], labels == t["csf"], head], [1.0, 0.6, 0.1, 0.5], 0.0)
    aff = np.eye(4)
    aff[:3, 3] = -(np.asarray(shape) - 1) / 2.0
    fs = np.where(labels == t["wm"], 2, np.where(labels == t["cortex"], 11101, np.where(labels > 0, 24, 0)))
    return ind.IndividualAnatomy("bert_synth" if synth else "bert", mri.astype(np.float32), labels, head, aff,
                                 parcels=parcels, synth_labels=fs.astype(np.int32) if synth else None)


def test_tissue_classes_t1_and_flair_order() -> None:
    x = np.zeros((10, 10, 10))
    x[:3], x[3:6], x[6:] = 0.1, 0.5, 1.0
    brain = np.ones_like(x, bool)
    t1 = ind.tissue_classes(x, brain, "t1")
    assert (t1[0] == ind.TISSUES["csf"]).all() and (t1[4] == ind.TISSUES["cortex"]).all()
    assert (t1[9] == ind.TISSUES["wm"]).all()
    flair = ind.tissue_classes(x, brain, "flair")
    assert (flair[4] == ind.TISSUES["wm"]).all() and (flair[9] == ind.TISSUES["cortex"]).all()
    with pytest.raises(ValueError, match="order must be 't1' or 'flair', got 't2'"):
        ind.tissue_classes(x, brain, "t2")
    with pytest.raises(ValueError, match="non-empty brain mask"):
        ind.tissue_classes(x, np.zeros_like(brain), "t1")


@pytest.mark.parametrize("pattern", wh.PATTERNS)
def test_uptake_follows_tissues(pattern: str) -> None:
    anat = _tiny()
    up = anat.uptake(pattern, np.random.default_rng(0))
    t = ind.TISSUES
    cortex, wm = up[anat.labels == t["cortex"]].mean(), up[anat.labels == t["wm"]].mean()
    if pattern.startswith("fdg"):
        assert cortex > 2 * wm  # FDG: grey matter well above white matter
    elif pattern == "amyloid_neg":
        assert wm > 1.4 * cortex  # amyloid negative: white matter highest
    else:
        assert cortex > 0.6 * wm  # amyloid positive: cortex raised towards white matter
    assert (up[~anat.head] == 0).all()
    with pytest.raises(ValueError, match="pattern"):
        anat.uptake("tau", np.random.default_rng(0))


def test_synth_contrast_changes_per_draw_and_keeps_labels_edges() -> None:
    anat = _tiny(synth=True)
    a = anat.draw_mri(np.random.default_rng(1))
    b = anat.draw_mri(np.random.default_rng(2))
    assert a.shape == anat.labels.shape and not np.allclose(a, b)
    assert _tiny().draw_mri(np.random.default_rng(1)) is not None


def test_fs_labels_to_tissues() -> None:
    t = ind.TISSUES
    assert ind._fs_tissue(12150) == t["cortex"] and ind._fs_tissue(41) == t["wm"]
    assert ind._fs_tissue(17) == t["mtl"] and ind._fs_tissue(4) == t["csf"] and ind._fs_tissue(0) == 0


def test_two_dimensional_crops(monkeypatch: pytest.MonkeyPatch) -> None:
    anat = _tiny()
    monkeypatch.setattr(wh, "load_anatomy", lambda name, spm_dir, seed=0: anat)
    ds = wh.WholeHeadPairDataset("unused", 3, ["bert"], crop=(12, 10), bank_size=1, spatial_dims=2)
    item = ds[0]["image"]
    assert item.shape == (2, 12, 10) and item.dtype == torch.float32
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3, got 4"):
        wh.WholeHeadPairDataset("unused", 3, ["bert"], spatial_dims=4)
    with pytest.raises(ValueError, match="a 2D crop"):
        wh.WholeHeadPairDataset("unused", 3, ["bert"], crop=(8, 8, 8), spatial_dims=2)


def test_load_individual_needs_its_folder(tmp_path) -> None:
    with pytest.raises(ValueError, match="'nobody'"):
        ind.load_individual("nobody", tmp_path)
    with pytest.raises(FileNotFoundError, match="individual"):
        wh.load_anatomy("bert", tmp_path / "spm12")
