"""The two 'both images' figures: methods on the DETAIL/PETC plane, one volume in three planes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from asfe3d.errors import Asfe3dInputError
from asfe3d.evaluation.front import _label_side, save_front_figure, save_planes_figure


def test_front_figure_written_and_needs_both_columns(tmp_path) -> None:
    path = save_front_figure({"mean": {"DETAIL": 0.4, "PETC": 0.9}, "asfe-volume": {"DETAIL": 0.9, "PETC": 0.88},
                              "max": {"SSIM": 0.5}}, tmp_path / "front.png")
    assert Image.open(path).size[0] > 300
    with pytest.raises(Asfe3dInputError, match="exists"):
        save_front_figure({"mean": {"DETAIL": 0.4, "PETC": 0.9}}, path)
    with pytest.raises(ValueError, match="no method has both DETAIL and PETC"):
        save_front_figure({"max": {"SSIM": 0.5}}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_labels_of_close_points_face_away_from_each_other() -> None:
    """Two close points get their labels on opposite outer sides (the held-out table once drew asfe-volume's name
    beside asfe-slice's star); a lone point's label goes right."""
    points = {"asfe-volume": (0.936, 0.974), "asfe-slice": (0.921, 0.978), "highpass": (0.895, 0.985),
              "max": (0.75, 0.865)}
    assert _label_side(points, "asfe-volume") == "right" and _label_side(points, "asfe-slice") == "left"
    assert _label_side(points, "highpass") == "left" and _label_side(points, "max") == "left"
    assert _label_side({"mean": (0.5, 0.5)}, "mean") == "right"


def test_planes_figure_rows_and_bad_shapes(tmp_path) -> None:
    rng = np.random.default_rng(0)
    mri, pet = rng.random((12, 14, 10)), rng.random((12, 14, 10))
    path = save_planes_figure(mri, pet, {"mean": 0.5 * (mri + pet), "max": np.maximum(mri, pet)},
                              tmp_path / "planes.png", title="case")
    w, h = Image.open(path).size
    assert h > w  # four rows of three planes
    with pytest.raises(ValueError, match="3D arrays of one shape"):
        save_planes_figure(mri, pet[:-1], {}, tmp_path / "bad.png")


def test_planes_figure_shows_thick_slices_at_their_true_shape(tmp_path) -> None:
    """A 1 x 1 x 3 mm grid: the coronal and sagittal planes three times as tall per voxel as the axial one (they were
    drawn squashed, one row per 3 mm slice); a bad spacing is refused, quoted."""
    from asfe3d.evaluation.front import _plane_aspects

    assert _plane_aspects((1.0, 1.0, 3.0)) == [1.0, 3.0, 3.0]
    assert _plane_aspects((1.2, 1.0, 1.0)) == pytest.approx([1 / 1.2, 1 / 1.2, 1.0])
    rng = np.random.default_rng(1)
    mri, pet = rng.random((12, 14, 6)), rng.random((12, 14, 6))
    square = save_planes_figure(mri, pet, {}, tmp_path / "square.png")
    thick = save_planes_figure(mri, pet, {}, tmp_path / "thick.png", spacing=(1.0, 1.0, 3.0))
    assert np.asarray(Image.open(square)).tobytes() != np.asarray(Image.open(thick)).tobytes()
    with pytest.raises(ValueError, match=r"spacing must be three voxel sizes > 0 \(mm\), got \(1.0, 0.0, 1.0\)"):
        save_planes_figure(mri, pet, {}, tmp_path / "bad.png", spacing=(1.0, 0.0, 1.0))
