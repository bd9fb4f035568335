"""The LAM gradient detector D, appended to the graph as ordinary ONNX nodes, for K windows at once.

D(T) = sum over channels and the window of sqrt(dy^2 + dx^2), dy/dx the forward differences of
the SR output T (LAM-SPEC.md). Only the window is differentiated, and the sqrt's derivative is the
zero-safe one (registered by node name): identical to the reference wherever it has no NaN.

The detector runs on the reverse pass's batch: K x N items, window-major (item k*N + n is path
image n seen through window k), so every window seeds its own gradient in one batched pass. Each
item gathers its own window plus one row and column (the forward differences' neighbours) from
the SR output, so the detector's work, forward and backward, is window-sized whatever the spread
of the windows; a 0/1 mask drops what lies beyond a smaller window or the output's last row and
column (which have no neighbour), as the single-window detector does. Positions past the edge
wrap around (modulo the size), so an item's indices never repeat and the gathers' adjoint is a
plain scatter into zeros (no scatter-add, which TensorRT lacks); the mask zeroes what they read.
"""
from __future__ import annotations

from lam_trt.export.builder import FLOAT, INT64_MAX, GraphBuilder, Node

REDUCTIONS = ("sum", "mean")


def append_detector(b: GraphBuilder, sr: str, windows: str, path: str, reduce: str = "sum") -> tuple[str, dict]:
    """Emit D for every (window, path image) item of ``sr`` [K*N, C, H, W] (the SR batch of ``path``
    repeated once per window of ``windows`` [K, 4] = (top, left, height, width)); return (D [K*N],
    the rules of its nodes by name: the zero-safe Sqrt and the gathers' scatter)."""
    n, c, _, _ = b.shape(sr)
    unknown = (n, c, -1, -1)  # window-sized: only known when the graph runs

    def tensor(name: str, shape: tuple = unknown) -> str:
        b.shapes[name], b.dtypes[name] = shape, FLOAT
        return name

    items = per_item_windows(b, windows, path)
    strip, patch = gather_windows(b, sr, items, windows)
    patch = tensor(patch)
    end = INT64_MAX

    def crop(rows: tuple[int, int], cols: tuple[int, int]) -> str:
        return tensor(b.op("Slice", patch, b.ints([rows[0], cols[0]]), b.ints([rows[1], cols[1]]), b.ints([2, 3])))

    here, below, right = crop((0, -1), (0, -1)), crop((1, end), (0, -1)), crop((0, -1), (1, end))
    dy, dx = tensor(b.op("Sub", here, below)), tensor(b.op("Sub", here, right))
    squares = tensor(b.op("Add", tensor(b.op("Mul", dy, dy)), tensor(b.op("Mul", dx, dx))))
    magnitude = tensor(b.op("Sqrt", squares))
    mask = window_masks(b, sr, items, windows, c if reduce == "mean" else 0)
    d = b.op("ReduceSum", tensor(b.op("Mul", magnitude, mask)), b.ints([1, 2, 3]), keepdims=0)
    b.shapes[d], b.dtypes[d] = (n,), FLOAT
    return d, {magnitude: vjp_sqrt_zero_safe, strip: vjp_gather_distinct, patch: vjp_gather_distinct}


def per_item_windows(b: GraphBuilder, windows: str, path: str) -> str:
    """[K*N, 4]: window k repeated once per path image, window-major."""
    k = b.op("Slice", b.op("Shape", windows), b.ints([0]), b.ints([1]))
    n = b.op("Slice", b.op("Shape", path), b.ints([0]), b.ints([1]))
    spread = b.op("Expand", b.op("Unsqueeze", windows, b.ints([1])), b.op("Concat", k, n, b.ints([4]), axis=0))
    return b.op("Reshape", spread, b.ints([-1, 4]))


def column(b: GraphBuilder, items: str, k: int) -> str:
    """[K*N, 1]: one column of the per-item windows."""
    return b.op("Slice", items, b.ints([k]), b.ints([k + 1]), b.ints([1]))


def offsets(b: GraphBuilder, windows: str, k: int, extra: int) -> str:
    """[0, 1, ..., largest of the windows' column ``k`` + extra - 1]: positions inside a window."""
    largest = b.op("ReduceMax", b.op("Slice", windows, b.ints([k]), b.ints([k + 1]), b.ints([1])), keepdims=0)
    return b.op("Range", scalar(b, 0), b.op("Add", largest, scalar(b, extra)), scalar(b, 1))


def gather_windows(b: GraphBuilder, sr: str, items: str, windows: str) -> tuple[str, str]:
    """(rows of ``sr`` [K*N, C, h+1, W], windows [K*N, C, h+1, w+1]): each item's window plus one
    row and column (h, w the largest window's size; past the output's edge the indices wrap
    around, distinct, and what they read is masked later)."""
    _, c, height, width = b.shape(sr)
    rows = b.op("Mod", b.op("Add", column(b, items, 0), offsets(b, windows, 2, 1)), b.ints([height]))
    cols = b.op("Mod", b.op("Add", column(b, items, 1), offsets(b, windows, 3, 1)), b.ints([width]))
    count = b.op("Slice", b.op("Shape", items), b.ints([0]), b.ints([1]))
    size = lambda t: b.op("Slice", b.op("Shape", t), b.ints([1]), b.ints([2]))  # noqa: E731
    row_index = b.op("Expand", b.op("Unsqueeze", rows, b.ints([1, 3])),
                     b.op("Concat", count, b.ints([c]), size(rows), b.ints([width]), axis=0))
    strip = b.op("GatherElements", sr, row_index, axis=2)
    b.shapes[strip], b.dtypes[strip] = (b.shape(sr)[0], c, -1, width), FLOAT
    col_index = b.op("Expand", b.op("Unsqueeze", cols, b.ints([1, 2])),
                     b.op("Concat", count, b.ints([c]), size(rows), size(cols), axis=0))
    return strip, b.op("GatherElements", strip, col_index, axis=3)


def vjp_gather_distinct(b: GraphBuilder, node: Node, grads: list, needs: list) -> list:
    """Adjoint of a GatherElements whose indices never repeat along its axis: a plain scatter."""
    axis = int(node.attrs.get("axis", 0))
    return [b.op("ScatterElements", b.zeros_like(node.inputs[0]), node.inputs[1], grads[0], axis=axis), None]


def window_masks(b: GraphBuilder, sr: str, items: str, windows: str, channels: int) -> str:
    """[K*N, 1, h, w] float: 1 where a pixel of the gathered patch lies in that item's window and
    has both neighbours in the output, else 0; divided by the item's pixel count times ``channels``
    if given (the mean detector)."""
    _, _, height, width = b.shape(sr)

    def inside(k: int, extent: int) -> str:  # [K*N, h or w]: inside this item's window and the map?
        at = offsets(b, windows, k + 2, 0)
        size, first = column(b, items, k + 2), column(b, items, k)
        within = b.op("And", b.op("Less", at, size), b.op("Less", b.op("Add", first, at), b.ints([extent - 1])))
        return b.op("Cast", within, to=FLOAT)

    rows = b.op("Unsqueeze", inside(0, height), b.ints([2]))   # [K*N, h, 1]
    cols = b.op("Unsqueeze", inside(1, width), b.ints([1]))    # [K*N, 1, w]
    mask = b.op("Unsqueeze", b.op("Mul", rows, cols), b.ints([1]))
    if channels:
        count = b.op("Mul", b.op("ReduceSum", mask, b.ints([1, 2, 3]), keepdims=1), b.const(float(channels)))
        mask = b.op("Div", mask, count)
    return mask


def scalar(b: GraphBuilder, value: int) -> str:
    return b.const(value, "int64")


def vjp_sqrt_zero_safe(b: GraphBuilder, node: Node, grads, needs):
    """d sqrt(s)/ds := 0 at s = 0 (LAM-SPEC: the detector's sqrt), 0.5/sqrt(s) elsewhere."""
    y = node.outputs[0]
    positive = b.op("Greater", y, b.const(0.0))
    safe_y = b.op("Where", positive, y, b.const(1.0))
    local = b.op("Where", positive, b.op("Div", b.const(0.5), safe_y), b.const(0.0))
    return [b.op("Mul", grads[0], local)]
