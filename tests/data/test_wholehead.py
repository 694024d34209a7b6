"""Whole-head subject simulation on tiny synthetic anatomies (no SPM data needed; one test uses it when present)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asfe3d.data import wholehead as wh
from tests.data.helpers import tiny_anatomy as _tiny_anatomy

_BASE = wh.draw_params("avg152T1", np.random.default_rng(0), ["fdg"])


def _params(**kw: object) -> wh.SubjectParams:
    base = _BASE
    fixed = dict(mri_spacing=(3.0, 3.0, 3.0), rotation_deg=(0.0, 0.0, 0.0), scale=(1.0, 1.0, 1.0),
                 translation_mm=(0.0, 0.0, 0.0), deform_mm=0.0, bias=0.0, mri_gamma=1.0, mri_noise=0.0,
                 pet_fwhm_mm=4.0, pet_spacing=(3.0, 3.0, 3.0), pet_axial_fov_mm=260.0, pet_fov_shift_mm=0.0,
                 pet_noise=0.0, misreg_mm=0.0)
    fixed.update(kw)
    return dataclasses.replace(base, **fixed)


def test_draw_params_ranges_and_bad_input() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        p = wh.draw_params("mni_synth", rng)
        assert 4.0 <= p.pet_fwhm_mm <= 8.0 and 0.0 <= p.misreg_mm <= 2.0
        assert all(1.5 <= s <= 4.0 for s in p.pet_spacing) and all(1.0 <= s <= 2.9 for s in p.mri_spacing)
        assert p.pattern in wh.PATTERNS and p.pet_axial_fov_mm <= 260.0
    with pytest.raises(ValueError, match="'brain'"):
        wh.draw_params("brain", rng)
    with pytest.raises(ValueError, match="patterns"):
        wh.draw_params("avg152T1", rng, ["tau"])


def test_draw_params_mri_mm_range_keeps_the_draws() -> None:
    default = wh.draw_params("otsu", np.random.default_rng(5))
    assert default == wh.draw_params("otsu", np.random.default_rng(5), mri_mm=None)
    coarse = wh.draw_params("otsu", np.random.default_rng(5), mri_mm=(1.8, 2.2))
    assert 1.8 <= min(coarse.mri_spacing) and max(coarse.mri_spacing) <= 2.2 * 1.6
    assert coarse.pet_fwhm_mm == default.pet_fwhm_mm and coarse.pattern == default.pattern  # same draws after it


@pytest.mark.parametrize("bad", [(2.0, 1.0), (0.1, 1.0), [1.0], (1.0, float("nan")), "1,2"])
def test_dataset_rejects_bad_mri_mm(bad) -> None:
    with pytest.raises(ValueError, match="mri_mm must be null or"):
        wh.WholeHeadPairDataset("unused", 4, ["otsu"], crop=8, mri_mm=bad)


def test_simulate_subject_shapes_range_and_alignment() -> None:
    anat = _tiny_anatomy()
    sim = wh.simulate_subject(anat, _params(), np.random.default_rng(0))
    assert sim["mri"].shape == sim["pet"].shape == (12, 14, 12)
    for key in ("mri", "pet"):
        assert sim[key].dtype == np.float32 and 0.0 <= sim[key].min() and sim[key].max() <= 1.0
    assert np.allclose(np.diag(sim["affine"])[:3], 3.0)
    # no motion, no deformation: PET follows the atlas (cortex shell brighter than the WM core for FDG)
    ijk = np.indices(sim["mri"].shape)
    r = np.sqrt(sum((ijk[k] - (sim["mri"].shape[k] - 1) / 2.0) ** 2 for k in range(3))) * 3.0
    assert sim["pet"][(r > 15) & (r < 19)].mean() > sim["pet"][r < 9].mean()


def test_simulate_subject_partial_fov_and_defect() -> None:
    anat = _tiny_anatomy()
    p = _params(pet_axial_fov_mm=15.0, pet_fov_shift_mm=0.0)
    sim = wh.simulate_subject(anat, p, np.random.default_rng(0), defect={"centre_mm": (0.0, -17.0, 0.0),
                                                                          "diameter_mm": 8.0, "fraction": 0.3})
    z_profile = sim["pet"].max(axis=(0, 1))
    assert z_profile[0] == 0 and z_profile[-1] == 0 and z_profile.max() > 0  # outside the axial FOV: no PET
    region = sim["defect_region"]
    assert region.any()
    drop = (sim["pet"] - sim["pet_defect"])[region].mean()
    assert drop > 0.02 and np.abs(sim["pet"] - sim["pet_defect"])[~region].mean() < drop
    with pytest.raises(ValueError, match="fraction"):
        wh.simulate_subject(anat, p, np.random.default_rng(0), defect={"centre_mm": (0, 0, 0), "fraction": 2})


def test_dataset_items_deterministic_and_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    anat = _tiny_anatomy()
    monkeypatch.setattr(wh, "load_anatomy", lambda name, spm_dir, seed=0: anat)
    monkeypatch.setattr(wh, "draw_params", lambda name, rng, patterns=wh.PATTERNS, mri_mm=None: _params(
        pattern=patterns[int(rng.integers(len(patterns)))], pet_noise=float(rng.uniform(0.02, 0.1))))
    make = lambda seed: wh.WholeHeadPairDataset("unused", 4, ["avg152T1"], crop=8, seed=seed, bank_size=2,  # noqa: E731
                                                refresh=1)
    ds = make(0)
    a = torch.stack([ds[i]["image"] for i in range(4)])
    assert a.shape == (4, 2, 8, 8, 8) and a.dtype == torch.float32 and 0 <= float(a.min()) <= float(a.max()) <= 1
    assert ds[0]["spacing"].tolist() == pytest.approx(list(_params().mri_spacing))  # the subject's MRI grid
    assert torch.equal(a, torch.stack([make(0)[i]["image"] for i in range(4)]))
    assert not torch.equal(a, torch.stack([make(1)[i]["image"] for i in range(4)]))
    first = [ds._slot(k)["image"] for k in range(2)]
    made = ds.subjects_made
    ds.set_epoch(1)
    second = [ds._slot(k)["image"] for k in range(2)]
    assert ds.subjects_made == made + 1  # exactly one slot refreshed per epoch
    assert sorted(ds._version) == [1, 2]
    assert sum(not np.array_equal(f, s) for f, s in zip(first, second)) == 1


def test_dataset_workers_make_the_same_subjects_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    anat = _tiny_anatomy()
    monkeypatch.setattr(wh, "load_anatomy", lambda name, spm_dir, seed=0: anat)  # workers are forked: they see it
    monkeypatch.setattr(wh, "draw_params", lambda name, rng, patterns=wh.PATTERNS, mri_mm=None: _params(
        pattern=patterns[int(rng.integers(len(patterns)))], pet_noise=float(rng.uniform(0.02, 0.1))))
    make = lambda workers: wh.WholeHeadPairDataset("unused", 4, ["avg152T1"], crop=8, seed=3, bank_size=2,  # noqa: E731
                                                   refresh=1, workers=workers)
    serial, pooled = make(0), make(2)
    try:
        for epoch in range(3):
            serial.set_epoch(epoch)
            pooled.set_epoch(epoch)
            assert pooled._version == [serial._wanted(k) for k in range(2)]  # the epoch's bank, made already
            assert sorted(pooled._pending) == sorted({pooled._wanted(k, epoch + 1) for k in range(2)}
                                                     - set(pooled._version))  # the next epoch's, under way
            assert all(torch.equal(serial[i]["image"], pooled[i]["image"]) for i in range(4))
        assert pooled.subjects_made == serial.subjects_made == 4  # 2, then 1 per epoch
        pooled.epochs = 4
        pooled.set_epoch(3)
        serial.set_epoch(3)
        assert not pooled._pending  # nothing made ahead past the run's last epoch
        pooled.close()
        assert pooled._pool is None
        pooled.set_epoch(3)  # still usable after close: a new pool when a subject is missing
        assert torch.equal(pooled[0]["image"], serial[0]["image"])
    finally:
        pooled.close()
    with pytest.raises(ValueError, match="workers must be an integer >= 0, got -1"):
        make(-1)


def test_dataset_bad_arguments() -> None:
    with pytest.raises(ValueError, match="length"):
        wh.WholeHeadPairDataset("x", 0)
    with pytest.raises(ValueError, match="'brain'"):
        wh.WholeHeadPairDataset("x", 2, ["brain"])
    with pytest.raises(ValueError, match=r"refresh must be an integer in \[0, bank_size=2\], got 3"):
        wh.WholeHeadPairDataset("x", 2, bank_size=2, refresh=3)
    with pytest.raises(ValueError, match="crop"):
        wh.WholeHeadPairDataset("x", 2, crop=(8, 8))


def test_load_anatomy_bad_name() -> None:
    with pytest.raises(ValueError, match="'brain'"):
        wh.load_anatomy("brain", "x")


_SPM = os.environ.get("ASFE3D_SPM12_DIR")


@pytest.mark.slow
@pytest.mark.skipif(not _SPM or not Path(_SPM).is_dir(), reason="set ASFE3D_SPM12_DIR to the SPM12 data folder")
def test_real_templates_whole_head() -> None:
    for name in ("avg152T1", "mni_synth"):
        anat = wh.load_anatomy(name, _SPM)
        assert anat.mri.shape == wh.reference_grid()[0]
        # whole head: the head mask is much larger than the labelled brain
        assert anat.head.sum() > 1.5 * (anat.labels > 0).sum()


def test_the_held_out_pairs_command_never_replaces_an_earlier_runs_pairs(tmp_path, capsys):
    """Rerunning it into the same folder replaced the MRI/PET files and pairs.csv the held-out results describe."""
    from asfe3d.data.wholehead import main

    (tmp_path / "pairs.csv").write_text("subject,mri,pet\n")
    assert main(["--spm", str(tmp_path / "no_spm"), "--out", str(tmp_path)]) == 2
    assert "holds the pairs of an earlier run (pairs.csv); not replaced" in capsys.readouterr().err
    assert (tmp_path / "pairs.csv").read_text() == "subject,mri,pet\n"


def _worker_signals() -> tuple[bool, bool, int]:
    import ctypes
    import signal

    death = ctypes.c_int(0)
    ctypes.CDLL(None).prctl(2, ctypes.byref(death), 0, 0, 0)  # PR_GET_PDEATHSIG
    return (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
            death.value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_bank_workers_end_with_the_trainer_and_take_sigterm():
    """Probe 48 #14: after ``kill -9`` of the trainer its bank workers ran on (0.4-0.65 GB each), and having
    inherited the command's SIGTERM handler, one ignored ``kill``."""
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor

    from asfe3d.data.wholehead import _worker_init

    previous = signal.signal(signal.SIGTERM, lambda *a: None)  # as the command's handler would be
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init) as pool:
            assert pool.submit(_worker_signals).result() == (True, True, int(signal.SIGTERM))
    finally:
        signal.signal(signal.SIGTERM, previous)
