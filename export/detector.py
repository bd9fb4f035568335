"""The LAM gradient detector D, appended to the forward graph as ordinary ONNX nodes.

D(T) = sum over channels and the window of sqrt(dy^2 + dx^2), dy/dx the forward differences of
the SR output T (LAM-SPEC.md). The squares are formed on the whole (H-1) x (W-1) map, then cut to
the window (an input of the graph), and only then the sqrt is taken: the gradient comes from the
window alone and the sqrt's derivative is the zero-safe one (registered by node name).
"""
from __future__ import annotations

from lam_trt.export.builder import FLOAT, GraphBuilder

REDUCTIONS = {"sum": "ReduceSum", "mean": "ReduceMean"}


def append_detector(b: GraphBuilder, sr: str, window: str, reduce: str = "sum") -> tuple[str, str]:
    """Emit D for every item of ``sr`` [N, C, H, W]; return (D [N], name of the zero-safe Sqrt)."""
    n, c, h, w = b.shape(sr)

    def crop(rows: tuple[int, int], cols: tuple[int, int]) -> str:
        out = b.op("Slice", sr, b.ints([rows[0], cols[0]]), b.ints([rows[1], cols[1]]), b.ints([2, 3]))
        b.shapes[out], b.dtypes[out] = (n, c, rows[1] - rows[0], cols[1] - cols[0]), FLOAT
        return out

    here, below, right = crop((0, h - 1), (0, w - 1)), crop((1, h), (0, w - 1)), crop((0, h - 1), (1, w))
    dy, dx = b.op("Sub", here, below), b.op("Sub", here, right)
    dy2, dx2 = b.op("Mul", dy, dy), b.op("Mul", dx, dx)
    squares = b.op("Add", dy2, dx2)
    for name in (dy, dx, dy2, dx2, squares):
        b.shapes[name], b.dtypes[name] = (n, c, h - 1, w - 1), FLOAT
    starts = b.op("Slice", window, b.ints([0]), b.ints([2]))
    ends = b.op("Add", starts, b.op("Slice", window, b.ints([2]), b.ints([4])))
    in_window = b.op("Slice", squares, starts, ends, b.ints([2, 3]))
    magnitude = b.op("Sqrt", in_window)
    d = b.op(REDUCTIONS[reduce], magnitude, b.ints([1, 2, 3]), keepdims=0)
    b.shapes[in_window] = b.shapes[magnitude] = (n, c, -1, -1)  # window size is only known at run time
    b.shapes[d] = (n,)
    for name in (in_window, magnitude, d):
        b.dtypes[name] = FLOAT
    return d, magnitude
