"""lam_trt.device.uniform_chunks: every GPU run gets the same batch (a ragged last chunk made ONNX
Runtime's CUDA provider up to 10x slower on an H100), and the padding adds nothing to the map."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lam_trt.device import uniform_chunks


@pytest.mark.parametrize("n, size", [(100, 66), (100, 19), (100, 27), (100, 25), (7, 128), (9, 2), (1, 1), (13, 1)])
def test_chunks_are_even_and_padding_is_zero_weight(n, size):
    rng = np.random.default_rng(n * 1000 + size)
    points, weights = rng.random((n, 3, 4, 5), np.float32), rng.random((n, 3, 4, 5), np.float32)
    padded_points, padded_weights, per = uniform_chunks(points, weights, size)
    runs = len(padded_points) // per
    assert len(padded_points) == runs * per == len(padded_weights)
    assert runs == math.ceil(n / size) and per <= size          # no more runs than before, none larger
    assert len(padded_points) - n < runs                        # at most one padded image per run
    np.testing.assert_array_equal(padded_points[:n], points)
    np.testing.assert_array_equal(padded_weights[:n], weights)
    assert not padded_weights[n:].any()                         # the padding adds exactly 0
    assert (padded_points[n:] == points[-1]).all()              # at a real point: finite gradients
