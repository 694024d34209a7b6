"""Tests of the MNI-based PET simulator and the demo pair writer (MNI downsampled to 4 mm, except the slow case)."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.data import (
    DemoPair,
    apply_rigid_motion,
    brain_mask,
    load_mni,
    make_demo_pair,
    random_rigid,
    simulate_pet,
    simulate_pet_array,
    simulate_uptake,
)
from asfe3d.io import read_transform
from asfe3d.registration import resample_to_reference


@pytest.fixture(scope="module")
def mni4():
    return load_mni(4)


def _centre(img: sitk.Image) -> tuple[float, ...]:
    return img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in img.GetSize()])


def test_load_mni_geometry_matches_nibabel(mni4):
    import nilearn

    from asfe3d.data.simulate import _mni_file

    t1_1mm, gm_1mm, _ = load_mni(1)
    img = nib.load(_mni_file("t1"))
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    direction = np.asarray(t1_1mm.GetDirection()).reshape(3, 3) * np.asarray(t1_1mm.GetSpacing())
    np.testing.assert_allclose(direction, lps[:3, :3], atol=1e-6)
    np.testing.assert_allclose(t1_1mm.GetOrigin(), lps[:3, 3], atol=1e-6)
    assert t1_1mm.GetSize() == img.shape == (197, 233, 189)
    assert nilearn is not None
    # the same voxels: sitk (z, y, x) vs nibabel (x, y, z)
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(t1_1mm).transpose(2, 1, 0), img.get_fdata() / 255.0,
                               atol=1e-6)
    t1, gm, wm = mni4
    assert t1.GetSpacing() == (4.0, 4.0, 4.0)
    np.testing.assert_allclose(_centre(t1), _centre(t1_1mm), atol=1e-6)
    assert 0.0 <= float(sitk.GetArrayViewFromImage(gm).min()) and float(sitk.GetArrayViewFromImage(wm).max()) <= 1.0


def test_load_mni_bad_resolution():
    with pytest.raises(ValueError, match="0.5"):
        load_mni(0.5)


def test_fdg_uptake_contrast():
    gm = np.zeros((8, 8, 8), np.float32)
    wm = np.zeros_like(gm)
    gm[:4] = 1.0
    wm[4:] = 1.0
    up = simulate_uptake(gm, wm, tracer="fdg", rng=np.random.default_rng(3))
    ratio = up[:4].mean() / up[4:].mean()
    assert 2.7 <= ratio <= 4.4
    amy = simulate_uptake(gm, wm, tracer="amyloid", rng=np.random.default_rng(3))
    assert amy[:4].mean() / amy[4:].mean() < 1.05


def test_simulate_pet_grid_and_contrast(mni4):
    t1, gm, wm = mni4
    pet = simulate_pet(gm, wm, spacing_mm=2.0, noise=0.0, scale=1000.0, rng=np.random.default_rng(0))
    assert pet.GetSpacing() == (2.0, 2.0, 2.0)
    assert pet.GetSize() == (128, 128, 90)
    assert pet.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(_centre(pet), _centre(t1), atol=1e-6)
    # the whole brain lies inside the PET field of view
    on_mri = sitk.GetArrayFromImage(resample_to_reference(pet, t1))
    g, w = sitk.GetArrayViewFromImage(gm), sitk.GetArrayViewFromImage(wm)
    pure_gm, pure_wm = on_mri[g > 0.7], on_mri[w > 0.9]
    assert pure_gm.size > 50 and pure_wm.size > 50
    # blurred (7 mm PSF), yet grey matter clearly above white matter
    assert pure_gm.mean() / pure_wm.mean() > 1.3
    mask = sitk.GetArrayFromImage(brain_mask(gm, wm)).astype(bool)
    assert on_mri[~mask].mean() < 0.3 * on_mri[mask].mean()


def test_simulate_pet_bad_input(mni4):
    _, gm, wm = mni4
    with pytest.raises(ValueError, match="'pib'"):
        simulate_pet(gm, wm, tracer="pib")
    with pytest.raises(ValueError, match="-1"):
        simulate_pet(gm, wm, fwhm_mm=-1.0)
    with pytest.raises(ValueError, match="shape"):
        simulate_uptake(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


def test_simulate_pet_array_noise_and_scale():
    rng = np.random.default_rng(0)
    gm = np.zeros((24, 24, 24), np.float32)
    gm[6:18, 6:18, 6:18] = 1.0
    wm = 1.0 - gm
    clean = simulate_pet_array(gm, wm, spacing=2.0, fwhm_mm=6.0, noise=0.0, scale=100.0, rng=rng)
    noisy = simulate_pet_array(gm, wm, spacing=2.0, fwhm_mm=6.0, noise=0.1, scale=100.0, rng=np.random.default_rng(0))
    assert clean.shape == gm.shape and clean.dtype == np.float32
    assert clean[12, 12, 12] > 2.5 * clean[1, 1, 1]  # GM centre vs WM corner
    rel = np.std(noisy - clean) / clean.mean()
    assert 0.02 < rel < 0.3
    with pytest.raises(ValueError, match="-2"):
        simulate_pet_array(gm, wm, spacing=-2.0)


def test_random_rigid_limits():
    tfm = random_rigid(np.random.default_rng(5), max_deg=8.0, max_mm=10.0, center=(1.0, 2.0, 3.0))
    assert all(abs(a) <= math.radians(8.0) for a in (tfm.GetAngleX(), tfm.GetAngleY(), tfm.GetAngleZ()))
    assert all(abs(t) <= 10.0 for t in tfm.GetTranslation())
    assert tfm.GetCenter() == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="-1"):
        random_rigid(np.random.default_rng(0), max_deg=-1.0)


def test_true_transform_convention(mni4):
    """Resampling the moved PET with the true transform puts it back onto the unmoved PET."""
    t1, gm, wm = mni4
    pet = simulate_pet(gm, wm, spacing_mm=4.0, fov_mm=(256.0, 256.0, 200.0), noise=0.0, scale=1.0)
    tfm = random_rigid(np.random.default_rng(2), max_deg=8.0, max_mm=10.0, center=_centre(t1))
    moved = apply_rigid_motion(pet, tfm)
    back = resample_to_reference(moved, pet, tfm)
    a, b, m = (sitk.GetArrayViewFromImage(x).ravel() for x in (pet, back, moved))
    assert np.corrcoef(a, b)[0, 1] > 0.97
    # the motion is not negligible, and the inverse convention would double it
    assert np.corrcoef(a, m)[0, 1] < np.corrcoef(a, b)[0, 1] - 0.03
    wrong = sitk.GetArrayFromImage(resample_to_reference(moved, pet, tfm.GetInverse())).ravel()
    assert np.corrcoef(a, wrong)[0, 1] < np.corrcoef(a, m)[0, 1]
    # the same convention when the motion is simulated directly
    direct = simulate_pet(gm, wm, spacing_mm=4.0, fov_mm=(256.0, 256.0, 200.0), noise=0.0, scale=1.0,
                          transform=tfm)
    assert np.corrcoef(sitk.GetArrayViewFromImage(direct).ravel(), m)[0, 1] > 0.97


def test_make_demo_pair_files(tmp_path):
    pair = make_demo_pair(tmp_path / "demo", seed=1, oblique=True, mri_spacing=(4.0, 4.0, 4.5), pet_spacing=4.0,
                          resolution=4)
    assert isinstance(pair, DemoPair)
    for p in (pair.mri_path, pair.pet_path, pair.mask_path, pair.truth_tfm_path):
        assert p.is_file()
    assert not [p for p in (tmp_path / "demo").iterdir() if p.name.startswith(".")]
    import os

    umask = os.umask(0)
    os.umask(umask)
    # the images as readable as the transform beside them (probe 40 #13: mkstemp's 0600 was kept by the rename)
    modes = {p.stat().st_mode & 0o777 for p in (pair.mri_path, pair.pet_path, pair.mask_path)}
    assert modes == {0o666 & ~umask}
    for p in (pair.mri_path, pair.pet_path, pair.mask_path):
        img = nib.load(p)
        assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
        s = sitk.ReadImage(str(p))
        lps = np.eye(4)
        lps[:3, :3] = np.asarray(s.GetDirection()).reshape(3, 3) * np.asarray(s.GetSpacing())
        lps[:3, 3] = s.GetOrigin()
        np.testing.assert_allclose(np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, img.affine, atol=1e-4)
    mri = nib.load(pair.mri_path)
    assert np.allclose(mri.header.get_zooms(), (4.0, 4.0, 4.5))
    # oblique: the direction cosines are not a signed permutation (the template itself is plain RAS)
    cosines = mri.affine[:3, :3] / np.array(mri.header.get_zooms())
    assert np.abs(cosines - np.round(cosines)).max() > 0.05
    tfm = read_transform(pair.truth_tfm_path)
    p = (10.0, -20.0, 30.0)
    np.testing.assert_allclose(tfm.TransformPoint(p), pair.true_transform.TransformPoint(p), atol=1e-6)
    mask = sitk.ReadImage(str(pair.mask_path))
    assert mask.GetSize() == sitk.ReadImage(str(pair.mri_path)).GetSize()
    assert 0.05 < sitk.GetArrayViewFromImage(mask).mean() < 0.6


def test_make_demo_pair_bad_input(tmp_path):
    with pytest.raises(ValueError, match="'fdx'"):
        make_demo_pair(tmp_path, tracer="fdx", resolution=4)
    with pytest.raises(ValueError, match="0"):
        make_demo_pair(tmp_path, mri_spacing=(1.0, 0.0, 1.0), resolution=4)
