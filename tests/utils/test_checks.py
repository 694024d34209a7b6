"""``asfe3d.utils.checks``: one type check per kind of number, numpy's numbers taken."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asfe3d.utils import is_int, is_real


@pytest.mark.parametrize("value, integer, real", [
    (3, True, True), (np.int64(3), True, True), (np.uint8(3), True, True),
    (2.5, False, True), (np.float32(2.5), False, True), (np.float64(2.5), False, True), (math.nan, False, True),
    (True, False, False), (np.bool_(True), False, False), ("2", False, False), (2j, False, False), (None, False, False),
])
def test_is_int_and_is_real(value, integer, real) -> None:
    assert is_int(value) is integer and is_real(value) is real


def test_numpy_numbers_are_taken_where_python_ones_are() -> None:
    """Review 32 #7: 17 hand-written checks refused numpy scalars (a voxel size or count computed with numpy) that
    ``ASFEFusion`` takes; they are one check now, and a bad value is still refused with it quoted."""
    from asfe3d.inferers import FusionInferer
    from asfe3d.transforms.array import FillOutsideMask, SmoothMm

    assert SmoothMm(np.float32(2.0)).fwhm_mm == 2.0
    assert FillOutsideMask(np.float32(12.0), coarse_voxels=np.int64(10)).coarse_voxels == 10
    assert FusionInferer(sw_batch_size=np.int64(4)).sw_batch_size == 4
    with pytest.raises(ValueError, match=r"fwhm_mm must be a number in \[0, 20\] \(mm\), got np\.float32\(nan\)"):
        SmoothMm(np.float32("nan"))
    with pytest.raises(ValueError, match=r"sw_batch_size must be an integer >= 1, got True"):
        FusionInferer(sw_batch_size=True)


def test_voxel_sizes_take_numbers_of_every_kind_and_refuse_the_rest() -> None:
    """One spacing check for the metrics' and the defects' functions (review 36 #3: a tuple of 0-d torch values,
    as ``tuple(meta.pixdim)`` gives, was refused, and a (3, 1) array taken)."""
    import torch

    from asfe3d.utils import voxel_sizes

    for spacing in ((torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)), np.array([1.0, 2.0, 3.0]),
                    [1, 2, 3], (np.float32(1), np.int64(2), 3.0)):
        assert voxel_sizes(spacing, 3).tolist() == [1.0, 2.0, 3.0]
    assert voxel_sizes(np.float32(2), 3).tolist() == [2.0, 2.0, 2.0]
    for bad in (np.array([[1.0], [2.0], [3.0]]), (True, 1.0, 1.0), True, "2", 0, (1, 1), (1.0, float("nan"), 1.0),
                (1.0, 1.0, float("inf")), None, {"x": 1}):
        with pytest.raises(ValueError, match=r"spacing must be one voxel size or 3, finite numbers > 0 \(mm\), got"):
            voxel_sizes(bad, 3)


def test_binary_takes_bool_and_0_1_numbers_and_refuses_soft_masks():
    from asfe3d.utils import binary

    assert binary(np.array([0.0, 1.0, 1.0], np.float32)).tolist() == [False, True, True]
    assert binary(np.array([[0, 1]], np.uint8)).dtype == np.bool_
    with pytest.raises(ValueError, match=r"brain must be boolean \(or hold only 0 and 1\), got \[0.02, 1.0\]"):
        binary(np.array([0.02, 1.0]), "brain")
    with pytest.raises(ValueError, match="mask must be boolean .* got <U1"):
        binary(np.array(["a"]))
