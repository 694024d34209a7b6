from __future__ import annotations

import numpy as np
import pytest

from asfe3d.fusion import apply_colormap, fuse_colour, get_fuser, rgb_to_ycrcb, ycrcb_to_rgb


@pytest.mark.parametrize("shape", [(5, 6), (3, 4, 5)])
def test_ycrcb_round_trip(shape):
    rgb = np.random.default_rng(0).random(shape + (3,), dtype=np.float32)
    np.testing.assert_allclose(ycrcb_to_rgb(rgb_to_ycrcb(rgb)), rgb, atol=1e-5)


def test_gray_has_neutral_chroma_and_luma_equal_to_gray():
    gray = np.linspace(0, 1, 7, dtype=np.float32)
    ycc = rgb_to_ycrcb(np.repeat(gray[:, None], 3, axis=1))
    np.testing.assert_allclose(ycc[:, 0], gray, atol=1e-6)
    np.testing.assert_allclose(ycc[:, 1:], 0.5, atol=1e-6)


def test_fuse_colour_keeps_pet_chroma_and_fuses_luma():
    rng = np.random.default_rng(0)
    mri = rng.random((6, 7), dtype=np.float32)
    pet = rng.random((6, 7), dtype=np.float32)
    # gray PET: neutral chroma, so the output is the luma fusion (colour maps quantise to 256 levels)
    out = fuse_colour(mri, apply_colormap(pet, "gray"), get_fuser("max"))
    np.testing.assert_allclose(out, np.repeat(np.maximum(mri, pet)[..., None], 3, axis=-1), atol=4e-3)
    # colour PET: wherever the colour did not clip, luma = max(MRI, PET luma) and chroma = the PET's
    pet_rgb = apply_colormap(pet, "hot")
    out = fuse_colour(mri, pet_rgb, get_fuser("max"))
    unclipped = ((out > 1e-4) & (out < 1 - 1e-4)).all(axis=-1)
    assert unclipped.sum() >= 5
    got, ref = rgb_to_ycrcb(out)[unclipped], rgb_to_ycrcb(pet_rgb)[unclipped]
    np.testing.assert_allclose(got[:, 0], np.maximum(mri[unclipped], ref[:, 0]), atol=1e-4)
    np.testing.assert_allclose(got[:, 1:], ref[:, 1:], atol=1e-4)


def test_colour_bad_inputs():
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        rgb_to_ycrcb(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="'nocmap'"):
        apply_colormap(np.zeros((2, 2)), "nocmap")
    with pytest.raises(ValueError, match=r"\(2, 2, 3\)"):
        fuse_colour(np.zeros((2, 2)), np.zeros((3, 3, 3)), get_fuser("mean"))


@pytest.mark.parametrize("shape", [(40, 40), (12, 12, 12)])
def test_colour_window_keeps_the_brain_below_the_saturated_top(shape):
    from asfe3d.fusion.colour import COLOUR_HEADROOM, colour_window, top_fraction

    rng = np.random.default_rng(0)
    pet = np.clip(rng.normal(0.7, 0.15, shape), 0, 1).astype(np.float32)  # a normalised PET: most of it high
    before = top_fraction(pet, "hot")
    window = colour_window(pet)
    after = top_fraction(pet, "hot", window)
    assert window[0] == 0.0 and window[1] == pytest.approx(np.percentile(pet, 99.5) / COLOUR_HEADROOM)
    assert before > 0.25 and after <= 0.005 + 1e-9
    # the window spreads the values over the map: distinct uptakes stay distinct colours
    lo_rgb, hi_rgb = apply_colormap(np.array([0.6, 0.8], np.float32), "hot", window)
    assert np.abs(lo_rgb - hi_rgb).max() > 0.2


def test_colour_window_bad_inputs_and_empty():
    from asfe3d.fusion.colour import colour_window, top_fraction

    assert colour_window(np.zeros((4, 4))) == (0.0, 1.0)
    with pytest.raises(ValueError, match="percentile must be in"):
        colour_window(np.ones((4, 4)), percentile=0)
    with pytest.raises(ValueError, match=r"headroom must be in \(0, 1\], got 1.5"):
        colour_window(np.ones((4, 4)), headroom=1.5)
    with pytest.raises(ValueError, match="mask shape"):
        colour_window(np.ones((4, 4)), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match=r"hi > lo, got \(1.0, 1.0\)"):
        apply_colormap(np.ones((2, 2)), "hot", (1.0, 1.0))
    with pytest.raises(ValueError, match="non-empty"):
        top_fraction(np.ones((4, 4)), mask=np.zeros((4, 4), bool))


@pytest.mark.parametrize("shape", [(9, 7, 5), (1, 300, 400), (30, 20)])
def test_colour_planes_equal_the_whole_volume_colour_fusion(shape, monkeypatch):
    import asfe3d.fusion.colour as colour
    from asfe3d.fusion.colour import apply_colormap, fuse_colour, fuse_colour_planes

    monkeypatch.setattr(colour, "_SLAB_VOXELS", 40)  # many slabs even on these small images
    rng = np.random.default_rng(3)
    mri, pet = rng.random(shape, dtype=np.float32), 3.0 * rng.random(shape, dtype=np.float32)
    window = (0.2, 2.5)
    luma = rng.random(shape, dtype=np.float32)
    expected = np.moveaxis(fuse_colour(mri, apply_colormap(pet, "hot", window), lambda m, y: luma), -1, 0)
    np.testing.assert_array_equal(fuse_colour_planes(mri, pet, "hot", window, luma=luma), expected)
    seen = []

    def half(m, y):
        seen.append(y.copy())
        return 0.5 * (m + y)

    expected = np.moveaxis(fuse_colour(mri, apply_colormap(pet, "inferno", window), half), -1, 0)
    got = fuse_colour_planes(mri, pet, "inferno", window, fuse_luma=half)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(seen[0], seen[1])  # the fusion saw the same PET luma both ways


def test_colour_planes_bad_inputs():
    from asfe3d.fusion.colour import fuse_colour_planes

    a = np.zeros((4, 5, 6), np.float32)
    with pytest.raises(ValueError, match="exactly one of luma and fuse_luma"):
        fuse_colour_planes(a, a)
    with pytest.raises(ValueError, match=r"share one shape .* got \(4, 5, 6\) and \(4, 5\)"):
        fuse_colour_planes(a, a[..., 0], luma=a)
    with pytest.raises(ValueError, match=r"luma must have the MRI's shape \(4, 5, 6\), got \(4, 5\)"):
        fuse_colour_planes(a, a, luma=a[..., 0])
    with pytest.raises(ValueError, match="unknown colour map 'nope'"):
        fuse_colour_planes(a, a, "nope", luma=a)
