"""The LAM gradient detector D, appended to the graph as ordinary ONNX nodes, for K windows at once.

D(T) = sum over channels and the window of sqrt(dy^2 + dx^2), dy/dx the forward differences of
the SR output T (LAM-SPEC.md). Only the window is differentiated, and the sqrt's derivative is the
zero-safe one (registered by node name): identical to the reference wherever it has no NaN.

The detector runs on the reverse pass's batch: K x N items, window-major (item k*N + n is path
image n seen through window k), so every window seeds its own gradient in one batched pass.
"""
from __future__ import annotations

from lam_trt.export.builder import FLOAT, INT64_MAX, GraphBuilder, Node

REDUCTIONS = ("sum", "mean")


def append_detector(b: GraphBuilder, sr: str, windows: str, path: str, reduce: str = "sum") -> tuple[str, str]:
    """Emit D for every (window, path image) item of ``sr`` [K*N, C, H, W] (the SR batch of ``path``
    repeated once per window of ``windows`` [K, 4] = (top, left, height, width)); return (D [K*N],
    name of the zero-safe Sqrt).

    The SR output is first cut to the box covering every window plus one row and column (the
    forward differences' neighbours), so the detector works on that box instead of the whole
    output; each item's window is a 0/1 mask on the box (all ones for one window: today's D)."""
    n, c, _, _ = b.shape(sr)
    unknown = (n, c, -1, -1)  # box-sized: only known when the graph runs

    def tensor(name: str, shape: tuple = unknown) -> str:
        b.shapes[name], b.dtypes[name] = shape, FLOAT
        return name

    corners = b.op("Slice", windows, b.ints([0]), b.ints([2]), b.ints([1]))
    far = b.op("Add", corners, b.op("Slice", windows, b.ints([2]), b.ints([4]), b.ints([1])))
    starts = b.op("ReduceMin", corners, b.ints([0]), keepdims=0)
    ends = b.op("Add", b.op("ReduceMax", far, b.ints([0]), keepdims=0), b.ints([1, 1]))
    box = tensor(b.op("Slice", sr, starts, ends, b.ints([2, 3])))
    end = INT64_MAX

    def crop(rows: tuple[int, int], cols: tuple[int, int]) -> str:
        return tensor(b.op("Slice", box, b.ints([rows[0], cols[0]]), b.ints([rows[1], cols[1]]), b.ints([2, 3])))

    here, below, right = crop((0, -1), (0, -1)), crop((1, end), (0, -1)), crop((0, -1), (1, end))
    dy, dx = tensor(b.op("Sub", here, below)), tensor(b.op("Sub", here, right))
    squares = tensor(b.op("Add", tensor(b.op("Mul", dy, dy)), tensor(b.op("Mul", dx, dx))))
    magnitude = tensor(b.op("Sqrt", squares))
    mask = window_masks(b, here, starts, per_item_windows(b, windows, path), c if reduce == "mean" else 0)
    d = b.op("ReduceSum", tensor(b.op("Mul", magnitude, mask)), b.ints([1, 2, 3]), keepdims=0)
    b.shapes[d], b.dtypes[d] = (n,), FLOAT
    return d, magnitude


def per_item_windows(b: GraphBuilder, windows: str, path: str) -> str:
    """[K*N, 4]: window k repeated once per path image, window-major."""
    k = b.op("Slice", b.op("Shape", windows), b.ints([0]), b.ints([1]))
    n = b.op("Slice", b.op("Shape", path), b.ints([0]), b.ints([1]))
    spread = b.op("Expand", b.op("Unsqueeze", windows, b.ints([1])), b.op("Concat", k, n, b.ints([4]), axis=0))
    return b.op("Reshape", spread, b.ints([-1, 4]))


def window_masks(b: GraphBuilder, here: str, starts: str, items: str, channels: int) -> str:
    """[K*N, 1, h, w] float: 1 where a pixel of the box ``here`` (its top-left at ``starts``) lies in
    that item's window, else 0; divided by the window's pixel count times ``channels`` if given
    (the mean detector)."""
    size = b.op("Shape", here)

    def inside(axis: int) -> str:  # [K*N, length of the box along axis]: in the window's range?
        first = b.op("Slice", starts, b.ints([axis - 2]), b.ints([axis - 1]))
        coords = b.op("Add", b.op("Range", scalar(b, 0), axis_size(b, size, axis), scalar(b, 1)), first)
        lo = b.op("Slice", items, b.ints([axis - 2]), b.ints([axis - 1]), b.ints([1]))
        hi = b.op("Add", lo, b.op("Slice", items, b.ints([axis]), b.ints([axis + 1]), b.ints([1])))
        within = b.op("And", b.op("GreaterOrEqual", coords, lo), b.op("Less", coords, hi))
        return b.op("Cast", within, to=FLOAT)

    rows = b.op("Unsqueeze", inside(2), b.ints([2]))   # [K*N, h, 1]
    cols = b.op("Unsqueeze", inside(3), b.ints([1]))   # [K*N, 1, w]
    mask = b.op("Unsqueeze", b.op("Mul", rows, cols), b.ints([1]))
    if channels:
        count = b.op("Mul", b.op("ReduceSum", mask, b.ints([1, 2, 3]), keepdims=1), b.const(float(channels)))
        mask = b.op("Div", mask, count)
    return mask


def scalar(b: GraphBuilder, value: int) -> str:
    return b.const(value, "int64")


def axis_size(b: GraphBuilder, shape: str, axis: int) -> str:
    return b.op("Squeeze", b.op("Slice", shape, b.ints([axis]), b.ints([axis + 1])), b.ints([0]))


def vjp_sqrt_zero_safe(b: GraphBuilder, node: Node, grads, needs):
    """d sqrt(s)/ds := 0 at s = 0 (LAM-SPEC: the detector's sqrt), 0.5/sqrt(s) elsewhere."""
    y = node.outputs[0]
    positive = b.op("Greater", y, b.const(0.0))
    safe_y = b.op("Where", positive, y, b.const(1.0))
    local = b.op("Where", positive, b.op("Div", b.const(0.5), safe_y), b.const(0.0))
    return [b.op("Mul", grads[0], local)]
