"""The LAM gradient detector D, appended to the forward graph as ordinary ONNX nodes.

D(T) = sum over channels and the window of sqrt(dy^2 + dx^2), dy/dx the forward differences of
the SR output T (LAM-SPEC.md). Only the window (an input of the graph) is differentiated, and the
sqrt's derivative is the zero-safe one (registered by node name): identical to the reference
wherever the reference has no NaN.
"""
from __future__ import annotations

from lam_trt.export.builder import FLOAT, INT64_MAX, GraphBuilder, Node

REDUCTIONS = {"sum": "ReduceSum", "mean": "ReduceMean"}


def append_detector(b: GraphBuilder, sr: str, window: str, reduce: str = "sum") -> tuple[str, str]:
    """Emit D for every item of ``sr`` [N, C, H, W]; return (D [N], name of the zero-safe Sqrt).

    The SR output is first cut to the window plus one row and column (the forward differences'
    neighbours), so every detector op, forward and backward, works on (size+1)^2 pixels instead
    of the whole output; the gradient is padded back to H x W once.
    """
    n, c, _, _ = b.shape(sr)
    unknown = (n, c, -1, -1)  # window-sized: only known when the graph runs

    def tensor(name: str) -> str:
        b.shapes[name], b.dtypes[name] = unknown, FLOAT
        return name

    starts = b.op("Slice", window, b.ints([0]), b.ints([2]))
    ends = b.op("Add", b.op("Add", starts, b.op("Slice", window, b.ints([2]), b.ints([4]))), b.ints([1, 1]))
    patch = tensor(b.op("Slice", sr, starts, ends, b.ints([2, 3])))
    end = INT64_MAX

    def crop(rows: tuple[int, int], cols: tuple[int, int]) -> str:
        return tensor(b.op("Slice", patch, b.ints([rows[0], cols[0]]), b.ints([rows[1], cols[1]]), b.ints([2, 3])))

    here, below, right = crop((0, -1), (0, -1)), crop((1, end), (0, -1)), crop((0, -1), (1, end))
    dy, dx = tensor(b.op("Sub", here, below)), tensor(b.op("Sub", here, right))
    squares = tensor(b.op("Add", tensor(b.op("Mul", dy, dy)), tensor(b.op("Mul", dx, dx))))
    magnitude = tensor(b.op("Sqrt", squares))
    d = b.op(REDUCTIONS[reduce], magnitude, b.ints([1, 2, 3]), keepdims=0)
    b.shapes[d], b.dtypes[d] = (n,), FLOAT
    return d, magnitude


def vjp_sqrt_zero_safe(b: GraphBuilder, node: Node, grads, needs):
    """d sqrt(s)/ds := 0 at s = 0 (LAM-SPEC: the detector's sqrt), 0.5/sqrt(s) elsewhere."""
    y = node.outputs[0]
    positive = b.op("Greater", y, b.const(0.0))
    safe_y = b.op("Where", positive, y, b.const(1.0))
    local = b.op("Where", positive, b.op("Div", b.const(0.5), safe_y), b.const(0.0))
    return [b.op("Mul", grads[0], local)]
