"""The path generator against independent references: the spec's 2-D kernel, an explicitly padded
direct correlation, the reference's kernel-difference weights, Captum's IG parameters and IG itself,
and the path integral of a function whose gradient is known."""
from __future__ import annotations

import numpy as np
import pytest

from lam_trt.errors import InputError
from lam_trt.kernels import (
    RULES,
    blur_path,
    gaussian_blur,
    gaussian_kernel_1d,
    gaussian_kernel_1d_dsigma,
    gradient_path,
    gradient_x_input_path,
    linear_path,
    make_path,
)


def spec_kernel_2d(sigma: float, size: int) -> np.ndarray:
    """K_sigma exactly as LAM-SPEC.md writes it (2-D, normalised as a whole)."""
    ax = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    k = np.exp(-(xx**2 + yy**2) / (2 * (sigma + 1e-5) ** 2))
    return k / k.sum()


def direct_correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation per channel over an np.pad(mode="reflect") array (reflect-101), float64."""
    r = kernel.shape[0] // 2
    _, h, w = image.shape
    padded = np.pad(image.astype(np.float64), ((0, 0), (r, r), (r, r)), mode="reflect")
    out = np.zeros(image.shape, dtype=np.float64)
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            out += kernel[i, j] * padded[:, i : i + h, j : j + w]
    return out


def image(shape: tuple[int, ...] = (3, 11, 9), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def path_integral(path, grad) -> float:
    """sum_k grad(p_k) . w_k in float64."""
    return sum(float(np.sum(grad(p.astype(np.float64)) * w)) for p, w in zip(path.points, path.weights))


# ----------------------------------------------------------------------------- kernel and blur


@pytest.mark.parametrize("sigma", [0.0, 0.3, 1.2, 5.0])
@pytest.mark.parametrize("size", [1, 3, 9, 15])
def test_kernel_outer_product_is_spec_kernel(sigma, size):
    k = gaussian_kernel_1d(sigma, size)
    assert k.dtype == np.float64 and k.shape == (size,)
    np.testing.assert_allclose(np.outer(k, k), spec_kernel_2d(sigma, size), rtol=1e-12, atol=1e-300)
    assert k.sum() == pytest.approx(1.0, abs=1e-15)


def test_kernel_is_exact_delta_at_sigma_zero():
    expected = np.zeros(9)
    expected[4] = 1.0
    assert np.array_equal(gaussian_kernel_1d(0.0, 9), expected)


@pytest.mark.parametrize("sigma", [0.05, 0.4, 1.2, 3.0])
def test_kernel_sigma_derivative_matches_finite_difference(sigma):
    h = 1e-6
    numeric = (gaussian_kernel_1d(sigma + h, 9) - gaussian_kernel_1d(sigma - h, 9)) / (2 * h)
    np.testing.assert_allclose(gaussian_kernel_1d_dsigma(sigma, 9), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "shape, size",
    [((3, 11, 9), 9), ((1, 20, 17), 3), ((2, 4, 4), 9), ((3, 2, 3), 9), ((1, 1, 5), 9), ((1, 5, 1), 15)],
)
@pytest.mark.parametrize("sigma", [0.0, 0.8, 2.5])
def test_blur_matches_direct_reflect101_correlation(shape, size, sigma):
    # The small shapes need more than one reflection (or none possible): scipy's "mirror" and
    # numpy's "reflect" must agree there too.
    img = image(shape)
    out = gaussian_blur(img, sigma, size)
    assert out.dtype == np.float32 and out.shape == shape
    np.testing.assert_allclose(out, direct_correlate(img, spec_kernel_2d(sigma, size)), rtol=0, atol=1e-6)


def test_blur_border_is_reflect101_not_symmetric():
    img = np.zeros((1, 1, 6), dtype=np.float32)
    img[0, 0, 1] = 1.0  # reflect-101 mirrors column 1 to column -1; "symmetric" would mirror column 0
    k = gaussian_kernel_1d(1.0, 3)
    out = gaussian_blur(img, 1.0, 3)
    assert out[0, 0, 0] == pytest.approx(2 * k[0], rel=1e-6)


# ----------------------------------------------------------------------------- the LAM path


def test_blur_path_right_rule_points_and_weights():
    img, sigma, m, size = image(), 1.2, 10, 9
    path = blur_path(img, sigma=sigma, steps=m, kernel_size=size)
    assert path.points.shape == path.weights.shape == (m, *img.shape)
    assert path.points.dtype == path.weights.dtype == np.float32
    assert np.array_equal(path.points[-1], img)  # gamma_m == I exactly
    np.testing.assert_allclose(path.alphas, np.arange(1, m + 1) / m)
    np.testing.assert_allclose(path.baseline, direct_correlate(img, spec_kernel_2d(sigma, size)), atol=1e-6)
    kernels = [spec_kernel_2d(sigma * (1 - k / m), size) for k in range(m + 1)]
    for k in range(1, m + 1):
        np.testing.assert_allclose(path.points[k - 1], direct_correlate(img, kernels[k]), atol=1e-6)
        # The reference blurs with the kernel difference; by linearity that is gamma_k - gamma_{k-1}.
        np.testing.assert_allclose(path.weights[k - 1], direct_correlate(img, kernels[k] - kernels[k - 1]),
                                   atol=1e-7)
    assert path.params == {"sigma": sigma, "steps": m, "kernel_size": size}
    assert (path.method, path.rule) == ("lam", "right")


@pytest.mark.parametrize("rule", ["right", "trapezoid", "gauss-legendre"])
def test_weights_telescope_to_image_minus_baseline(rule):
    img = image()
    path = blur_path(img, sigma=2.0, steps=64, kernel_size=9, rule=rule)
    total = path.weights.astype(np.float64).sum(axis=0)
    atol = 1e-5 if rule != "gauss-legendre" else 1e-4  # G-L integrates gamma' only approximately
    np.testing.assert_allclose(total, img.astype(np.float64) - path.baseline, atol=atol)


def test_trapezoid_rule_averages_neighbouring_differences():
    img, m = image(), 7
    right = blur_path(img, sigma=1.2, steps=m, kernel_size=9)
    trap = blur_path(img, sigma=1.2, steps=m, kernel_size=9, rule="trapezoid")
    assert len(trap) == m + 1
    assert np.array_equal(trap.points[0], trap.baseline) and np.array_equal(trap.points[1:], right.points)
    delta = np.concatenate([[np.zeros_like(img)], right.weights, [np.zeros_like(img)]]).astype(np.float64)
    np.testing.assert_allclose(trap.weights, (delta[:-1] + delta[1:]) / 2, atol=1e-7)
    np.testing.assert_allclose(trap.alphas, np.arange(m + 1) / m)


def test_blur_path_at_sigma_zero_is_constant():
    img = image()
    path = blur_path(img, sigma=0.0, steps=5)
    assert np.array_equal(path.baseline, img) and np.array_equal(path.points, np.stack([img] * 5))
    assert not path.weights.any()


@pytest.mark.parametrize("sigma, kernel_size, said", [(0.0, 9, "--sigma 0"), (1.2, 1, "--kernel-size 1")])
def test_a_blur_that_changes_nothing_is_refused(sigma: float, kernel_size: int, said: str):
    """The baseline would be the image: an all-zero map whose DI would read 100."""
    with pytest.raises(InputError, match=f"with {said} the blurred baseline is the image itself"):
        make_path("lam", image(), steps=5, sigma=sigma, kernel_size=kernel_size)
    make_path("ig", image(), steps=5, sigma=sigma, kernel_size=kernel_size)  # no blur there: fine


# ----------------------------------------------------------------------------- quadrature rules


def sin_f(x: np.ndarray) -> float:
    return float(np.sum(np.sin(3 * x.astype(np.float64))))


def sin_grad(x: np.ndarray) -> np.ndarray:
    return 3 * np.cos(3 * x)


@pytest.mark.parametrize("builder", [blur_path, linear_path])
def test_rules_converge_to_the_same_integral(builder):
    img = image((2, 8, 7))

    def rel_error(rule: str, m: int) -> float:
        path = builder(img, steps=m, rule=rule)
        exact = sin_f(path.image) - sin_f(path.baseline)
        return abs(path_integral(path, sin_grad) - exact) / abs(exact)

    right = [rel_error("right", m) for m in (8, 32)]
    trap = [rel_error("trapezoid", m) for m in (8, 32)]
    gauss = rel_error("gauss-legendre", 32)
    assert 2.5 < right[0] / right[1] < 6  # first order: 4x steps, about 4x less error
    assert 10 < trap[0] / trap[1] < 25  # second order: about 16x less
    assert trap[1] < right[1] / 20
    assert gauss < 1e-5 and gauss < trap[1] / 100


def test_gauss_legendre_blur_weights_are_path_derivatives():
    img, sigma = image(), 1.2
    path = blur_path(img, sigma=sigma, steps=5, rule="gauss-legendre")
    omegas = np.polynomial.legendre.leggauss(5)[1] / 2
    h = 1e-4
    for alpha, point, weight, omega in zip(path.alphas, path.points, path.weights, omegas):
        np.testing.assert_allclose(point, gaussian_blur(img, sigma * (1 - alpha), 9), atol=1e-6)
        up = gaussian_blur(img, sigma * (1 - alpha - h), 9).astype(np.float64)
        down = gaussian_blur(img, sigma * (1 - alpha + h), 9).astype(np.float64)
        np.testing.assert_allclose(weight, omega * (up - down) / (2 * h), atol=2e-3 * omega)


# ----------------------------------------------------------------------------- other methods


@pytest.mark.parametrize(
    "rule, captum_method", [("right", "riemann_right"), ("gauss-legendre", "gausslegendre")]
)
def test_linear_path_matches_captum_parameters(rule, captum_method):
    from captum.attr._utils.approximation_methods import approximation_parameters

    x, b, m = image(seed=1), image(seed=2), 12
    step_sizes, alphas = approximation_parameters(captum_method)
    path = linear_path(x, baseline=b, steps=m, rule=rule)
    a = np.asarray(alphas(m))[:, None, None, None]
    np.testing.assert_allclose(path.alphas, alphas(m), atol=1e-7)
    np.testing.assert_allclose(path.points, b + a * (x - b), atol=1e-6)
    steps = np.asarray(step_sizes(m))[:, None, None, None]
    np.testing.assert_allclose(path.weights, steps * (x - b), atol=1e-7)


def test_integrated_gradients_equal_captum():
    torch = pytest.importorskip("torch")
    from captum.attr import IntegratedGradients

    x, m = image(seed=3), 20
    ig = IntegratedGradients(lambda t: torch.sin(3 * t).sum(dim=(1, 2, 3)))
    expected = ig.attribute(torch.from_numpy(x)[None], n_steps=m, method="riemann_right")[0].double().numpy()
    path = linear_path(x, steps=m)
    ours = sum(sin_grad(p.astype(np.float64)) * w for p, w in zip(path.points, path.weights))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    assert not path.baseline.any() and path.params["baseline"] == "black"


def test_linear_trapezoid_halves_the_end_weights():
    x, m = image(), 4
    path = linear_path(x, steps=m, rule="trapezoid")
    assert len(path) == m + 1 and np.array_equal(path.points[0], np.zeros_like(x))
    assert np.array_equal(path.points[-1], x)
    np.testing.assert_allclose(path.weights[[0, -1]], np.stack([x, x]) / (2 * m), rtol=1e-7)
    np.testing.assert_allclose(path.weights[1:-1], np.stack([x] * 3) / m, rtol=1e-7)


def test_one_point_methods():
    x = image()
    grad, gxi = gradient_path(x), gradient_x_input_path(x)
    for path in (grad, gxi):
        assert len(path) == 1 and np.array_equal(path.points[0], x) and path.alphas.tolist() == [1.0]
        np.testing.assert_array_equal(path.weights[0], x - path.baseline)
    assert np.array_equal(grad.weights[0], np.ones_like(x)) and np.array_equal(gxi.weights[0], x)


def test_make_path_dispatches_and_records_parameters():
    x = image()
    lam = make_path("lam", x, steps=6, sigma=0.9, kernel_size=5, rule="trapezoid")
    direct = blur_path(x, 0.9, 6, 5, "trapezoid")
    assert np.array_equal(lam.points, direct.points) and np.array_equal(lam.weights, direct.weights)
    assert lam.params == {"sigma": 0.9, "steps": 6, "kernel_size": 5}
    ig = make_path("ig", x, steps=3, sigma=1.2, kernel_size=9, baseline=x * 0.5)
    assert ig.params["baseline"] == "given"
    assert make_path("grad", x, steps=3, sigma=1.2, kernel_size=9).method == "grad"
    assert make_path("grad-x-input", x, steps=3, sigma=1.2, kernel_size=9).method == "grad-x-input"


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("method", ["lam", "ig"])
def test_chunks_cover_the_path_exactly(method: str, rule: str):
    """Slices of the points and weights (how the runner reads a path, chunk by chunk) are the
    whole path's, and cover it exactly."""
    path = make_path(method, image(), steps=10, rule=rule)
    whole_points, whole_weights = np.asarray(path.points), np.asarray(path.weights)
    seen = []
    for start in range(0, len(path), 4):
        points, weights = path.points[start:start + 4], path.weights[start:start + 4]
        assert np.array_equal(points, whole_points[start : start + len(points)])
        assert np.array_equal(weights, whole_weights[start : start + len(points)])
        seen.append((start, len(points)))
    assert seen == [(0, 4), (4, 4), (8, 3 if rule == "trapezoid" else 2)]
    rows, cols = slice(1, 5), slice(2, 7)
    crop = path.points[:, :, rows, cols]
    assert crop.shape == (len(path), 3, 4, 5) and np.array_equal(crop[3:6], whole_points[3:6, :, rows, cols])


def test_a_long_path_is_made_chunk_by_chunk():
    """100000 steps on 3x256x256 would be 78 GB of points up front; one chunk is 2.4 MB."""
    img = np.random.default_rng(1).random((3, 256, 256), dtype=np.float32)
    for path in (blur_path(img, steps=100_000), linear_path(img, steps=100_000)):
        assert len(path) == path.points.shape[0] == 100_000
        last = path.points[99_999:100_000]
        assert last.shape == (1, 3, 256, 256) and np.array_equal(last[0], img)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "smoothgrad"}, "unknown attribution method 'smoothgrad'"),
        ({"rule": "simpson"}, "unknown quadrature rule 'simpson'"),
        ({"steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"steps": 2.5}, "steps must be an integer >= 1, got 2.5"),
        ({"sigma": -0.1}, "sigma must be a finite number >= 0, got -0.1"),
        ({"sigma": float("nan")}, "sigma must be a finite number >= 0"),
        ({"kernel_size": 8}, "kernel size must be odd and positive, got 8"),
        ({"kernel_size": -3}, "kernel size must be odd and positive, got -3"),
        ({"baseline": np.zeros((3, 11, 9), np.float32)}, "baseline image applies only to method 'ig'"),
        ({"method": "ig", "baseline": np.zeros((3, 4, 4), np.float32)}, "baseline shape"),
        ({"image": np.zeros((11, 9), np.float32)}, r"\[C, h, w\] array, got shape \(11, 9\)"),
        ({"image": np.zeros((3, 11, 9), np.uint8)}, "float array with values in \\[0, 1\\], got dtype uint8"),
        ({"image": np.full((3, 11, 9), np.nan, np.float32)}, "NaN or infinite"),
    ],
)
def test_bad_input_raises_one_line_input_error(kwargs, message):
    args = {"method": "lam", "image": image(), "steps": 4, "sigma": 1.2, "kernel_size": 9, **kwargs}
    with pytest.raises(InputError, match=message) as info:
        make_path(args.pop("method"), args.pop("image"), **args)
    assert "\n" not in str(info.value)


def test_bad_kernel_arguments():  # a bad batch size: tests/test_cli_attribute.py
    with pytest.raises(InputError, match="kernel size must be odd and positive, got 0"):
        gaussian_kernel_1d(1.0, 0)
    with pytest.raises(InputError, match="sigma must be a finite number >= 0"):
        gaussian_blur(image(), -1.0, 3)


@pytest.mark.parametrize("method, rule, on_device", [("lam", "right", True), ("lam", "trapezoid", True),
                                                     ("lam", "gauss-legendre", False), ("ig", "right", False)])
def test_make_path_makes_lam_on_the_device_given_a_stream(monkeypatch, method, rule, on_device):
    """With a stream, the CUDA kernel makes LAM's path under the rules it writes; NumPy everything else."""
    import lam_trt.kernels.make as make

    calls = []
    monkeypatch.setattr(make, "blur_path_device", lambda *args: calls.append(args) or "device path")
    path = make_path(method, image(), steps=4, rule=rule, stream="a stream")
    assert (path == "device path") == on_device and len(calls) == int(on_device)
    assert make_path(method, image(), steps=4, rule=rule).method == method  # no stream: NumPy
