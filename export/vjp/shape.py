"""Data movement: reshapes, transposes, broadcasts, concatenation, slicing, gathering, padding."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import onnx

from lam_trt.export.accumulate import Placed
from lam_trt.export.builder import INT64_MAX, SHAPE_READERS, GraphBuilder, Node
from lam_trt.export.crops import Box, CropStep, pointwise
from lam_trt.export.fields import Field, FieldContext, grow, merge, no_field
from lam_trt.export.vjp.registry import crop_rule, field_rule, vjp


def slice_axis(b: GraphBuilder, x: str, axis: int, start: int, end: int, step: int = 1) -> str:
    return b.op("Slice", x, b.ints([start]), b.ints([end]), b.ints([axis]), b.ints([step]))


def reverse_axis(b: GraphBuilder, x: str, axis: int) -> str:
    return slice_axis(b, x, axis, -1, -INT64_MAX, -1)


@vjp("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def vjp_reshape(b, node, grads, needs):
    return [b.reshape_like(grads[0], node.inputs[0])] + [None] * (len(node.inputs) - 1)


@vjp("Transpose")
def vjp_transpose(b, node, grads, needs):
    perm = node.attrs.get("perm", list(reversed(range(b.rank(node.inputs[0])))))
    return [b.op("Transpose", grads[0], perm=[int(i) for i in np.argsort(perm)])]


@vjp("Expand")
def vjp_expand(b, node, grads, needs):
    return [b.unbroadcast(grads[0], node.outputs[0], node.inputs[0]), None]


@vjp("Tile")
def vjp_tile(b, node, grads, needs):
    """Split every axis into (repeat, size) and sum the repeats."""
    x = node.inputs[0]
    repeats = [int(r) for r in b.value(node.inputs[1])]
    dims: list[int] = []
    for i, (r, s) in enumerate(zip(repeats, b.shape(x))):
        dims += [r, -1 if i == b.batch_axis(x) else s]
    split = b.op("Reshape", grads[0], b.ints(dims))
    return [b.reduce_sum(split, list(range(0, 2 * len(repeats), 2)), keepdims=False), None]


@vjp("Concat")
def vjp_concat(b, node, grads, needs):
    axis = int(node.attrs["axis"]) % b.rank(node.outputs[0])
    sizes = [b.shape(x)[axis] for x in node.inputs]
    parts = b.op("Split", grads[0], b.ints(sizes), axis=axis, outputs=len(sizes))
    parts = parts if isinstance(parts, list) else [parts]
    return [p if need else None for p, need in zip(parts, needs)]


@crop_rule("Concat")
def concat_crop(b: GraphBuilder, node: Node, out: Box) -> CropStep | None:
    """Joining channels (axis 1 of [N, C, H, W]) reads every input at the output's position."""
    if b.rank(node.outputs[0]) != 4 or int(node.attrs.get("axis", 0)) % 4 != 1:
        return None
    return pointwise(b, node, out)


@vjp("Split")
def vjp_split(b, node, grads, needs):
    axis = int(node.attrs.get("axis", 0))
    parts = [g if g is not None else b.zeros_like(y) for g, y in zip(grads, node.outputs)]
    return [b.op("Concat", *parts, axis=axis)] + [None] * (len(node.inputs) - 1)


# ---- Slice -----------------------------------------------------------------------------------
def static_slice_params(b: GraphBuilder, node: Node) -> list[tuple[int, int, int, int]]:
    """(axis, first index, count, step) per sliced axis, from folded starts/ends/axes/steps."""
    x = node.inputs[0]
    rank = b.rank(x)
    starts, ends = b.value(node.inputs[1]), b.value(node.inputs[2])
    axes = b.value(node.input(3)) if node.input(3) else np.arange(len(starts))
    steps = b.value(node.input(4)) if node.input(4) else np.ones(len(starts), np.int64)
    out = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = int(axis) % rank
        dim = b.shape(x)[axis]
        idx = range(dim)[slice(int(max(min(start, INT64_MAX // 2), -INT64_MAX // 2)),
                               int(max(min(end, INT64_MAX // 2), -INT64_MAX // 2)), int(step))]
        if len(idx) == dim and step == 1:
            continue
        if axis == b.batch_axis(x):
            raise NotImplementedError("Slice along the batch axis")
        out.append((axis, idx.start if len(idx) else 0, len(idx), int(step)))
    return out


def place_strided(b: GraphBuilder, g: str, rank: int, axis: int, dim: int, first: int, count: int,
                  step: int, static_shape: list[int]) -> str:
    """Adjoint of taking ``count`` elements from ``first`` with stride ``step`` along ``axis``."""
    if step < 0:  # taken in decreasing order: reverse, then it is an increasing stride
        g, first, step = reverse_axis(b, g, axis), first + (count - 1) * step, -step
    if step > 1:  # interleave step-1 zeros after every element
        spread = b.op("Unsqueeze", g, b.ints([axis + 1]))
        spread = b.pad_axis(spread, rank + 1, axis + 1, 0, step - 1)
        g = b.op("Reshape", spread, b.ints([0] * axis + [count * step] + static_shape[axis + 1:]))
        length = min(count * step, dim - first)
        if length < count * step:
            g = slice_axis(b, g, axis, 0, length)
        count = length
    return b.pad_axis(g, rank, axis, first, dim - first - count)


@vjp("Slice")
def vjp_slice(b, node, grads, needs):
    x, g = node.inputs[0], grads[0]
    static = b.has_value(node.inputs[1]) and b.has_value(node.inputs[2]) and min(b.shape(x)) >= 0
    if not static:
        return [runtime_slice_grad(b, node, g)] + [None] * (len(node.inputs) - 1)
    rank = b.rank(x)
    shape = list(b.shape(node.outputs[0]))
    params = static_slice_params(b, node)
    if len(params) == 1 and params[0][3] == 1:  # one contiguous block: let the gradient sum join blocks
        axis, first, count, _ = params[0]
        return [Placed(g, axis, first, b.shape(x)[axis] - first - count)] + [None] * (len(node.inputs) - 1)
    for axis, first, count, step in params:
        g = place_strided(b, g, rank, axis, b.shape(x)[axis], first, count, step, b.batch_free(shape, x))
        shape[axis] = b.shape(x)[axis]
    return [g] + [None] * (len(node.inputs) - 1)


def runtime_slice_grad(b: GraphBuilder, node: Node, g: str) -> str:
    """Step-1 slice whose bounds or input size are only known at run time (the LAM window):
    pad the gradient back with pads computed in the graph from the runtime shape."""
    x = node.inputs[0]
    rank = b.rank(x)
    axes = [int(a) % rank for a in b.value(node.input(3))] if node.input(3) else list(range(rank))
    if node.input(4) and np.any(b.value(node.input(4)) != 1):
        raise NotImplementedError("Slice with run-time bounds and a step other than 1")
    dims = b.op("Gather", b.dyn_shape(x), b.ints(axes))
    zero = b.ints([0] * len(axes))

    def clamp(bound: str) -> str:  # numpy slicing: negative counts from the end, then clip to [0, dim]
        bound = b.op("Cast", bound, to=7)
        wrapped = b.op("Where", b.op("Less", bound, zero), b.op("Add", bound, dims), bound)
        return b.op("Min", b.op("Max", wrapped, zero), dims)

    starts, ends = clamp(node.inputs[1]), clamp(node.inputs[2])
    ends = b.op("Max", ends, starts)
    begin_pad, end_pad = [b.ints([0])] * rank, [b.ints([0])] * rank
    for i, axis in enumerate(axes):
        begin_pad[axis] = slice_axis(b, starts, 0, i, i + 1)
        end_pad[axis] = slice_axis(b, b.op("Sub", dims, ends), 0, i, i + 1)
    pads = b.op("Concat", *begin_pad, *end_pad, axis=0)
    return b.op("Pad", g, pads, mode="constant")


# ---- Gather ------------------------------------------------------------------------------------
def one_hot(indices: np.ndarray, depth: int) -> np.ndarray:
    m = np.zeros((indices.size, depth), np.float32)
    m[np.arange(indices.size), indices.reshape(-1) % depth] = 1.0
    return m


@vjp("Gather")
def vjp_gather(b, node, grads, needs):
    x, g = node.inputs[0], grads[0]
    rank = b.rank(x)
    axis = int(node.attrs.get("axis", 0)) % rank
    dim = b.shape(x)[axis]
    idx = np.asarray(b.value(node.inputs[1]))
    if idx.ndim == 0:  # one slice: put it back at its index
        i = int(idx) % dim
        return [Placed(b.op("Unsqueeze", g, b.ints([axis])), axis, i, dim - i - 1), None]
    if idx.ndim > 1:  # merge the index dims into one
        static = b.batch_free(b.shape(node.outputs[0]), node.outputs[0])
        g = b.op("Reshape", g, b.ints([0] * axis + [idx.size] + static[axis + idx.ndim:]))
    perm = [i for i in range(rank) if i != axis] + [axis]
    moved = b.op("Transpose", g, perm=perm)
    scattered = b.op("MatMul", moved, b.const(one_hot(idx, dim)))
    return [b.op("Transpose", scattered, perm=[int(i) for i in np.argsort(perm)]), None]


@vjp("GatherND")
def vjp_gather_nd(b, node, grads, needs):
    """batch_dims = 0. Constant indices: a one-hot matrix over the indexed leading dims; indices
    computed from the image: the gradient scattered back with ScatterND's add (repeats sum up)."""
    if int(node.attrs.get("batch_dims", 0)) != 0:
        raise NotImplementedError("GatherND with batch_dims > 0")
    x = node.inputs[0]
    if not b.has_value(node.inputs[1]):
        return [scatter_add_nd(b, x, node.inputs[1], grads[0]), None]
    idx = np.asarray(b.value(node.inputs[1]))
    k = idx.shape[-1]
    lead = b.shape(x)[:k]
    flat = np.ravel_multi_index(tuple(np.mod(idx.reshape(-1, k), lead).T), lead)
    g = b.op("Reshape", grads[0], b.ints([flat.size, -1]))
    placed = b.op("MatMul", b.const(one_hot(flat, int(np.prod(lead))).T.copy()), g)
    return [b.reshape_like(placed, x), None]


def scatter_add_nd(b, x: str, idx: str, g: str) -> str:
    """zeros_like(x) with ``g`` added at GatherND's ``idx`` (negative indices counted from the end)."""
    k = b.op("Shape", idx, start=-1)
    dims = b.op("Slice", b.dyn_shape(x), b.ints([0]), k)
    wrapped = b.op("Add", idx, b.op("Mul", b.op("Cast", b.op("Less", idx, b.ints([0])), to=onnx.TensorProto.INT64),
                                    dims))
    zeros = b.op("ConstantOfShape", b.dyn_shape(x), value=onnx.helper.make_tensor("value", onnx.TensorProto.FLOAT,
                                                                                 [1], [0.0]))
    return b.op("ScatterND", zeros, wrapped, g, reduction="add")


# ---- Pad -----------------------------------------------------------------------------------------
@vjp("Pad")
def vjp_pad(b, node, grads, needs):
    x, g = node.inputs[0], grads[0]
    rank = b.rank(x)
    mode = node.attrs.get("mode", "constant")
    raw = [int(p) for p in b.value(node.inputs[1])]
    axes = [int(a) % rank for a in b.value(node.input(3))] if node.input(3) else list(range(rank))
    n = len(axes)
    for i, axis in enumerate(axes):
        begin, end = raw[i], raw[n + i]
        if begin or end:
            g = unpad_axis(b, g, rank, axis, b.shape(x)[axis], begin, end, mode)
    return [g] + [None] * (len(node.inputs) - 1)


def unpad_axis(b: GraphBuilder, g: str, rank: int, axis: int, dim: int, begin: int, end: int,
               mode: str) -> str:
    """Adjoint of padding one axis: keep the interior and fold the border rows back onto it."""
    if begin < 0 or end < 0:  # negative pads crop: their adjoint pads with zeros
        if mode != "constant":
            raise NotImplementedError(f"negative pads in {mode} mode")
        g = b.pad_axis(g, rank, axis, max(-begin, 0), max(-end, 0))
        begin, end = max(begin, 0), max(end, 0)
    interior = slice_axis(b, g, axis, begin, begin + dim)
    if mode == "constant":
        return interior
    folds = [interior]
    if begin:
        head = slice_axis(b, g, axis, 0, begin)
        folds.append(fold_border(b, head, rank, axis, dim, begin, at_start=True, mode=mode))
    if end:
        tail = slice_axis(b, g, axis, begin + dim, begin + dim + end)
        folds.append(fold_border(b, tail, rank, axis, dim, end, at_start=False, mode=mode))
    return b.op("Sum", *folds) if len(folds) > 1 else interior


def fold_border(b: GraphBuilder, part: str, rank: int, axis: int, dim: int, width: int,
                at_start: bool, mode: str) -> str:
    """Where the padded rows came from, as a zero-padded tensor of the interior's size."""
    if mode == "edge":
        row = b.reduce_sum(part, [axis], keepdims=True)
        return b.pad_axis(row, rank, axis, 0 if at_start else dim - 1, dim - 1 if at_start else 0)
    if mode == "reflect":  # pad row j mirrors interior row width - j (start) / dim - 2 - j (end)
        if width >= dim:
            raise NotImplementedError("reflect padding wider than the tensor")
        rev = reverse_axis(b, part, axis)
        if at_start:
            return b.pad_axis(rev, rank, axis, 1, dim - 1 - width)
        return b.pad_axis(rev, rank, axis, dim - 1 - width, 1)
    if mode == "wrap":
        return b.pad_axis(part, rank, axis, dim - width if at_start else 0, 0 if at_start else dim - width)
    raise NotImplementedError(f"Pad mode {mode}")


# ---- pixel shuffles ------------------------------------------------------------------------------
@vjp("DepthToSpace")
def vjp_depth_to_space(b, node, grads, needs):
    """DCR: SpaceToDepth is the inverse. CRD (PyTorch's PixelShuffle) never gets here: specialisation
    made it a ConvTranspose (specialise.pixel_shuffles_as_convolutions), differentiated as one."""
    return [b.op("SpaceToDepth", grads[0], blocksize=int(node.attrs["blocksize"]))]


@vjp("SpaceToDepth")
def vjp_space_to_depth(b, node, grads, needs):
    return [b.op("DepthToSpace", grads[0], blocksize=int(node.attrs["blocksize"]), mode="DCR")]


# ---- receptive field ---------------------------------------------------------------------------
@field_rule("DepthToSpace")
def depth_to_space_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    """Upsampling: neighbouring outputs are 1 / blocksize input pixels apart."""
    b, f = node.attrs["blocksize"], merge(fields)
    return replace(f, j=(f.j[0] / b, f.j[1] / b))


@field_rule("SpaceToDepth")
def space_to_depth_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    b = node.attrs["blocksize"]
    return grow(merge(fields), (b, b), (b, b))


@field_rule("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze")
def layout_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    """Reshapes lose track of H and W; a 4-D result that tiles the last known grid regains it."""
    f = merge([fields[0]])
    shape = ctx.shape(node.outputs[0])
    lost = replace(f, spatial=False)
    if shape is None or len(shape) != 4 or shape[0] != 1 or f.grid is None or not shape[2] or not shape[3]:
        return lost
    b = (f.grid[0] / shape[2], f.grid[1] / shape[3])
    if not math.isclose(b[0], b[1]) or b[0] < 1 and not math.isclose(1 / b[0], round(1 / b[0])):
        return lost
    if b[0] >= 1 and not math.isclose(b[0], round(b[0])):
        return lost
    # merging b x b pixels into channels (pixel unshuffle) widens the field like a b x b kernel
    grown = grow(f, b, b) if b[0] > 1 else replace(f, j=(f.j[0] * b[0], f.j[1] * b[1]))
    return replace(grown, spatial=True, grid=(shape[2], shape[3]))


# outputs that depend on the input's shape only
field_rule(*SHAPE_READERS, "EyeLike", "ConstantOfShape", "RandomNormalLike", "RandomUniformLike")(no_field)
