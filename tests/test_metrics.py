"""lam_trt.metrics against the pairwise Gini definition and known maps."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lam_trt.errors import InputError
from lam_trt.metrics import abs_normalised, completeness, diffusion_index, gini


def pairwise_gini(x: np.ndarray) -> float:
    """sum_ij |g_i - g_j| / (2 n^2 mean), after the reference's shift and +1e-7."""
    g = np.asarray(x, dtype=np.float64).ravel()
    g = g - min(g.min(), 0.0) + 1e-7
    return float(np.abs(g[:, None] - g[None, :]).sum() / (2 * g.size**2 * g.mean()))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(7,), (9, 11), (3, 5, 6)])
def test_gini_equals_pairwise_formula(seed, shape):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) ** 3  # heavy tails and negative values
    assert gini(x) == pytest.approx(pairwise_gini(x), rel=1e-10)
    assert gini(np.abs(x)) == pytest.approx(pairwise_gini(np.abs(x)), rel=1e-10)


def test_diffusion_index_known_maps():
    assert diffusion_index(np.ones((32, 32))) == pytest.approx(100.0)
    assert diffusion_index(np.zeros((32, 32))) == pytest.approx(100.0)
    spike = np.zeros((32, 32))
    spike[5, 7] = 1.0
    n = spike.size  # closed form of (1 - G) * 100 with the reference's +1e-7 on every pixel
    assert diffusion_index(spike) == pytest.approx(100 * (1 + n * n * 1e-7) / (n * (1 + n * 1e-7)))
    assert diffusion_index(spike) < 0.2
    half = np.zeros((32, 32))
    half[:16] = 1.0
    assert diffusion_index(half) == pytest.approx(50.0, rel=1e-4)


def test_gini_of_empty_map():
    with pytest.raises(InputError, match="empty"):
        gini(np.zeros(0))


def test_abs_normalised_sums_channels_before_abs():
    attribution = np.zeros((3, 4, 5), np.float32)
    attribution[0, 1, 1], attribution[1, 1, 1] = 2.0, -2.0  # cancels across channels
    attribution[:, 2, 3] = -1.0
    attribution[2, 0, 0] = 1.5
    a = abs_normalised(attribution)
    expected = np.zeros((4, 5))
    expected[2, 3], expected[0, 0] = 1.0, 0.5
    assert a.dtype == np.float32 and a.shape == (4, 5)
    np.testing.assert_allclose(a, expected)


def test_abs_normalised_zero_and_bad_maps():
    a = abs_normalised(np.zeros((3, 4, 4), np.float32))
    assert a.shape == (4, 4) and not np.any(a) and not np.any(np.isnan(a))
    with pytest.raises(InputError, match="NaN"):
        abs_normalised(np.full((1, 2, 2), np.nan))
    with pytest.raises(InputError, match=r"\[C, h, w\]"):
        abs_normalised(np.zeros((4, 4)))


def test_completeness():
    gap, relative = completeness(9.0, 12.0, 2.0)
    assert gap == pytest.approx(-1.0) and relative == pytest.approx(-0.1)
    gap, relative = completeness(0.5, 3.0, 3.0)
    assert gap == pytest.approx(0.5) and math.isnan(relative)
