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
from lam_trt.export.vjp import vjp

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


def axis_taps(b: GraphBuilder, coord: str, size: int, mode: str, padding: str, align: bool) -> tuple[list[Tap], Optional[str]]:
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


def cubic_weights(b: GraphBuilder, t: str) -> list[tuple[str, str]]:
    """Weights of taps -1, 0, 1, 2 at fraction t (torch's get_cubic_upsample_coefficients) and
    their derivatives by t."""
    a = CUBIC_A

    def near(x):  # |x| <= 1: ((a + 2) x - (a + 3)) x^2 + 1, derivative 3 (a + 2) x^2 - 2 (a + 3) x
        x2 = b.op("Mul", x, x)
        value = b.op("Add", b.op("Mul", b.op("Sub", b.op("Mul", x, b.const(a + 2)), b.const(a + 3)), x2), b.const(1.0))
        return value, b.op("Sub", b.op("Mul", x2, b.const(3 * (a + 2))), b.op("Mul", x, b.const(2 * (a + 3))))

    def far(x):  # 1 < |x| < 2: ((a x - 5 a) x + 8 a) x - 4 a, derivative 3 a x^2 - 10 a x + 8 a
        value = b.op("Sub", b.op("Mul", b.op("Add", b.op("Mul", b.op("Sub", b.op("Mul", x, b.const(a)), b.const(5 * a)), x),
                                              b.const(8 * a)), x), b.const(4 * a))
        slope = b.op("Add", b.op("Mul", b.op("Sub", b.op("Mul", x, b.const(3 * a)), b.const(10 * a)), x), b.const(8 * a))
        return value, slope

    one_minus = b.op("Sub", b.const(1.0), t)
    w0, s0 = far(b.op("Add", t, b.const(1.0)))
    w1, s1 = near(t)
    w2, s2 = near(one_minus)
    w3, s3 = far(b.op("Sub", b.const(2.0), t))
    return [(w0, s0), (w1, s1), (w2, b.op("Neg", s2)), (w3, b.op("Neg", s3))]


@vjp("GridSample", refuses=refuse_mode)
def vjp_grid_sample(b, node, grads, needs):
    x, grid = node.inputs[0], node.inputs[1]
    if b.rank(x) != 4:
        raise NotImplementedError("GridSample over other than two spatial axes")
    _, c, h, w = b.shape(x)
    _, ho, wo, _ = b.shape(grid)
    p = ho * wo
    mode = node.attrs.get("mode", "bilinear")
    padding, align = node.attrs.get("padding_mode", "zeros"), bool(node.attrs.get("align_corners", 0))
    x_taps, x_chain = axis_taps(b, b.op("Gather", grid, b.const(0, np.int64), axis=3), w, mode, padding, align)
    y_taps, y_chain = axis_taps(b, b.op("Gather", grid, b.const(1, np.int64), axis=3), h, mode, padding, align)
    pairs = [(tx, ty) for ty in y_taps for tx in x_taps]
    points = lambda t: b.op("Reshape", t, b.ints([0, 1, p]))  # [N, Ho, Wo] -> [N, 1, P]
    valid = [b.op("Cast", b.op("And", tx.valid, ty.valid), to=1) for tx, ty in pairs]
    flat = [b.op("Cast", b.op("Add", b.op("Mul", b.op("Clip", ty.coord, b.const(0.0), b.const(h - 1.0)), b.const(float(w))),
                              b.op("Clip", tx.coord, b.const(0.0), b.const(w - 1.0))), to=7) for tx, ty in pairs]
    index = b.op("Expand", b.op("Concat", *[points(f) for f in flat], axis=2), b.ints([1, c, 1]))
    g = b.op("Reshape", grads[0], b.ints([0, c, p]))
    gx = ggrid = None
    if needs[0]:
        weights = [v if tx.weight is None else b.op("Mul", b.op("Mul", tx.weight, ty.weight), v)
                   for (tx, ty), v in zip(pairs, valid)]
        updates = b.op("Concat", *[b.op("Mul", g, points(wt)) for wt in weights], axis=2)
        zeros = b.op("Reshape", b.zeros_like(x), b.ints([0, c, h * w]))
        gx = b.reshape_like(b.op("ScatterElements", zeros, index, updates, axis=2, reduction="add"), x)
    if needs[1] and x_chain is not None:
        gathered = b.op("GatherElements", b.op("Reshape", x, b.ints([0, c, h * w])), index, axis=2)
        values = b.op("Split", gathered, b.ints([p] * len(pairs)), axis=2, outputs=len(pairs))
        values = [b.op("Mul", val, points(v)) for val, v in zip(values if isinstance(values, list) else [values], valid)]
        d_x = b.op("Sum", *[b.op("Mul", val, points(b.op("Mul", tx.slope, ty.weight))) for val, (tx, ty) in zip(values, pairs)])
        d_y = b.op("Sum", *[b.op("Mul", val, points(b.op("Mul", tx.weight, ty.slope))) for val, (tx, ty) in zip(values, pairs)])
        per_point = [b.op("Reshape", b.reduce_sum(b.op("Mul", g, d), [1], keepdims=False), b.ints([0, ho, wo, 1]))
                     for d in (d_x, d_y)]
        ggrid = b.op("Concat", *[b.op("Mul", d, last_axis(b, chain)) for d, chain in zip(per_point, (x_chain, y_chain))],
                     axis=3)
    return [gx, ggrid]


def last_axis(b: GraphBuilder, derivative: str) -> str:
    """A coordinate derivative [N, Ho, Wo] (or a scalar constant) as [N, Ho, Wo, 1]."""
    return derivative if b.has_value(derivative) else b.op("Unsqueeze", derivative, b.ints([3]))
