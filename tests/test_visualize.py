"""Preview figures: physical aspect, orientation (letters and where things land), colour bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asfe3d.errors import Asfe3dInputError
from asfe3d.visualize import physical_slices, save_preview


def _blob_volume(affine: np.ndarray, shape: tuple[int, int, int], world: tuple[float, float, float]) -> np.ndarray:
    """A volume that is 1 near the world point ``world`` (mm) and 0.2 elsewhere."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    vol = np.where(np.linalg.norm(xyz - np.array(world), axis=1) < 4.0, 1.0, 0.2)
    return vol.reshape(shape).astype(np.float32)


def test_extents_are_in_millimetres_for_anisotropic_voxels() -> None:
    shape = (30, 40, 10)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    views = physical_slices(np.ones(shape, np.float32), affine)
    sag, cor, axi = views
    assert [v.name for v in views] == ["sagittal", "coronal", "axial"]
    assert cor.image.shape == (10, 30) and sag.image.shape == (10, 40) and axi.image.shape == (40, 30)
    assert cor.extent == pytest.approx((-0.5, 29.5, -1.5, 28.5))  # 10 slices x 3 mm tall, 30 mm wide
    assert sag.extent[3] - sag.extent[2] == pytest.approx(30.0) and sag.extent[1] - sag.extent[0] == pytest.approx(40)
    assert (axi.letters, cor.letters, sag.letters) == (("L", "R", "P", "A"), ("L", "R", "I", "S"),
                                                       ("P", "A", "I", "S"))


@pytest.mark.parametrize("flip", [False, True])
def test_right_anterior_superior_land_right_and_up(flip: bool) -> None:
    shape = (24, 24, 12)
    affine = np.diag([2.0, 2.0, 4.0, 1.0])
    affine[:3, 3] = [-23.0, -23.0, -22.0]
    if flip:  # an LPS-stored volume (x and y axes reversed in the file)
        affine = affine @ np.array([[-1, 0, 0, 23], [0, -1, 0, 23], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    vol = _blob_volume(affine, shape, (12.0, 12.0, 10.0))  # right, anterior, superior of the centre
    sag, cor, axi = physical_slices(vol, affine, centre_mm=(12.0, 12.0, 10.0))
    for view in (sag, cor, axi):  # the blob is in the right half (R or A) and upper half (S or A)
        rows, cols = np.nonzero(view.image > 0.5)
        assert cols.mean() > view.image.shape[1] / 2 and rows.mean() > view.image.shape[0] / 2, view.name
    assert axi.position_mm == pytest.approx(10.0, abs=2.0)


def test_preview_png_and_refusals(tmp_path: Path) -> None:
    from PIL import Image

    shape = (20, 24, 8)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    vol = _blob_volume(affine, shape, (10.0, 12.0, 12.0))
    rgb = np.stack([vol, vol * 0.5, vol * 0.2], axis=-1)
    path = save_preview(tmp_path / "p.png", vol, vol, vol, affine, rgb=rgb)
    img = Image.open(path)
    assert img.size[0] == 1000 and img.size[1] > 200
    with pytest.raises(Asfe3dInputError, match="already exists"):
        save_preview(path, vol, vol, vol, affine)
    # an 8-bit colour volume is drawn like its [0, 1] float copy
    save_preview(tmp_path / "u8.png", vol, vol, vol, affine, rgb=np.round(rgb * 255).astype(np.uint8))
    a = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    b = np.asarray(Image.open(tmp_path / "u8.png").convert("RGB"), dtype=float)
    assert a.shape == b.shape and np.abs(a - b).mean() < 1.0
    with pytest.raises(ValueError, match="one shape"):
        save_preview(tmp_path / "q.png", vol, vol[:-1], vol, affine)
    with pytest.raises(ValueError, match="unknown colormap"):
        save_preview(tmp_path / "q.png", vol, vol, vol, affine, colormap="nope")
    assert not (tmp_path / "q.png").exists()


@pytest.mark.parametrize("flip", [False, True])
def test_preview_png_puts_right_on_the_right_and_superior_up(tmp_path: Path, flip: bool) -> None:
    """In the written PNG (not only in the slice arrays), a blob right-superior of the centre lands right of the
    middle of the coronal and axial panels and above the middle of the coronal one, whatever the voxel order."""
    from PIL import Image

    shape = (30, 30, 30)
    affine = np.diag([-2.0 if flip else 2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [29.0 if flip else -29.0, -29.0, -29.0]  # world centre at 0 either way
    vol = _blob_volume(affine, shape, (14.0, 0.0, 14.0))
    img = np.asarray(Image.open(save_preview(tmp_path / "p.png", vol, vol, vol, affine)).convert("L"), dtype=float)
    row = img[: img.shape[0] // 3]  # the MRI row
    cols = np.flatnonzero((row > 30).sum(axis=0) > 20)  # columns inside a drawn panel (grey 0.2 or brighter)
    panels = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)[:3]
    assert len(panels) == 3
    for name, panel in zip(("coronal", "axial"), panels[1:]):
        block = row[:, panel[0]: panel[-1] + 1]
        rows_in = np.flatnonzero((block > 30).sum(axis=1) > 5)
        block = block[rows_in[0]: rows_in[-1] + 1]
        ys, xs = np.nonzero(block > 200)
        assert xs.mean() > block.shape[1] / 2, f"{name}: right side drawn on the left"
        if name == "coronal":
            assert ys.mean() < block.shape[0] / 2, "coronal: superior drawn at the bottom"


def test_preview_names_the_modalities_and_puts_colour_bars_in_their_units(tmp_path: Path, monkeypatch) -> None:
    """A PET/CT with SUV: rows "CT" and "PET on CT grid", bars in HU and SUV (ticks from the windows); without
    names or windows the bars say "normalised"."""
    from PIL import ImageDraw

    drawn: list[str] = []
    real_text = ImageDraw.ImageDraw.text

    def spy(self, xy, text, *args, **kwargs):
        drawn.append(str(text))
        return real_text(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", spy)
    shape, affine = (20, 24, 8), np.diag([1.0, 1.0, 3.0, 1.0])
    vol = _blob_volume(affine, shape, (10.0, 12.0, 12.0))
    save_preview(tmp_path / "ct.png", vol, vol, vol, affine,
                 labels={"anatomical": "CT", "anatomical_units": "HU", "pet_units": "SUV", "fused_units": "HU"},
                 windows={"mri": (-1024.0, 1976.0), "pet": (0.0, 12.0), "fused": (-1024.0, 1976.0)})
    assert {"CT", "PET on CT grid", "HU", "PET (SUV)", "-1024", "1976"} <= set(drawn)
    assert "MRI" not in drawn and "PET (normalised)" not in drawn
    drawn.clear()
    save_preview(tmp_path / "plain.png", vol, vol, vol, affine)
    assert {"MRI", "PET on MRI grid", "normalised", "PET (normalised)"} <= set(drawn)


def test_colour_bar_tick_near_zero_reads_zero() -> None:
    """A window starting a hair below zero (a resampled MRI: -1.28e-05) gives a '0' tick, not '-1.28e-05' spilling
    out of the bar; real values keep three significant digits, whole numbers from 100 on."""
    from asfe3d.visualize import _tick

    assert _tick(-1.28e-05, 1.19) == "0"
    assert _tick(0.239, 1.19) == "0.239" and _tick(31420.4, 31420.0) == "31420"
    assert _tick(-1.28e-05) == "-1.28e-05"  # no span given: the value as it is
    assert _tick(2e-6, 1e-5) == "2e-06"  # a tiny window keeps its tiny ticks


def test_nan_voxels_are_drawn_black_without_warnings(tmp_path: Path) -> None:
    """NaN voxels went through a float-to-uint8 cast (a RuntimeWarning, an undefined colour)."""
    import warnings

    from PIL import Image

    vol = np.full((6, 7, 5), 0.5, np.float32)
    vol[0, 0, 0] = np.nan
    vol[3, 3, 2] = np.nan  # in the views drawn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = save_preview(tmp_path / "p.png", vol, vol, vol, np.diag([2.0, 2.0, 2.0, 1.0]),
                           rgb=np.stack([vol] * 3, axis=-1))
    with Image.open(out) as im:
        assert im.size[0] == 1000


def test_the_colour_rows_bar_is_the_pet_rows(tmp_path: Path) -> None:
    """Probe 41 #2: the colour row's bar ran over [0, 1] while the colour volume's hue runs over the PET row's window
    (``colour_window``, to p99.5 / 0.7): one colour carried two values in one picture (1.4 times apart)."""
    from PIL import Image

    from asfe3d.fusion import fuse_colour
    from asfe3d.fusion.colour import apply_colormap, colour_window

    shape = (20, 24, 8)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    pet = _blob_volume(affine, shape, (10.0, 12.0, 12.0)) * 0.6
    rgb = fuse_colour(pet, apply_colormap(pet, "hot", window=colour_window(pet)), lambda a, b: 0.5 * (a + b))
    path = save_preview(tmp_path / "p.png", pet, pet, pet, affine, rgb=rgb, windows={"pet": (0.0, 1000.0)},
                        labels={"pet_units": "Bq/mL"})
    img = np.asarray(Image.open(path).convert("RGB"))
    row_h = (img.shape[0] - 10) // 4  # margin 10, four rows
    bars = [img[10 + r * row_h + 22: 10 + r * row_h + row_h - 8, 1000 - 10 - 74: 1000 - 10] for r in (1, 3)]
    assert bars[0].shape == bars[1].shape and np.array_equal(bars[0], bars[1])  # same colours, same ticks
