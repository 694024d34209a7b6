"""Tests of asfe3d.metrics.functional on tiny 2D images (32x32) and 3D volumes (16^3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from asfe3d.metrics import (
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    average_gradient,
    correlation_coefficient,
    entropy,
    fusion_metrics,
    mutual_information,
    psnr,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    to_8bit,
    vif,
)

SHAPES = {"2d": (32, 32), "3d": (16, 16, 16)}
TWO_SOURCE = ["MI", "SCD", "CC", "VIF", "Qabf", "SSIM", "PSNR"]


def smooth(shape: tuple[int, ...], seed: int, sigma: float = 1.5) -> np.ndarray:
    """Smooth random image rescaled to [0, 1]."""
    x = gaussian_filter(np.random.default_rng(seed).random(shape), sigma)
    return (x - x.min()) / (x.max() - x.min())


def checkerboard(shape: tuple[int, ...]) -> np.ndarray:
    return (np.indices(shape).sum(axis=0) % 2).astype(np.float64)


def half_half(shape: tuple[int, ...]) -> np.ndarray:
    x = np.zeros(shape)
    x[: shape[0] // 2] = 1.0
    return x


@pytest.fixture(params=list(SHAPES), ids=list(SHAPES))
def shape(request: pytest.FixtureRequest) -> tuple[int, ...]:
    return SHAPES[request.param]


def test_names_constants() -> None:
    assert METRIC_NAMES == ["EN", "SD", "SF", "AG", "MI", "SCD", "CC", "VIF", "Qabf", "SSIM", "PSNR"]
    assert set(HIGHER_IS_BETTER) == set(METRIC_NAMES) and all(HIGHER_IS_BETTER.values())


# --------------------------------------------------------------------------------------- closed-form values
def test_closed_form_single_image(shape: tuple[int, ...]) -> None:
    nd = len(shape)
    hh = half_half(shape)
    assert entropy(hh) == pytest.approx(1.0, abs=1e-12)
    assert standard_deviation(hh) == pytest.approx(127.5, abs=1e-9)
    cb = checkerboard(shape)
    assert spatial_frequency(cb) == pytest.approx(255.0 * math.sqrt(nd), rel=1e-9)
    assert average_gradient(cb) == pytest.approx(255.0, rel=1e-6)
    # a ramp along axis 0 with step 1 grey level: SF^2 = 1, AG = sqrt(1 / nd)
    ramp = np.broadcast_to((np.arange(shape[0]) / 255.0).reshape((-1,) + (1,) * (nd - 1)), shape)
    assert spatial_frequency(ramp) == pytest.approx(1.0, rel=1e-9)
    assert average_gradient(ramp) == pytest.approx(math.sqrt(1.0 / nd), rel=1e-6)


def test_psnr_closed_form(shape: tuple[int, ...]) -> None:
    f = np.zeros(shape)
    a = np.full(shape, 100 / 255)
    b = np.full(shape, 50 / 255)
    mse = (100**2 + 50**2) / 2
    assert psnr(f, a, b) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)


def test_qabf_perfect_edges_constant(shape: tuple[int, ...]) -> None:
    # F == A == B: strength 1 and orientation 1 wherever there is an edge, so Q is the product of the two sigmoids
    a = smooth(shape, 1)
    expected = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert qabf(a, a, a) == pytest.approx(expected, rel=1e-5)


def test_mutual_information_against_histogram2d(shape: tuple[int, ...]) -> None:
    a, b, f = smooth(shape, 1), smooth(shape, 2), smooth(shape, 3)

    def mi(x: np.ndarray, y: np.ndarray) -> float:
        h, _, _ = np.histogram2d(to_8bit(x).ravel(), to_8bit(y).ravel(), bins=256, range=[[0, 256]] * 2)
        p = h / h.sum()
        px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
        nz = p > 0
        return float((p[nz] * np.log2(p[nz] / (px @ py)[nz])).sum())

    assert mutual_information(f, a, b) == pytest.approx(mi(a, f) + mi(b, f), rel=1e-9)


# --------------------------------------------------------------------------------------- identities
def test_identical_images(shape: tuple[int, ...]) -> None:
    a, b = smooth(shape, 1), smooth(shape, 2)
    assert ssim(a, a, a) == pytest.approx(2.0, abs=1e-5)
    assert vif(a, a, a) == pytest.approx(2.0, abs=1e-4)
    assert mutual_information(a, a, a) == pytest.approx(2 * entropy(a), rel=1e-12)
    assert correlation_coefficient(a, a, a) == pytest.approx(1.0, abs=1e-12)
    assert psnr(a, a, a) == math.inf
    p = psnr(a, a, b)  # F equal to one source: finite, and only half the MSE of B counts
    mse_b = np.mean((to_8bit(a).astype(np.float64) - to_8bit(b)) ** 2)
    assert math.isfinite(p) and p == pytest.approx(10 * math.log10(255**2 / (mse_b / 2)), rel=1e-9)


def test_fused_equal_to_one_source(shape: tuple[int, ...]) -> None:
    a, b = smooth(shape, 1), smooth(shape, 2)
    qa, qb = to_8bit(a).astype(np.float64), to_8bit(b).astype(np.float64)
    r_ab = np.corrcoef(qa.ravel(), qb.ravel())[0, 1]
    assert correlation_coefficient(a, a, b) == pytest.approx((1 + r_ab) / 2, rel=1e-9)
    # SCD with F = A: r(A - B, A) + r(0, B), the second undefined (zero variance) and counted as 0
    r_diff = np.corrcoef((qa - qb).ravel(), qa.ravel())[0, 1]
    assert scd(a, a, b) == pytest.approx(r_diff, rel=1e-9)
    assert mutual_information(a, a, b) == pytest.approx(entropy(a) + mutual_information(a, b, b) / 2, rel=1e-9)
    # F = A scores SSIM(A, A) = 1 plus SSIM(B, A) < 1
    s = ssim(a, a, b)
    assert 1.0 < s < 2.0


def test_constant_images(shape: tuple[int, ...]) -> None:
    c = np.full(shape, 0.4)
    out = fusion_metrics(c, c, np.full(shape, 0.7))
    assert not any(math.isnan(v) for v in out.values())
    assert out["EN"] == 0.0 and out["SD"] == 0.0 and out["SF"] == 0.0 and out["AG"] == 0.0
    assert out["VIF"] == 0.0 and out["Qabf"] == 0.0 and out["CC"] == 0.0 and out["SCD"] == 0.0
    assert math.isfinite(out["PSNR"])


def test_swap_sources(shape: tuple[int, ...]) -> None:
    a, b = smooth(shape, 1), smooth(shape, 2)
    f = np.clip(0.6 * a + 0.4 * b + 0.02 * np.random.default_rng(5).standard_normal(shape), 0, 1)
    m1 = fusion_metrics(f, a, b, names=TWO_SOURCE)
    m2 = fusion_metrics(f, b, a, names=TWO_SOURCE)
    for k in TWO_SOURCE:
        assert m1[k] == pytest.approx(m2[k], rel=1e-9), k


def test_noisy_copy_scores_lower(shape: tuple[int, ...]) -> None:
    a, b = smooth(shape, 1), smooth(shape, 2)
    clean = 0.5 * (a + b)
    noisy = np.clip(clean + 0.1 * np.random.default_rng(7).standard_normal(shape), 0, 1)
    for fn in (ssim, vif, qabf):
        assert fn(noisy, a, b) < fn(clean, a, b), fn.__name__


def test_fusion_metrics_matches_single_functions(shape: tuple[int, ...]) -> None:
    a, b, f = smooth(shape, 1), smooth(shape, 2), smooth(shape, 3)
    out = fusion_metrics(f, a, b)
    assert list(out) == METRIC_NAMES
    singles = {
        "EN": entropy(f), "SD": standard_deviation(f), "SF": spatial_frequency(f), "AG": average_gradient(f),
        "MI": mutual_information(f, a, b), "SCD": scd(f, a, b), "CC": correlation_coefficient(f, a, b),
        "VIF": vif(f, a, b), "Qabf": qabf(f, a, b), "SSIM": ssim(f, a, b), "PSNR": psnr(f, a, b),
    }
    for k in METRIC_NAMES:
        assert out[k] == pytest.approx(singles[k], rel=1e-12), k
    assert list(fusion_metrics(f, a, b, names=["PSNR", "EN"])) == ["EN", "PSNR"]


def test_torch_and_channel_dims(shape: tuple[int, ...]) -> None:
    a, b, f = smooth(shape, 1), smooth(shape, 2), smooth(shape, 3)
    ref = fusion_metrics(f, a, b)
    t = lambda x: torch.from_numpy(x).float()[None]  # noqa: E731  (1, H, W[, D]) float32 tensor
    out = fusion_metrics(t(f), t(a), t(b))
    for k in METRIC_NAMES:
        assert out[k] == pytest.approx(ref[k], rel=1e-5), k


# --------------------------------------------------------------------------------------- masks
def test_mask_restricts(shape: tuple[int, ...]) -> None:
    a, b, f = smooth(shape, 1), smooth(shape, 2), smooth(shape, 3)
    mask = np.zeros(shape, dtype=bool)
    mask[(slice(4, -4),) * len(shape)] = True
    # values outside the mask do not change histogram / pointwise statistics
    f2 = f.copy()
    f2[~mask] = np.random.default_rng(3).random(int((~mask).sum()))
    names = ["EN", "SD", "MI", "SCD", "CC", "PSNR", "SF", "AG"]
    m1 = fusion_metrics(f, a, b, mask=mask, names=names)
    m2 = fusion_metrics(f2, a, b, mask=mask, names=names)
    for k in names:
        assert m1[k] == pytest.approx(m2[k], rel=1e-12), k
    assert fusion_metrics(f, a, b, mask=mask)["EN"] != pytest.approx(entropy(f))
    # half/half image: only the ones inside the mask -> entropy 0
    hh = half_half(shape)
    assert entropy(hh, mask=hh.astype(bool)) == 0.0
    # windowed metric: F = A within SSIM's window radius (5) of the mask, garbage elsewhere -> SSIM(A, F) = 1
    inner = np.zeros(shape, dtype=bool)
    inner[(slice(7, 9),) * len(shape)] = True
    g = np.random.default_rng(4).random(shape)
    g[(slice(2, 14),) * len(shape)] = a[(slice(2, 14),) * len(shape)]
    assert ssim(g, a, a, mask=inner) == pytest.approx(2.0, abs=1e-5)
    assert ssim(g, a, a) < 1.9
    full = np.ones(shape, dtype=bool)
    for k, v in fusion_metrics(f, a, b, mask=full).items():
        assert v == pytest.approx(fusion_metrics(f, a, b)[k], rel=1e-6), k


# --------------------------------------------------------------------------------------- bad input
def test_shape_mismatch(shape: tuple[int, ...]) -> None:
    a = smooth(shape, 1)
    other = np.zeros(tuple(s + 1 for s in shape))
    with pytest.raises(ValueError, match=r"\(" + ", ".join(str(s + 1) for s in shape) + r"\)"):
        ssim(a, a, other)
    with pytest.raises(ValueError, match="mask shape"):
        entropy(a, mask=np.ones(tuple(s + 1 for s in shape), dtype=bool))


@pytest.mark.parametrize("bad_shape", [(16,), (2, 8, 8, 8), (1, 1, 1, 16)])
def test_bad_ndim(bad_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"got shape \(" + ", ".join(map(str, bad_shape))):
        entropy(np.zeros(bad_shape))


def test_bad_values(shape: tuple[int, ...]) -> None:
    a = smooth(shape, 1)
    nan = a.copy()
    nan.flat[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        psnr(nan, a, a)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        vif(a * 2, a, a)
    with pytest.raises(ValueError, match=r"boolean \(or hold only 0 and 1\), got \[0.0, 0.5\]"):
        entropy(a, mask=np.where(a > 0.5, 0.5, 0.0))  # a soft mask
    assert entropy(a, mask=np.ones(shape)) == entropy(a, mask=np.ones(shape, bool))  # 0/1 numbers: a mask
    with pytest.raises(ValueError, match="empty"):
        entropy(a, mask=np.zeros(shape, dtype=bool))
    with pytest.raises(ValueError, match="at least 2"):
        entropy(np.zeros(shape[:-1] + (1,)) if len(shape) == 3 else np.zeros((1, 5, 1)))
    with pytest.raises(ValueError, match="unknown metric names"):
        fusion_metrics(a, a, a, names=["SSIM", "FMI"])


def test_threaded_path_gives_same_values(shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    import asfe3d.metrics.functional as fm

    a, b, f = smooth(shape, 1), smooth(shape, 2), smooth(shape, 3)
    sequential = fusion_metrics(f, a, b)
    monkeypatch.setattr(fm, "_PARALLEL_MIN_VOXELS", 0)
    monkeypatch.setattr(fm.os, "cpu_count", lambda: 2)
    assert fusion_metrics(f, a, b) == sequential


def test_halves_round_up_whatever_the_dtype() -> None:
    """Probe 35 #1: the mean of two 8-bit images is a half in half its pixels; numpy's rint sent a float64 half to
    the even level and a float32 one by its representation error (EN 6.509 / 6.640 / 6.655 half-up, MI alike).
    Halves now go up, as MATLAB's uint8 does, in every dtype."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (64, 64)), rng.integers(0, 256, (64, 64))
    mean = (a + b) / 2.0  # grey levels, half of them k + 0.5
    expected = np.floor(mean + 0.5)
    for dtype in (np.float64, np.float32):
        assert np.array_equal(to_8bit((mean / 255.0).astype(dtype)), expected), dtype
    values = {dtype: entropy((mean / 255.0).astype(dtype)) for dtype in (np.float64, np.float32)}
    assert values[np.float64] == values[np.float32]
    assert to_8bit(np.array([0.0, 1.0, 0.4 / 255, 0.6 / 255, 254.5 / 255])).tolist() == [0, 255, 0, 1, 255]


def test_names_may_be_any_iterable() -> None:
    """Probe 35 #2: an iterator of names was used up by the checks: fusion_metrics returned {}."""
    a, b, f = smooth((16, 16), 1), smooth((16, 16), 2), smooth((16, 16), 3)
    assert list(fusion_metrics(f, a, b, names=(n for n in ("SSIM", "PSNR")))) == ["SSIM", "PSNR"]
    assert list(fusion_metrics(f, a, b, names=iter(["EN"]))) == ["EN"]


def test_sf_and_ag_are_undefined_not_zero_where_the_mask_has_no_neighbours() -> None:
    """Probe 35 #4: a mask of one slice of a volume (or a checkerboard) gave AG 0.0, the worst score; undefined now."""
    f = smooth((12, 12, 8), 3)
    one_slice = np.zeros(f.shape, bool)
    one_slice[:, :, 4] = True
    assert math.isnan(average_gradient(f, one_slice)) and spatial_frequency(f, one_slice) > 0
    board = checkerboard(f.shape).astype(bool)
    assert math.isnan(average_gradient(f, board)) and math.isnan(spatial_frequency(f, board))
