"""The benchmark's PyTorch peers compute the same map as lam-trt, so bench/ compares equal work.

(a) bench/reference_lam.py:lam_authors (one image at a time, backward(), blur per step) and
(b) lam_batched (batched input-only autograd) against lam_trt.Attributor on a tiny network.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lam_trt import Attributor
from lam_trt.export.torch_export import export_onnx
from lam_trt.export.zoo import build

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


peers = _load("reference_lam")


def rel_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(actual, np.float64) - expected) / np.linalg.norm(expected))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = build("edsr", width=8, depth=1)
    path = tmp_path_factory.mktemp("bench") / "edsr_tiny.onnx"
    export_onnx(model, path, in_channels=3, size=(16, 16))
    image = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    attributor = Attributor(path, provider="cpu", cache_dir=tmp_path_factory.mktemp("cache"))
    expected = attributor.attribute(image, window=(24, 20), size=16, steps=6, crop=False)
    return model, image, expected


def test_authors_algorithm_matches_lam_trt(tiny):
    model, image, expected = tiny
    got = peers.lam_authors(model, image, (24, 20), size=16, steps=6)
    assert rel_l2(got.attribution, expected.attribution) < 1e-4
    np.testing.assert_allclose(got.detector, expected.detector_path, rtol=1e-5)
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())


def test_batched_autograd_matches_lam_trt(tiny):
    model, image, expected = tiny
    got = peers.lam_batched(model, image, (24, 20), size=16, steps=6, batch_size=4)  # 4 + 2: a ragged chunk
    assert rel_l2(got.attribution, expected.attribution) < 1e-4
    np.testing.assert_allclose(got.detector, expected.detector_path, rtol=1e-5)
    assert got.baseline == pytest.approx(expected.detector_baseline, rel=1e-5)


def test_torch_blur_path_is_the_spec_blur():
    image = np.random.default_rng(1).random((3, 7, 9)).astype(np.float32)
    gammas = peers.blur_path_torch(torch.from_numpy(image), 1.2, 4, 9).numpy()
    for k, s in enumerate(peers.path_sigmas(1.2, 4)):
        np.testing.assert_allclose(gammas[k], peers.blur_cpu(image.astype(np.float64),
                                                             peers.gaussian_kernel_2d(s, 9)), atol=1e-12)
    np.testing.assert_array_equal(gammas[-1].astype(np.float32), image)  # sigma = 0: the image itself
