"""GridSample (opset 16 bilinear/nearest, opset 20 linear/nearest), adjoint in both its inputs.

Written as PyTorch's grid_sampler_2d computes it, so the derivative is autograd's: every output
pixel reads (up to) four input pixels at ``Floor`` of its source coordinate, weighted by the
bilinear weights. The image's adjoint adds ``g * weight`` into those four pixels (one
ScatterElements with reduction 'add'); the grid's adjoint is the weights' derivative times the four
pixel values (GatherElements), times the derivative of the coordinate transform (unnormalise, then
clip for 'border' or reflect-and-clip for 'reflection'). Nearest sampling is piecewise constant in
the grid: the grid gets no gradient, as in PyTorch.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.vjp import vjp

LINEAR, NEAREST = ("bilinear", "linear"), ("nearest",)


def refuse_mode(node: Node, needs: list[bool]) -> Optional[str]:
    mode = node.attrs.get("mode", "bilinear")
    if mode not in LINEAR + NEAREST:
        return f"mode '{mode}' (bilinear/linear and nearest have exact gradients here, not cubic)"
    return None


def source_index(b: GraphBuilder, coord: str, size: int, padding: str, align: bool) -> tuple[str, str]:
    """Pixel coordinate of a normalised grid coordinate, and its derivative (torch's
    grid_sampler_compute_source_index_set_grad)."""
    scale = (size - 1) / 2 if align else size / 2
    pixel = b.op("Sub", b.op("Mul", b.op("Add", coord, b.const(1.0)), b.const(scale)),
                 b.const(0.0 if align else 0.5))
    derivative = b.const(scale)
    if padding == "zeros":
        return pixel, derivative
    if padding == "reflection":
        low2, high2 = (0, 2 * (size - 1)) if align else (-1, 2 * size - 1)
        if low2 == high2:  # one pixel: every coordinate reflects to it
            return b.op("Mul", pixel, b.const(0.0)), b.const(0.0)
        pixel, sign = reflect(b, pixel, low2 / 2, (high2 - low2) / 2)
        derivative = b.op("Mul", derivative, sign)
    inside = b.op("And", b.op("Greater", pixel, b.const(0.0)), b.op("Less", pixel, b.const(size - 1.0)))
    derivative = b.op("Mul", derivative, b.op("Cast", inside, to=1))
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


def corner(b: GraphBuilder, x: str, y: str, h: int, w: int) -> tuple[str, str]:
    """Flat index (clipped into the image) and 0/1 validity of integer pixel (x, y)."""
    inside = b.op("And", b.op("And", b.op("GreaterOrEqual", x, b.const(0.0)), b.op("LessOrEqual", x, b.const(w - 1.0))),
                  b.op("And", b.op("GreaterOrEqual", y, b.const(0.0)), b.op("LessOrEqual", y, b.const(h - 1.0))))
    cx = b.op("Clip", x, b.const(0.0), b.const(w - 1.0))
    cy = b.op("Clip", y, b.const(0.0), b.const(h - 1.0))
    flat = b.op("Cast", b.op("Add", b.op("Mul", cy, b.const(float(w))), cx), to=7)
    return flat, b.op("Cast", inside, to=1)


@vjp("GridSample", refuses=refuse_mode)
def vjp_grid_sample(b, node, grads, needs):
    x, grid = node.inputs[0], node.inputs[1]
    if b.rank(x) != 4:
        raise NotImplementedError("GridSample over other than two spatial axes")
    _, c, h, w = b.shape(x)
    _, ho, wo, _ = b.shape(grid)
    p = ho * wo
    padding, align = node.attrs.get("padding_mode", "zeros"), bool(node.attrs.get("align_corners", 0))
    ix, dix = source_index(b, b.op("Gather", grid, b.const(0, np.int64), axis=3), w, padding, align)
    iy, diy = source_index(b, b.op("Gather", grid, b.const(1, np.int64), axis=3), h, padding, align)
    flat_g = b.op("Reshape", grads[0], b.ints([0, c, p]))
    to_points = lambda t: b.op("Reshape", t, b.ints([0, 1, p]))  # [N, Ho, Wo] -> [N, 1, P]

    if node.attrs.get("mode", "bilinear") in NEAREST:
        flat, valid = corner(b, b.op("Round", ix), b.op("Round", iy), h, w)
        parts = [(flat, valid)]
        corner_weights = [valid]
    else:
        x0, y0 = b.op("Floor", ix), b.op("Floor", iy)
        x1, y1 = b.op("Add", x0, b.const(1.0)), b.op("Add", y0, b.const(1.0))
        wx1, wy1 = b.op("Sub", ix, x0), b.op("Sub", iy, y0)
        wx0, wy0 = b.op("Sub", x1, ix), b.op("Sub", y1, iy)
        parts = [corner(b, cx, cy, h, w) for cx, cy in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
        corner_weights = [b.op("Mul", b.op("Mul", wx, wy), valid)
                          for (wx, wy), (_, valid) in zip(((wx0, wy0), (wx1, wy0), (wx0, wy1), (wx1, wy1)), parts)]
    index = b.op("Expand", b.op("Concat", *[to_points(f) for f, _ in parts], axis=2), b.ints([1, c, 1]))
    gx = ggrid = None
    if needs[0]:
        updates = b.op("Concat", *[b.op("Mul", flat_g, to_points(cw)) for cw in corner_weights], axis=2)
        zeros = b.op("Reshape", b.zeros_like(x), b.ints([0, c, h * w]))
        gx = b.reshape_like(b.op("ScatterElements", zeros, index, updates, axis=2, reduction="add"), x)
    if needs[1] and node.attrs.get("mode", "bilinear") in LINEAR:
        values = b.op("GatherElements", b.op("Reshape", x, b.ints([0, c, h * w])), index, axis=2)
        nw, ne, sw, se = [b.op("Mul", v, to_points(valid)) for v, (_, valid) in
                          zip(b.op("Split", values, b.ints([p] * 4), axis=2, outputs=4), parts)]
        d_x = b.op("Add", b.op("Mul", b.op("Sub", ne, nw), to_points(wy0)), b.op("Mul", b.op("Sub", se, sw), to_points(wy1)))
        d_y = b.op("Add", b.op("Mul", b.op("Sub", sw, nw), to_points(wx0)), b.op("Mul", b.op("Sub", se, ne), to_points(wx1)))
        per_point = [b.op("Reshape", b.reduce_sum(b.op("Mul", flat_g, d), [1], keepdims=False), b.ints([0, ho, wo, 1]))
                     for d in (d_x, d_y)]
        ggrid = b.op("Concat", *[b.op("Mul", d, expand_last(b, chain)) for d, chain in zip(per_point, (dix, diy))],
                     axis=3)
    return [gx, ggrid]


def expand_last(b: GraphBuilder, derivative: str) -> str:
    """A coordinate derivative [N, Ho, Wo] (or a scalar constant) as [N, Ho, Wo, 1]."""
    return derivative if b.has_value(derivative) else b.op("Unsqueeze", derivative, b.ints([3]))
