"""lam_trt.render: the reference's panels, checked pixel by pixel, and the written figures."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image
from scipy import stats

from lam_trt.metrics import abs_normalised, completeness, diffusion_index, gini
from lam_trt.render import (DEFAULT_DPI, contribution_area, draw_window, informative_region, mass_pixels, panels,
                            render_lam, render_path, zoom_region)
from lam_trt.report import write_result
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
    width, height = png_size(render_lam(result, tmp_path / "lam.png"))
    assert width > 3 * height > 0
    assert png_size(render_path(result, tmp_path / "path.png")) == (10 * DEFAULT_DPI, 3.8 * DEFAULT_DPI)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lam.png", "path.png"]  # no temp files


def test_render_path_with_nan_relative_gap(tmp_path):
    result = make_result()
    result.completeness_gap_relative = float("nan")
    assert png_size(render_path(result, tmp_path / "p.png", dpi=100)) == (1000, 380)


def blob_result(lr: int, centre: tuple[int, int], spread: float, scale: int = 4) -> LAMResult:
    """A result whose map is a Gaussian blob of the given spread at ``centre`` (LR row, column)."""
    yy, xx = np.mgrid[0:lr, 0:lr]
    blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * spread ** 2))
    window = (centre[1] * scale - 8, centre[0] * scale - 8, 16)
    return make_result(h=lr, w=lr, scale=scale, attribution=np.repeat(blob[None], 3, 0).astype(np.float32),
                       window=window)


@pytest.mark.parametrize("lr", [64, 128, 256])
def test_zoom_region_holds_the_window_and_the_mass_and_is_small(lr):
    """At 128 and 256 LR a focused map fills the zoomed panels instead of being a speck."""
    result = blob_result(lr, (lr // 2 + 5, lr // 3), spread=2.0)
    top, left, bottom, right = zoom_region(result)
    x, y, size = result.window
    assert top <= y and left <= x and bottom >= y + size and right >= x + size
    used = mass_pixels(result.saliency, 0.99)
    rows, cols = np.nonzero(used)
    assert top <= rows.min() * 4 and bottom >= (rows.max() + 1) * 4
    assert left <= cols.min() * 4 and right >= (cols.max() + 1) * 4
    assert bottom - top == right - left <= 24 * 4  # square, and a small part of the image
    assert 0 <= top and 0 <= left and bottom <= lr * 4 and right <= lr * 4


def test_zoom_region_of_a_spread_map_is_the_whole_image_and_stays_inside_at_borders():
    assert zoom_region(blob_result(32, (16, 16), spread=40.0)) == (0, 0, 128, 128)
    corner = zoom_region(blob_result(64, (3, 3), spread=1.0))
    assert corner[:2] == (0, 0) and corner[2] == corner[3] >= 8 * 4
    maps = [blob_result(64, (10, 10), 1.0).saliency, blob_result(64, (40, 50), 1.0).saliency]
    top, left, bottom, right = informative_region(maps, (40, 40, 16), 4)
    assert top <= 10 * 4 and left <= 10 * 4 and bottom >= 41 * 4 and right >= 51 * 4  # both maps


@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_vector_and_raster_figures(tmp_path, fmt, magic):
    result = make_result()
    summary = write_result(result, tmp_path / "out", figure=fmt, dpi=80)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == sorted(["attribution.npy", "result.json", f"lam.{fmt}", f"path.{fmt}"])
    assert (tmp_path / "out" / f"lam.{fmt}").read_bytes().startswith(magic)
    assert sorted(Path(p).name for p in summary["files"].values()) == files


def test_dpi_scales_the_picture(tmp_path):
    result = make_result()
    small = png_size(render_lam(result, tmp_path / "a.png", dpi=50))
    large = png_size(render_lam(result, tmp_path / "b.png", dpi=100))
    assert abs(large[0] - 2 * small[0]) <= 2 and abs(large[1] - 2 * small[1]) <= 2


@pytest.mark.parametrize("method,label,path_plot", [("lam", "LAM", True), ("ig", "IG", True),
                                                    ("grad", "gradient", False),
                                                    ("grad-x-input", "gradient x input", False)])
def test_labels_follow_the_method_and_one_point_methods_have_no_path_plot(tmp_path, method, label, path_plot):
    result = make_result()
    result.method = method
    write_result(result, tmp_path / "out", figure="svg")
    svg = (tmp_path / "out" / "lam.svg").read_text()
    assert f"{label} on input" in svg and f"{label} (|map| / max)" in svg
    assert ("LAM" in svg) == (method == "lam")
    assert (tmp_path / "out" / "path.svg").exists() == path_plot
    assert ("completeness gap" in svg) == path_plot


def test_hr_image_is_drawn_when_the_result_has_one(tmp_path):
    result = make_result()
    result.hr_image = np.random.default_rng(3).random(result.sr_output.shape, dtype=np.float32)
    render_lam(result, tmp_path / "lam.svg")
    assert "HR image" in (tmp_path / "lam.svg").read_text()
    render_lam(make_result(), tmp_path / "plain.svg")
    assert "HR image" not in (tmp_path / "plain.svg").read_text()


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_outputs_of_other_channel_counts_are_drawn(tmp_path, channels):
    """A 2-channel output (DDColor's chroma pair) used to crash draw_window."""
    result = make_result()
    result.sr_output = np.random.default_rng(4).random((channels, 48, 40), dtype=np.float32)
    out = panels(result)
    assert out["output"].shape == (48, 40, 3)
    assert draw_window(out["output"], result.window).shape == (48, 40, 3)
    assert png_size(render_lam(result, tmp_path / "lam.png")) > (0, 0)


def test_unknown_figure_format_is_refused(tmp_path):
    from lam_trt.errors import InputError

    with pytest.raises(InputError, match="png, pdf, svg"):
        write_result(make_result(), tmp_path / "out", figure="jpeg")
    assert not (tmp_path / "out").exists()
