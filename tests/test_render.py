"""lam_trt.render: the reference's panels, checked pixel by pixel, and the written figures."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image
from scipy import stats

from lam_trt.metrics import abs_normalised, completeness, diffusion_index, gini
from lam_trt.render import contribution_area, panels, render_lam, render_path
from lam_trt.result import LAMResult


def make_result(h: int = 12, w: int = 10, scale: int = 4, channels: int = 3,
                attribution: np.ndarray | None = None, window: tuple[int, int, int] = (8, 12, 16),
                seed: int = 0) -> LAMResult:
    """A hand-built result: random image and SR output, a Gaussian blob of attribution."""
    rng = np.random.default_rng(seed)
    if attribution is None:
        yy, xx = np.mgrid[0:h, 0:w]
        blob = np.exp(-((yy - h / 2) ** 2 + (xx - w / 3) ** 2) / 8.0)
        attribution = (blob * rng.standard_normal((channels, h, w))).astype(np.float32)
    saliency = abs_normalised(attribution)
    alphas = np.arange(1, 11) / 10
    detector = 3.0 + np.sqrt(alphas)
    contributions = np.diff(np.concatenate([[3.0], detector]))
    gap, relative = completeness(contributions.sum() * 0.9, detector[-1], 3.0)
    return LAMResult(
        attribution=attribution, saliency=saliency, gini=gini(saliency),
        diffusion_index=diffusion_index(saliency), detector_input=float(detector[-1]),
        detector_baseline=3.0, completeness_gap=gap, completeness_gap_relative=relative,
        alphas=alphas, detector_path=detector, contributions=contributions * 0.9,
        image=rng.random((channels, h, w), dtype=np.float32),
        sr_output=rng.random((channels, h * scale, w * scale), dtype=np.float32) * 1.2 - 0.1,
        window=window, scale=scale)


def reference_kde(saliency: np.ndarray) -> np.ndarray:
    """The reference's vis_saliency_kde density: gaussian_kde evaluated point by point."""
    ys, xs = np.mgrid[0:saliency.shape[0], 0:saliency.shape[1]]
    points = np.vstack([xs.ravel(), ys.ravel()])
    z = stats.gaussian_kde(points, weights=saliency.ravel())(points).reshape(saliency.shape)
    return z / z.max()


def seismic8(values: np.ndarray) -> np.ndarray:
    return (255 * matplotlib.colormaps["seismic"](values * 0.5 + 0.5)[..., :3]).astype(np.uint8)


@pytest.mark.parametrize("seed", range(3))
def test_contribution_area_equals_gaussian_kde(seed):
    saliency = np.random.default_rng(seed).random((11, 14)) ** 4
    np.testing.assert_allclose(contribution_area(saliency), reference_kde(saliency), atol=1e-9)


@pytest.mark.parametrize("shape,hot", [((8, 8), []), ((1, 1), [(0, 0)]), ((1, 6), [(0, 2)]),
                                       ((7, 5), [(3, 3)]), ((7, 5), [(2, 1), (2, 4)])])
def test_contribution_area_degenerate_maps(shape, hot):
    saliency = np.zeros(shape)
    for pixel in hot:
        saliency[pixel] = 1.0
    area = contribution_area(saliency)
    assert area.shape == shape and np.all(np.isfinite(area))
    assert area.min() >= 0 and area.max() <= 1


def test_panels_follow_the_reference():
    result = make_result()
    out = panels(result, alpha=0.3)
    assert list(out) == ["input", "saliency", "blend", "kde", "output"]
    for image in out.values():
        assert image.dtype == np.uint8 and image.shape == (48, 40, 3)
    lr8 = np.round(result.image.transpose(1, 2, 0) * 255).astype(np.uint8)
    lr_up = np.asarray(Image.fromarray(lr8).resize((40, 48), Image.BICUBIC)).astype(np.float64)
    saliency = np.kron(seismic8(result.saliency), np.ones((4, 4, 1))).astype(np.uint8)
    np.testing.assert_array_equal(out["saliency"], saliency)
    np.testing.assert_array_equal(out["blend"], (saliency * 0.7 + lr_up * 0.3).astype(np.uint8))
    x, y, size = result.window
    red = np.array([255, 0, 0])
    for panel in ("input", "output"):
        for row, col in [(y, x), (y + size - 1, x + size - 1), (y, x + 5), (y + 7, x)]:
            np.testing.assert_array_equal(out[panel][row, col], red)
    np.testing.assert_array_equal(out["input"][0, 0], lr_up[0, 0].astype(np.uint8))
    sr8 = np.round(np.clip(result.sr_output, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out["output"][:y], sr8[:y])


def test_zero_map_panels():
    result = make_result(attribution=np.zeros((3, 12, 10), np.float32))
    out = panels(result)
    assert np.all(out["saliency"] == seismic8(np.zeros(1))[0])  # all white
    assert np.all(out["kde"] == out["blend"])  # no spread: the KDE panel is the map itself


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        return img.size


@pytest.mark.parametrize("kwargs", [{}, {"channels": 1},
                                    {"attribution": np.zeros((3, 12, 10), np.float32)},
                                    {"h": 1, "w": 1, "window": (0, 0, 4),
                                     "attribution": np.ones((3, 1, 1), np.float32)}])
def test_render_files(tmp_path, kwargs):
    result = make_result(**kwargs)
    assert png_size(render_lam(result, tmp_path / "lam.png")) == (1500, 360)
    assert png_size(render_path(result, tmp_path / "path.png")) == (1000, 380)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lam.png", "path.png"]  # no temp files


def test_render_path_with_nan_relative_gap(tmp_path):
    result = make_result()
    result.completeness_gap_relative = float("nan")
    assert png_size(render_path(result, tmp_path / "p.png")) == (1000, 380)
