"""asfe3d.utils.stats: the fast percentile equals numpy's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from asfe3d.utils import percentile
from asfe3d.utils.stats import FAST_MIN_SIZE


def _arrays(rng: np.random.Generator) -> list[np.ndarray]:
    n = FAST_MIN_SIZE + 12_345
    sparse = np.zeros(n, np.float32)
    sparse[rng.integers(0, n, n // 10)] = rng.random(n // 10, dtype=np.float32)
    return [
        rng.gamma(2.0, 1.0, size=n).astype(np.float32),
        rng.normal(size=n),  # float64
        np.round(rng.normal(size=n) * 3).astype(np.float32),  # many ties
        sparse,  # 90 % zeros, like a PET on an MRI grid
        rng.gamma(2.0, 1.0, size=(70, 61, 64)).astype(np.float32),  # 3D
    ]


@pytest.mark.parametrize("q", [0.0, 0.5, 1, 37.3, 50.0, 99, 99.0, 99.5, 100.0])
def test_equals_numpy_bitwise(q: float) -> None:
    for a in _arrays(np.random.default_rng(7)):
        got, want = percentile(a, q), np.percentile(a, q)
        assert got == want and np.asarray(got).dtype == np.asarray(want).dtype, (a.dtype, a.shape, q, got, want)


def test_sequence_of_percentiles() -> None:
    for a in _arrays(np.random.default_rng(3)):
        got, want = percentile(a, [0.5, 99.5]), np.percentile(a, [0.5, 99.5])
        assert np.array_equal(got, want) and got.dtype == want.dtype


def test_input_not_modified_and_small_or_nan_arrays() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(FAST_MIN_SIZE * 2, dtype=np.float32)
    before = a.copy()
    percentile(a, 99.5)
    assert np.array_equal(a, before)
    small = rng.random(100)
    assert percentile(small, 12.5) == np.percentile(small, 12.5)
    a[5] = np.nan
    assert np.isnan(percentile(a, 50.0)) and np.isnan(np.percentile(a, 50.0))
    ints = rng.integers(0, 1000, FAST_MIN_SIZE * 2)
    assert percentile(ints, 99.5) == np.percentile(ints, 99.5)


@pytest.mark.parametrize("q", [-1.0, 100.5, [[1.0]]])
def test_bad_percentile_quoted(q: object) -> None:
    with pytest.raises(ValueError, match="percentiles must be"):
        percentile(np.zeros(10), q)


def test_empty_array_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile(np.zeros(0), 50.0)


def test_padding_mask_finds_a_cts_padding_only() -> None:
    """A CT's constant minimum outside its reconstruction disc (-3024, -32768) is padding; air (-1024), an MRI's
    zero background, a z-scored image's negatives and an image made only of one value are not."""
    from asfe3d.utils import padding_mask

    rng = np.random.default_rng(0)
    ct = rng.normal(40.0, 20.0, (20, 20, 10)).astype(np.float32)
    ct[:, :5] = -1024.0  # air
    assert padding_mask(ct) is None
    for pad in (-3024.0, -32768.0):
        padded = ct.copy()
        padded[:2] = pad
        found = padding_mask(padded)
        assert found is not None and found.sum() == 2 * 20 * 10 and bool(found[:2].all())
    few = ct.copy()
    few.flat[:3] = -3024.0  # 3 voxels of 4000: below 1 %, no padding
    assert padding_mask(few) is None
    mri = np.clip(rng.normal(100.0, 50.0, (20, 20, 10)), 0, None)
    assert padding_mask(mri) is None and padding_mask((mri - mri.mean()) / mri.std()) is None
    assert padding_mask(np.full((4, 4), -3024.0)) is None and padding_mask(np.zeros(0)) is None
