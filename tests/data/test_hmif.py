"""HMIF listing, loading and splitting on a tiny fake folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asfe3d.data import HMIF_TASKS, HmifDataset, list_pairs, load_pair, split_pairs
from asfe3d.errors import Asfe3dInputError
from asfe3d.fusion.colour import rgb_to_ycrcb


def _make_task(root: Path, task: str = "PET-MRI", cases: dict[str, int] | None = None, size: int = 32) -> Path:
    """Write ``<root>/<task>/{MRI,<kind>}/<case><slice>.png`` with random content; returns the task folder."""
    kind = HMIF_TASKS[task]
    folder = root / task
    (folder / "MRI").mkdir(parents=True)
    (folder / kind).mkdir()
    rng = np.random.default_rng(1)
    for case, n in (cases or {"25": 10, "30": 12}).items():
        for s in range(n):
            name = f"{case}{s + 5:03d}.png"
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(folder / "MRI" / name)
            if kind == "CT":
                other = Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L")
            else:
                other = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")
            other.save(folder / kind / name)
    return folder


def test_list_pairs_root_and_task_folder(tmp_path: Path) -> None:
    folder = _make_task(tmp_path)
    pairs = list_pairs(tmp_path, "PET-MRI")
    assert pairs == list_pairs(folder)
    assert len(pairs) == 22
    assert [(p.case, p.slice_index) for p in pairs[:2]] == [("25", 5), ("25", 6)]
    assert pairs[-1].name == "30016.png" and pairs[-1].other_kind == "PET"
    assert pairs[0].other_path == folder / "PET" / "25005.png"


def test_load_pair_colour_gives_y_channel(tmp_path: Path) -> None:
    folder = _make_task(tmp_path)
    pair = list_pairs(folder)[3]
    mri, y, rgb = load_pair(pair)
    raw_rgb = np.asarray(Image.open(pair.other_path), dtype=np.float32) / 255.0
    raw_mri = np.asarray(Image.open(pair.mri_path), dtype=np.float32) / 255.0
    assert mri.shape == y.shape == (32, 32) and mri.dtype == y.dtype == np.float32
    np.testing.assert_allclose(mri, raw_mri, atol=1e-6)
    np.testing.assert_allclose(rgb, raw_rgb, atol=1e-6)
    np.testing.assert_allclose(y, rgb_to_ycrcb(raw_rgb)[..., 0], atol=1e-6)
    # Y differs from the plain channel mean (a real luma, not an average)
    assert not np.allclose(y, raw_rgb.mean(-1), atol=1e-3)


def test_load_pair_gray_other(tmp_path: Path) -> None:
    folder = _make_task(tmp_path, "CT-MRI", {"7": 3})
    mri, ct, rgb = load_pair(list_pairs(folder)[0])
    assert rgb is None and ct.shape == (32, 32) and 0.0 <= ct.min() and ct.max() <= 1.0


def test_missing_partner_names_the_file(tmp_path: Path) -> None:
    folder = _make_task(tmp_path, cases={"25": 4})
    (folder / "PET" / "25006.png").unlink()
    with pytest.raises(Asfe3dInputError, match=r"25006\.png.*has no partner"):
        list_pairs(folder)


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(Asfe3dInputError, match="not found"):
        list_pairs(tmp_path / "nope")
    (tmp_path / "PET-MRI" / "MRI").mkdir(parents=True)
    (tmp_path / "PET-MRI" / "PET").mkdir()
    with pytest.raises(Asfe3dInputError, match="no image pairs"):
        list_pairs(tmp_path, "PET-MRI")
    with pytest.raises(ValueError, match="task must be one of"):
        list_pairs(tmp_path, "PET-CT")


def test_split_blocks_per_case_with_gap(tmp_path: Path) -> None:
    pairs = list_pairs(_make_task(tmp_path, cases={"25": 10, "30": 20}))
    train, val = split_pairs(pairs, val_fraction=0.2, gap=2)
    assert split_pairs(pairs, 0.2, 2) == (train, val)  # deterministic
    for case, n in (("25", 10), ("30", 20)):
        tr = [p.slice_index for p in train if p.case == case]
        va = [p.slice_index for p in val if p.case == case]
        n_val = round(0.2 * n)
        assert va == list(range(5 + n - n_val, 5 + n))  # the contiguous block at the end
        assert tr == list(range(5, 5 + n - n_val - 2))  # 2 slices dropped before it
        assert max(tr) + 2 < min(va)
    with pytest.raises(ValueError, match="val_fraction"):
        split_pairs(pairs, val_fraction=1.0)
    with pytest.raises(ValueError, match="gap"):
        split_pairs(pairs, gap=-1)


def test_dataset_items_and_augmentation(tmp_path: Path) -> None:
    pairs = list_pairs(_make_task(tmp_path, cases={"25": 3}))
    plain = HmifDataset(pairs)
    item = plain[1]
    mri, y, _ = load_pair(pairs[1])
    assert item["name"] == pairs[1].name and item["image"].shape == (2, 32, 32)
    np.testing.assert_allclose(item["image"].numpy(), np.stack([mri, y]), atol=1e-6)
    aug = HmifDataset(pairs, augment=True, crop=16, seed=3)
    a = aug[0]["image"]
    assert a.shape == (2, 16, 16)
    # an augmented crop is a flipped/rotated window of the original: same multiset of values as some window
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    again = HmifDataset(pairs, augment=True, crop=16, seed=3)[0]["image"]
    assert np.array_equal(a.numpy(), again.numpy())
    with pytest.raises(Asfe3dInputError, match="smaller than the crop"):
        HmifDataset(pairs, augment=True, crop=64)
    with pytest.raises(ValueError, match="at least one pair"):
        HmifDataset([])
