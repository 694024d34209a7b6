"""Tests of :mod:`asfe3d.data.pairs`: the user's own pairs prepared by the command's chain and cropped at random in
RAS order, for training on them."""

from __future__ import annotations

import re
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from asfe3d.data.pairs import VolumePairDataset, prepare_pair, read_pairs_csv
from asfe3d.errors import Asfe3dInputError
from tests.conftest import make_cohort


@pytest.fixture
def rows(demo_files, tmp_path):
    return read_pairs_csv(make_cohort(tmp_path, demo_files, 2))


def test_items_are_crops_in_the_unit_range_with_their_voxel_size_and_drawn_per_epoch(rows):
    ds = VolumePairDataset(rows, length=3, crop=(16, 16, 16), seed=1, registration="rigid")
    ds.prepare()
    entry = ds.pair(0)
    assert entry["image"].shape[0] == 2 and entry["image"].dtype == np.float32
    item = ds[0]
    assert item["image"].shape == (2, 16, 16, 16) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0 + 1e-6
    assert float(item["image"].amax(dim=(1, 2, 3)).min()) > 0  # the crop is centred in the head: both hold signal
    torch.testing.assert_close(item["spacing"], torch.tensor([6.0, 6.0, 6.0]))
    assert torch.equal(ds[0]["image"], item["image"])  # the same draw for the same (index, epoch)
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["image"], item["image"])
    flat = VolumePairDataset(rows, length=2, crop=(16, 16), registration="rigid", spatial_dims=2)
    assert flat[1]["image"].shape == (2, 16, 16) and flat[1]["spacing"].shape == (2,)
    with pytest.raises(IndexError, match="index 3 out of range"):
        ds[3]


def test_a_pair_stored_in_another_voxel_order_gives_the_same_crops(rows, tmp_path):
    """The networks run in RAS order: an MRI stored LPS (its first two axes flipped, the world the same) is turned
    back, so its prepared pair and crops are the RAS-stored one's."""
    mri = nib.load(str(rows[0]["mri"]))
    flipped_data = np.asarray(mri.dataobj)[::-1, ::-1, :].copy()
    n = np.asarray(flipped_data.shape)
    affine = mri.affine @ np.array([[-1, 0, 0, n[0] - 1], [0, -1, 0, n[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    lps = tmp_path / "lps_mri.nii.gz"
    nib.save(nib.Nifti1Image(flipped_data, affine), str(lps))
    ras = VolumePairDataset(rows[:1], length=2, crop=(16, 16, 16), registration="rigid")
    other = VolumePairDataset([{**rows[0], "mri": lps}], length=2, crop=(16, 16, 16), registration="rigid")
    # the MRI exactly; the PET as registered again on the other grid (the registration's sampling differs a little)
    np.testing.assert_allclose(other.pair(0)["image"][0], ras.pair(0)["image"][0], atol=1e-5)
    assert float(np.abs(other.pair(0)["image"][1] - ras.pair(0)["image"][1]).max()) < 0.05
    torch.testing.assert_close(other[1]["image"][0], ras[1]["image"][0], atol=1e-5, rtol=0)
    unturned = np.asarray(nib.load(str(lps)).dataobj)  # had it not been turned, the crops would differ wholly
    assert float(np.abs(unturned - np.asarray(mri.dataobj)).max()) > 0.5 * float(np.asarray(mri.dataobj).max())


def test_a_pair_whose_registration_was_judged_failed_is_refused_by_subject(rows, monkeypatch):
    import asfe3d.data.pairs as pairs

    def judged_failed(*args, **kwargs):
        data = prepare_pair(*args, **kwargs)
        data["pet_registration"] = {**data["pet_registration"],
                                    "qc": {"verdict": "fail", "reasons": ["the PET's head lies outside the MRI's"]}}
        return data

    monkeypatch.setattr(pairs, "prepare_pair", judged_failed)
    ds = VolumePairDataset(rows, length=2, crop=(16, 16, 16), registration="rigid")
    with pytest.raises(Asfe3dInputError, match=re.escape("subject 'sub01': the registration (data.registration "
                                                         "'rigid') was judged failed (the PET's head lies outside the "
                                                         "MRI's); fix the pairs")):
        ds.pair(0)  # a pair prepared when first needed (prepare() names them all: below)


def test_an_unreadable_pet_is_one_input_error(rows, tmp_path):
    broken = tmp_path / "broken_pet.nii.gz"
    broken.write_bytes(b"not a volume")
    with pytest.raises(Asfe3dInputError, match="broken_pet.nii.gz"):
        VolumePairDataset([{**rows[0], "pet": broken}], length=1, crop=(8, 8, 8), registration="rigid").prepare()


@pytest.mark.parametrize("kwargs, match", [
    ({"rows": []}, "rows must name at least one pair, got none"),
    ({"length": 0}, "length must be an integer >= 1, got 0"),
    ({"crop": (16, 16)}, r"crop must be 3 integers >= 8, got \(16, 16\)"),
    ({"crop": (16, 16, 4)}, r"crop must be 3 integers >= 8, got \(16, 16, 4\)"),
    ({"registration": "elastic"}, "registration must be one of .* got 'elastic'"),
    ({"spatial_dims": 4}, "spatial_dims must be 2 or 3, got 4"),
])
def test_bad_arguments_refused_quoting_the_value(rows, kwargs, match):
    args = {"rows": rows, "length": 2, "crop": (16, 16, 16), **kwargs}
    with pytest.raises(ValueError, match=match):
        VolumePairDataset(args.pop("rows"), args.pop("length"), args.pop("crop"), **args)


def test_the_pairs_csv_is_read_where_it_is_documented(rows, tmp_path):
    """The data tier reads the pairs CSV; ``asfe3d.evaluation`` gives the same rows."""
    from asfe3d.evaluation import read_pairs_csv as evaluation_reader

    csv_path = tmp_path / "datalist.csv"
    assert evaluation_reader(csv_path) == read_pairs_csv(csv_path) == rows
    shutil.copy(csv_path, tmp_path / "copy.csv")
    assert [r["subject"] for r in read_pairs_csv(tmp_path / "copy.csv")] == ["sub01", "sub02"]


@pytest.mark.parametrize("text, match", [
    ("subject,mri,pet,mri\ns1,a/mri.nii.gz,a/pet.nii.gz,b/mri.nii.gz\n", "column(s) 'mri' appear more than once"),
    ("subject,mri,pet\ns1,a/mri.nii.gz,a/pet.nii.gz,t2.nii.gz\n", "line 2: 4 cells, the header has 3 (a comma too many"),
    ("subject,mri,pet\nDoe, John,a/mri.nii.gz,a/pet.nii.gz\n", "line 2: 4 cells, the header has 3"),
    ("subject,mri,pet\n\ns1,a/mri.nii.gz,\n", "line 3: empty 'pet'"),  # a blank line keeps the lines' numbers
    ('subject,mri,pet\n"s\n1",a/mri.nii.gz,a/pet.nii.gz\ns2,b/mri.nii.gz,\n', "line 4: empty 'pet'"),  # a quoted newline
])
def test_a_csv_whose_cells_do_not_fit_its_header_is_one_line(tmp_path, text, match):
    """A repeated column was taken silently (the last one won: every subject trained on another's MRI); a row with
    a cell too many was a traceback."""
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    with pytest.raises(Asfe3dInputError, match=re.escape(match)):
        read_pairs_csv(path)


def test_trailing_empty_cells_and_one_pair_listed_twice_are_read(rows, tmp_path):
    """An evaluation may list one pair twice (with other masks); a spreadsheet's trailing empty cells are no data
    (the training refuses a PET shared across its split: tests/training)."""
    text = (tmp_path / "datalist.csv").read_text().replace("sub02/pet.nii.gz", "sub02/pet.nii.gz,,")
    (tmp_path / "copy.csv").write_text(text + "sub01_copy,sub01/mri.nii.gz,./sub01/pet.nii.gz\n")
    assert [r["subject"] for r in read_pairs_csv(tmp_path / "copy.csv")] == ["sub01", "sub02", "sub01_copy"]


def test_slice_mode_pairs_are_cropped_on_the_grid_the_slice_network_runs_on(rows, tmp_path, monkeypatch):
    """``asfe3d fuse --mode slice`` runs the 2D network on a grid of 1 mm or coarser (MIN_VOXEL_MM_BY_MODE): a
    finer MRI's pairs are brought there (they were cropped at the MRI's own 0.8 mm), volume mode keeps its grid."""
    from asfe3d.defaults import MIN_VOXEL_MM_BY_MODE

    assert MIN_VOXEL_MM_BY_MODE == {"slice": 1.0, "volume": None}
    mri = nib.load(str(rows[0]["mri"]))
    data = np.asarray(mri.dataobj, np.float32)
    scale = np.diag([0.8 / 6.0] * 3 + [1.0])  # the demo head shrunk onto a 0.8 mm grid
    nib.save(nib.Nifti1Image(data, scale @ mri.affine), str(tmp_path / "fine_mri.nii.gz"))
    nib.save(nib.Nifti1Image(np.sqrt(data), scale @ mri.affine), str(tmp_path / "fine_pet.nii.gz"))  # aligned
    fine = [{"subject": "fine", "mri": tmp_path / "fine_mri.nii.gz", "pet": tmp_path / "fine_pet.nii.gz"}]
    import asfe3d.data.pairs as pairs

    def unjudged(*args, **kwargs):  # a 26 mm toy head: the QC's deliberate misalignments are a third of it
        data = prepare_pair(*args, **{**kwargs, "qc": "warn"})
        data["pet_registration"]["qc"]["verdict"] = "pass"
        return data

    monkeypatch.setattr(pairs, "prepare_pair", unjudged)
    flat = VolumePairDataset(fine, length=1, crop=(8, 8), registration="none", spatial_dims=2)
    volume = VolumePairDataset(fine, length=1, crop=(8, 8, 8), registration="none")
    torch.testing.assert_close(flat[0]["spacing"], torch.tensor([1.0, 1.0]), atol=0.02, rtol=0)
    assert flat.pair(0)["image"].shape[1] < volume.pair(0)["image"].shape[1]
    torch.testing.assert_close(volume[0]["spacing"], torch.tensor([0.8, 0.8, 0.8]))


def test_every_failed_pair_is_named_in_one_line_and_a_crop_larger_than_a_volume_refused(rows, monkeypatch, caplog):
    import logging

    import asfe3d.data.pairs as pairs

    def judged_failed(*args, **kwargs):
        data = prepare_pair(*args, **kwargs)
        data["pet_registration"] = {**data["pet_registration"], "qc": {"verdict": "fail", "reasons": ["off by 9 mm"]}}
        return data

    with caplog.at_level(logging.WARNING, logger="asfe3d"):  # a real failed verdict: the demo PET is moved
        with pytest.raises(Asfe3dInputError, match=re.escape("subject 'sub01': the PET as its header places it "
                                                             "(data.registration 'none': not registered) was judged "
                                                             "failed (")) as err:
            VolumePairDataset(rows, length=2, crop=(16, 16, 16), registration="none").prepare()
    assert "also judged failed: 'sub02'; register them (data.registration auto)" in str(err.value)
    assert "outputs written anyway" not in caplog.text  # the command's line does not apply here
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        monkeypatch.setattr(pairs, "prepare_pair", judged_failed)
        with pytest.raises(Asfe3dInputError, match=re.escape("subject 'sub01': the registration (data.registration "
                                                             "'rigid') was judged failed (off by 9 mm); also judged "
                                                             "failed: 'sub02'; fix the pairs")):
            VolumePairDataset(rows, length=2, crop=(16, 16, 16), registration="rigid").prepare()
    monkeypatch.undo()
    with pytest.raises(Asfe3dInputError, match=re.escape("subject 'sub01': data.crop [128, 16, 16] is larger than "
                                                         "its volume")):
        VolumePairDataset(rows[:1], length=1, crop=(128, 16, 16), registration="rigid").prepare()


def test_prepared_pairs_are_kept_in_a_cache_folder_and_read_back_mapped(rows, tmp_path, monkeypatch):
    """A cohort larger than the memory: prepared pairs are files, mapped where read; a second dataset (a resumed run)
    takes them without registering again; the files are named by the pair's contents and settings."""
    import pickle

    import asfe3d.data.pairs as pairs

    mri = nib.load(str(rows[1]["mri"]))  # the cohort's copies differ (identical files share their prepared pair)
    nib.save(nib.Nifti1Image(np.asarray(mri.dataobj) * 1.5, mri.affine), str(rows[1]["mri"]))
    cache = tmp_path / "prepared"
    first = VolumePairDataset(rows, length=3, crop=(16, 16, 16), registration="rigid", cache_dir=cache)
    first.prepare()
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 6 and all(not n.startswith(".") for n in names)  # 3 files a pair, no temporary left
    assert isinstance(first._image(first.pair(0)), np.memmap)
    assert len(pickle.dumps(first)) < 1_000_000  # a worker's copy maps the files itself: no image pickled

    def no_registration(*args, **kwargs):
        raise AssertionError("a cached pair was prepared again")

    monkeypatch.setattr(pairs, "prepare_pair", no_registration)
    again = VolumePairDataset(rows, length=3, crop=(16, 16, 16), registration="rigid", cache_dir=cache)
    again.prepare()
    for i in range(3):
        assert torch.equal(again[i]["image"], first[i]["image"]) and torch.equal(again[i]["spacing"], first[i]["spacing"])
    with pytest.raises(AssertionError, match="prepared again"):  # other settings: other files
        VolumePairDataset(rows, length=1, crop=(16, 16, 16), registration="none", cache_dir=cache).prepare()
    with pytest.raises(Asfe3dInputError, match=re.escape("data.crop [128, 16, 16] is larger than its volume")):
        VolumePairDataset(rows, length=1, crop=(128, 16, 16), registration="rigid", cache_dir=cache).prepare()


def test_data_loader_workers_kept_across_epochs_see_the_epoch(rows):
    """The epoch lives in shared memory: a persistent worker draws the new epoch's crops (it repeated epoch 0's)."""
    ds = VolumePairDataset(rows, length=2, crop=(16, 16, 16), registration="rigid", seed=3)
    ds.prepare()
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, persistent_workers=True)
    seen = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        seen.append(next(iter(loader))["image"])
        ds_copy_epoch = ds.epoch
        assert ds_copy_epoch == epoch
    ds.set_epoch(1)
    expected = torch.stack([ds[0]["image"], ds[1]["image"]])
    assert torch.equal(seen[1], expected) and not torch.equal(seen[0], seen[1])


def test_a_pairs_csv_cell_the_locale_cannot_pass_on_is_refused_by_line(tmp_path, monkeypatch):
    """Review 43 #9: under LC_ALL=C with PYTHONUTF8=0 a non-ASCII file named by the pairs CSV was reported as "does
    not exist"; the cell is named now, with what to do."""
    import sys

    from asfe3d.data.pairs import read_pairs_csv
    from asfe3d.errors import Asfe3dInputError

    csv = tmp_path / "pairs.csv"
    csv.write_text("subject,mri,pet\nsüb,m.nii.gz,p.nii.gz\n", encoding="utf-8")
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    with pytest.raises(Asfe3dInputError, match=r"line 2: subject 's\\xfcb' holds characters this locale"):
        read_pairs_csv(csv)
