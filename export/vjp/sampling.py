"""GridSample (opset 16: bilinear/nearest/bicubic; opset 20: linear/nearest/cubic), adjoint in both
its inputs, written as PyTorch's grid_sampler_2d computes it so that the derivative is autograd's.

Each output pixel reads taps (1 nearest, 2 x 2 bilinear, 4 x 4 bicubic) at integer positions around
its source coordinate, with separable weights wx_i * wy_j. The image's adjoint adds g * weight into
the taps (one ScatterElements with reduction 'add'); the grid's adjoint sums g * tap value * the
weights' derivative (GatherElements), times the coordinate transform's derivative. Padding:
bilinear and nearest clip ('border') or reflect and clip ('reflection') the source coordinate, so
it enters the derivative; bicubic pads each tap instead. Nearest is piecewise constant in the grid:
the grid gets no gradient, as in PyTorch.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.vjp.registry import vjp

LINEAR, NEAREST, CUBIC = ("bilinear", "linear"), ("nearest",), ("bicubic", "cubic")
CUBIC_A = -0.75  # PyTorch's (and ONNX's) cubic convolution coefficient


class Tap(NamedTuple):
    """One integer position along an axis: coordinate, 0/1 validity, weight, d weight / d coordinate."""
    coord: str
    valid: str
    weight: Optional[str]
    slope: Optional[str]


def refuse_mode(node: Node, needs: list[bool]) -> Optional[str]:
    mode = node.attrs.get("mode", "bilinear")
    if mode not in LINEAR + NEAREST + CUBIC:
        return f"mode '{mode}' is not one of {', '.join(LINEAR + NEAREST + CUBIC)}"
    return None


def unnormalise(b: GraphBuilder, coord: str, size: int, align: bool) -> tuple[str, float]:
    scale = (size - 1) / 2 if align else size / 2
    pixel = b.op("Sub", b.op("Mul", b.op("Add", coord, b.const(1.0)), b.const(scale)), b.const(0.0 if align else 0.5))
    return pixel, scale


def pad_coordinate(b: GraphBuilder, pixel: str, size: int, padding: str, align: bool) -> tuple[str, Optional[str]]:
    """torch's compute_coordinates: clip ('border') or reflect and clip ('reflection'); and the
    derivative of the result by the input (None for 'zeros': 1)."""
    if padding == "zeros":
        return pixel, None
    derivative = None
    if padding == "reflection":
        low2, high2 = (0, 2 * (size - 1)) if align else (-1, 2 * size - 1)
        if low2 == high2:  # one pixel: every coordinate reflects to it
            return b.op("Mul", pixel, b.const(0.0)), b.const(0.0)
        pixel, derivative = reflect(b, pixel, low2 / 2, (high2 - low2) / 2)
    inside = b.op("Cast", b.op("And", b.op("Greater", pixel, b.const(0.0)),
                               b.op("Less", pixel, b.const(size - 1.0))), to=1)
    derivative = inside if derivative is None else b.op("Mul", derivative, inside)
    return b.op("Clip", pixel, b.const(0.0), b.const(size - 1.0)), derivative


def reflect(b: GraphBuilder, pixel: str, low: float, span: float) -> tuple[str, str]:
    """Reflect into [low, low + span] (torch's reflect_coordinates) and the derivative's sign."""
    shifted = b.op("Sub", pixel, b.const(low))
    sign = b.op("Where", b.op("Less", shifted, b.const(0.0)), b.const(-1.0), b.const(1.0))
    dist = b.op("Abs", shifted)
    flips = b.op("Floor", b.op("Div", dist, b.const(span)))
    extra = b.op("Sub", dist, b.op("Mul", flips, b.const(span)))
    odd = b.op("Sub", flips, b.op("Mul", b.const(2.0), b.op("Floor", b.op("Mul", flips, b.const(0.5)))))
    # even flips: low + extra; odd: low + span - extra
    value = b.op("Add", b.op("Add", extra, b.const(low)),
                 b.op("Mul", odd, b.op("Sub", b.const(span), b.op("Mul", extra, b.const(2.0)))))
    return value, b.op("Mul", sign, b.op("Sub", b.const(1.0), b.op("Mul", odd, b.const(2.0))))


def in_range(b: GraphBuilder, coord: str, size: int) -> str:
    return b.op("And", b.op("GreaterOrEqual", coord, b.const(0.0)), b.op("LessOrEqual", coord, b.const(size - 1.0)))


def axis_taps(b: GraphBuilder, coord: str, size: int, mode: str, padding: str,
              align: bool) -> tuple[list[Tap], Optional[str]]:
    """The taps along one axis and d(source coordinate)/d(grid coordinate) (None: no grid gradient)."""
    pixel, scale = unnormalise(b, coord, size, align)
    if mode in CUBIC:  # padding applies to each tap, not to the source coordinate
        base = b.op("Floor", pixel)
        t = b.op("Sub", pixel, base)
        taps = []
        for i, (weight, slope) in enumerate(cubic_weights(b, t)):
            tap, _ = pad_coordinate(b, b.op("Add", base, b.const(i - 1.0)), size, padding, align)
            taps.append(Tap(tap, in_range(b, tap, size), weight, slope))
        return taps, b.const(scale)
    pixel, derivative = pad_coordinate(b, pixel, size, padding, align)
    chain = b.const(scale) if derivative is None else b.op("Mul", derivative, b.const(scale))
    if mode in NEAREST:
        tap = b.op("Round", pixel)  # half to even, as std::nearbyint
        return [Tap(tap, in_range(b, tap, size), None, None)], None
    low = b.op("Floor", pixel)
    high = b.op("Add", low, b.const(1.0))
    return [Tap(low, in_range(b, low, size), b.op("Sub", high, pixel), b.const(-1.0)),
            Tap(high, in_range(b, high, size), b.op("Sub", pixel, low), b.const(1.0))], chain


def polynomial(b: GraphBuilder, x: str, coefficients: list[float]) -> str:
    """sum_k c_k x^(n - k) by Horner's rule (highest power first)."""
    value = b.const(coefficients[0])
    for c in coefficients[1:]:
        value = b.op("Add", b.op("Mul", value, x), b.const(c))
    return value


def cubic_weights(b: GraphBuilder, t: str) -> list[tuple[str, str]]:
    """Weights of taps -1, 0, 1, 2 at fraction t (torch's get_cubic_upsample_coefficients) and
    their derivatives by t. |x| <= 1: (a + 2) x^3 - (a + 3) x^2 + 1; 1 < |x| < 2: a x^3 - 5a x^2 + 8a x - 4a."""
    a = CUBIC_A
    near = lambda x: (polynomial(b, x, [a + 2, -(a + 3), 0.0, 1.0]), polynomial(b, x, [3 * (a + 2), -2 * (a + 3), 0.0]))
    far = lambda x: (polynomial(b, x, [a, -5 * a, 8 * a, -4 * a]), polynomial(b, x, [3 * a, -10 * a, 8 * a]))
    w0, s0 = far(b.op("Add", t, b.const(1.0)))
    w1, s1 = near(t)
    w2, s2 = near(b.op("Sub", b.const(1.0), t))
    w3, s3 = far(b.op("Sub", b.const(2.0), t))
    return [(w0, s0), (w1, s1), (w2, b.op("Neg", s2)), (w3, b.op("Neg", s3))]


@vjp("GridSample", refuses=refuse_mode)
def vjp_grid_sample(b, node, grads, needs):
    x, grid = node.inputs[0], node.inputs[1]
    if b.rank(x) != 4:
        raise NotImplementedError("GridSample over other than two spatial axes")
    _, c, h, w = b.shape(x)
    _, ho, wo, _ = b.shape(grid)
    mode = node.attrs.get("mode", "bilinear")
    padding, align = node.attrs.get("padding_mode", "zeros"), bool(node.attrs.get("align_corners", 0))
    x_taps, x_chain = axis_taps(b, b.op("Gather", grid, b.const(0, np.int64), axis=3), w, mode, padding, align)
    y_taps, y_chain = axis_taps(b, b.op("Gather", grid, b.const(1, np.int64), axis=3), h, mode, padding, align)
    pairs = [(tx, ty) for ty in y_taps for tx in x_taps]
    sampler = Sampler(b, c, h, w, ho * wo)
    valid = [b.op("Cast", b.op("And", tx.valid, ty.valid), to=1) for tx, ty in pairs]
    index = sampler.index([sampler.flat(tx.coord, ty.coord) for tx, ty in pairs])
    g = b.op("Reshape", grads[0], b.ints([0, c, ho * wo]))
    gx = ggrid = None
    if needs[0]:
        weights = [v if tx.weight is None else b.op("Mul", b.op("Mul", tx.weight, ty.weight), v)
                   for (tx, ty), v in zip(pairs, valid)]
        gx = sampler.scatter_add(x, index, [b.op("Mul", g, sampler.points(wt)) for wt in weights])
    if needs[1] and x_chain is not None:
        values = sampler.gather(x, index, valid)
        slopes_x = [b.op("Mul", tx.slope, ty.weight) for tx, ty in pairs]
        slopes_y = [b.op("Mul", tx.weight, ty.slope) for tx, ty in pairs]
        per_point = [sampler.per_point(g, values, slopes, ho, wo, chain)
                     for slopes, chain in ((slopes_x, x_chain), (slopes_y, y_chain))]
        ggrid = b.op("Concat", *per_point, axis=3)
    return [gx, ggrid]


class Sampler:
    """Reads and writes of an image [N, C, H, W] at P points per item, flattened to [N, C, H * W]."""

    def __init__(self, b: GraphBuilder, c: int, h: int, w: int, p: int):
        self.b, self.c, self.h, self.w, self.p = b, c, h, w, p

    def points(self, t: str) -> str:
        """[N, Ho, Wo] -> [N, 1, P]."""
        return self.b.op("Reshape", t, self.b.ints([0, 1, self.p]))

    def flat(self, x: str, y: str) -> str:
        """Flat int64 position of pixel (x, y), clipped into the image (invalid taps are masked)."""
        b = self.b
        row = b.op("Clip", y, b.const(0.0), b.const(self.h - 1.0))
        col = b.op("Clip", x, b.const(0.0), b.const(self.w - 1.0))
        return b.op("Cast", b.op("Add", b.op("Mul", row, b.const(float(self.w))), col), to=7)

    def index(self, flats: list[str]) -> str:
        """All taps' positions side by side, for every channel: [N, C, taps * P]."""
        joined = self.b.op("Concat", *[self.points(f) for f in flats], axis=2)
        return self.b.op("Expand", joined, self.b.ints([1, self.c, 1]))

    def image(self, x: str) -> str:
        return self.b.op("Reshape", x, self.b.ints([0, self.c, self.h * self.w]))

    def scatter_add(self, like: str, index: str, updates: list[str]) -> str:
        b = self.b
        zeros = self.image(b.zeros_like(like))
        added = b.op("ScatterElements", zeros, index, b.op("Concat", *updates, axis=2), axis=2, reduction="add")
        return b.reshape_like(added, like)

    def gather(self, x: str, index: str, valid: list[str]) -> list[str]:
        """Each tap's pixel values [N, C, P] (0 where the tap is outside the image)."""
        b = self.b
        taps = len(valid)
        parts = b.op("Split", b.op("GatherElements", self.image(x), index, axis=2), b.ints([self.p] * taps),
                     axis=2, outputs=taps)
        parts = parts if isinstance(parts, list) else [parts]
        return [b.op("Mul", v, self.points(ok)) for v, ok in zip(parts, valid)]

    def per_point(self, g: str, values: list[str], slopes: list[str], ho: int, wo: int, chain: str) -> str:
        """sum over taps and channels of g * value * slope, times the coordinate chain: [N, Ho, Wo, 1]."""
        b = self.b
        d = b.op("Sum", *[b.op("Mul", v, self.points(s)) for v, s in zip(values, slopes)])
        summed = b.op("Reshape", b.reduce_sum(b.op("Mul", g, d), [1], keepdims=False), b.ints([0, ho, wo, 1]))
        return b.op("Mul", summed, chain if b.has_value(chain) else b.op("Unsqueeze", chain, b.ints([3])))
