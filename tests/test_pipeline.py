"""The LAM pipeline (path -> attribution graph -> runner -> result) against independent references:
the PyTorch implementation of LAM-SPEC.md in tests/reference_lam.py, and Captum."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lam_trt
from nets import NETS, export_onnx, lr_image, seeded
from reference_lam import detector, lam_details

SIZE = 8  # window size (SR pixels); small images keep the suite fast


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


pytestmark = pytest.mark.usefixtures("shared_graph_cache")  # one graph cache for the session


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """name -> (torch module, ONNX path) for three network kinds of the attribution-graph issue."""
    out = {}
    for name in ("ResidualCA", "TinyRRDB", "TinyAttentionSR"):
        net = seeded(NETS[name])
        out[name] = (net, export_onnx(net, (3, 12, 12), tmp_path_factory.mktemp(name) / "model.onnx"))
    return out


@pytest.mark.parametrize("steps", [50, 100])
@pytest.mark.parametrize("name", ["ResidualCA", "TinyRRDB", "TinyAttentionSR"])
def test_lam_matches_reference(models, name, steps):
    net, path = models[name]
    img = lr_image()
    result = lam_trt.Attributor(path, provider="cpu").attribute(img, window=(7, 5), size=SIZE, steps=steps)
    ref = lam_details(net.double(), torch.tensor(img, dtype=torch.float64), (7, 5), SIZE, steps)
    net.float()
    assert rel_l2(result.attribution, ref.signed.numpy()) < 1e-4
    assert abs(result.diffusion_index - ref.di) < 1e-3
    assert result.detector_input == pytest.approx(ref.detector_image, rel=1e-5)
    assert result.detector_baseline == pytest.approx(ref.detector_baseline, rel=1e-5)
    assert result.completeness_gap == pytest.approx(ref.gap, rel=1e-3, abs=1e-5)
    assert result.attribution.shape == img.shape and result.sr_output.shape == (3, 24, 24)
    assert result.meta["model"]["sha256"] and result.meta["runtime"]["provider"] == "cpu"
    assert result.meta["runtime"]["denormals_as_zero"]


def test_integrated_gradients_matches_captum(models):
    captum_attr = pytest.importorskip("captum.attr")
    net, path = models["ResidualCA"]
    img, steps, (x, y) = lr_image(), 16, (4, 6)
    result = lam_trt.attribute(path, img, window=(x, y), size=SIZE, steps=steps, method="ig", provider="cpu")
    net64 = net.double()
    ig = captum_attr.IntegratedGradients(lambda t: detector(net64(t), y, x, SIZE))
    expected = ig.attribute(torch.tensor(img, dtype=torch.float64)[None], baselines=0.0, n_steps=steps,
                            method="riemann_right")[0].numpy()
    net.float()
    assert rel_l2(result.attribution, expected) < 1e-4


def test_completeness_gap_shrinks_as_steps_grow(models):
    _, path = models["TinyAttentionSR"]
    attributor = lam_trt.Attributor(path, provider="cpu")
    gaps = [abs(attributor.attribute(lr_image(), window=(7, 5), size=SIZE, steps=s).completeness_gap_relative)
            for s in (5, 20, 80)]
    assert gaps[0] > gaps[1] > gaps[2]


def test_better_quadrature_closes_the_gap(models):
    _, path = models["TinyAttentionSR"]
    attributor = lam_trt.Attributor(path, provider="cpu")
    gap = {rule: abs(attributor.attribute(lr_image(), window=(7, 5), size=SIZE, steps=16,
                                          rule=rule).completeness_gap) for rule in ("right", "gauss-legendre")}
    assert gap["gauss-legendre"] < 0.2 * gap["right"]


def test_moving_the_window_reuses_the_session(models):
    net, path = models["TinyRRDB"]
    attributor = lam_trt.Attributor(path, provider="cpu")
    first = attributor.attribute(lr_image(), window=(2, 3), size=SIZE, steps=10)
    second = attributor.attribute(lr_image(), window=(12, 10), size=SIZE, steps=10)
    assert len(attributor._runners) == 1  # one graph and session serve every window
    ref = lam_details(net.double(), torch.tensor(lr_image(), dtype=torch.float64), (12, 10), SIZE, 10)
    net.float()
    assert rel_l2(second.attribution, ref.signed.numpy()) < 1e-4
    assert rel_l2(first.attribution, second.attribution) > 0.1


def test_receptive_field_crop_is_exact(tmp_path):
    """A local network on a large image: the cropped run gives the same map as the full one."""
    net = seeded(NETS["BicubicResidualX2"])
    path = export_onnx(net, (3, 40, 40), tmp_path / "local.onnx")
    img = lr_image(40, 40)
    attributor = lam_trt.Attributor(path, provider="cpu")
    full = attributor.attribute(img, window=(50, 30), size=SIZE, steps=12, crop=False)
    cropped = attributor.attribute(img, window=(50, 30), size=SIZE, steps=12)
    assert cropped.meta["crop"]["applied"] and not full.meta["crop"]["applied"]
    assert cropped.meta["crop"]["height"] < 40 and cropped.meta["crop"]["width"] < 40
    assert rel_l2(cropped.attribution, full.attribution) < 1e-6
    assert cropped.detector_input == pytest.approx(full.detector_input, rel=1e-6)
    outside = np.ones(img.shape[1:], bool)
    c = cropped.meta["crop"]
    outside[c["top"]:c["top"] + c["height"], c["left"]:c["left"] + c["width"]] = False
    assert not np.any(full.attribution[:, outside])  # exactly zero beyond the receptive field


def test_global_network_is_not_cropped(models):
    _, path = models["ResidualCA"]
    result = lam_trt.attribute(path, lr_image(), window=(7, 5), size=SIZE, steps=4, provider="cpu")
    assert not result.meta["crop"]["applied"] and "global" in result.meta["crop"]["reason"]


@pytest.mark.parametrize("method", ["grad", "grad-x-input"])
def test_one_point_methods(models, method):
    net, path = models["ResidualCA"]
    img = lr_image()
    result = lam_trt.attribute(path, img, window=(7, 5), size=SIZE, method=method, provider="cpu")
    x = torch.tensor(img, dtype=torch.float64)[None].requires_grad_(True)
    net64 = net.double()
    grad, = torch.autograd.grad(detector(net64(x), 5, 7, SIZE).sum(), x)
    net.float()
    expected = grad[0].numpy() * (img if method == "grad-x-input" else 1.0)
    assert rel_l2(result.attribution, expected) < 1e-4
