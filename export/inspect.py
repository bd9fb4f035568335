"""What an ONNX SR model is: interface, size, cost, ops, and its theoretical receptive field.

Everything is computed from the graph at one concrete input size (the model's own if it is
fixed, else 64x64): shapes by ONNX Runtime's symbolic shape inference, FLOPs from the shapes,
and the receptive field by walking the graph from the input the way Araujo, Norris & Sim
("Computing receptive fields of convolutional neural networks", Distill 2019) describe:

    r_out = r_in + (k - 1) * dilation * j_in,    j_out = j_in * stride

with ``r`` in input (LR) pixels and ``j`` the jump, the distance in input pixels between
neighbouring positions of a tensor. Upsampling (DepthToSpace, Resize, strided ConvTranspose)
divides the jump, so layers after it add fractions of an LR pixel; branches that merge take the
largest field. Global pooling, normalisation over all positions, and attention or reductions
over all positions make the field ``"global"``. Window attention over w x w tokens counts as a
w x w kernel. Ops that only move data (activations, slicing, concatenation, reshapes) keep the
field. Pure NumPy/ONNX: no PyTorch needed.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import numpy_helper

from lam_trt.errors import InputError, ModelError
from lam_trt.export.autodiff import unsupported_nodes
from lam_trt.export.source import image_io, load_model

DEFAULT_SIZE = (64, 64)
Shape = tuple[int, ...]


# ---------------------------------------------------------------------------------- loading


def _image_input(proto: onnx.ModelProto) -> onnx.ValueInfoProto:
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise ModelError("expected one NCHW image input")
    return inputs[0]


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def analysis_size(proto: onnx.ModelProto, size: tuple[int, int] | None) -> tuple[int, int]:
    """The model's fixed H, W if it has them (a different ``size`` is an error), else ``size``."""
    dims = _dims(_image_input(proto))
    fixed = tuple(d if isinstance(d, int) and d > 0 else None for d in dims[2:])
    if all(fixed):
        if size is not None and tuple(size) != fixed:
            raise InputError(f"this model's input size is fixed at {fixed[0]}x{fixed[1]}, not {size[0]}x{size[1]}")
        return fixed  # type: ignore[return-value]
    return tuple(size) if size is not None else DEFAULT_SIZE  # type: ignore[return-value]


def check_accepts(proto: onnx.ModelProto, image_shape: tuple[int, ...]) -> None:
    """Refuse an image of another size than a fixed-size model's, saying the size it takes and
    how to get a model for this one (ONNX Runtime's own message names only dimension indices)."""
    dims = _dims(_image_input(proto))
    h, w = image_shape[-2:]
    fixed = [d if isinstance(d, int) and d > 0 else None for d in dims[2:]]
    if any(f is not None and f != n for f, n in zip(fixed, (h, w))):
        accepts = "x".join(str(f) if f else "any" for f in fixed)
        raise InputError(f"this model takes only {accepts} images (its input size is fixed), the image is "
                         f"{h}x{w}: crop or resize the image to {accepts}, or export the model for this size "
                         f"with `lam-trt export CHECKPOINT --lr-size {h}x{w}`")


def forward_bytes(proto: onnx.ModelProto, input_shape: Shape) -> int:
    """A lower bound of one forward pass's memory: the largest set of activations one node reads
    and writes at once (float32; weights not counted). ONNX Runtime cannot run in less."""
    shapes = static_shapes(proto, input_shape)
    weights = {i.name for i in proto.graph.initializer}
    size = lambda name: 4 * math.prod(shapes[name]) if name in shapes and name not in weights else 0  # noqa: E731
    return max((sum(size(n) for n in {*node.input, *node.output} if n) for node in proto.graph.node), default=0)


# ----------------------------------------------------------------------------------- shapes


def static_shapes(proto: onnx.ModelProto, input_shape: Shape) -> dict[str, Shape]:
    """Shape of every tensor for one concrete input shape (unknown tensors are left out)."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for dim, value in zip(_image_input(model).type.tensor_type.shape.dim, input_shape):
        dim.Clear()
        dim.dim_value = value
    # ONNX's own inference first: ONNX Runtime's symbolic tool imports PyTorch when it is installed,
    # and `lam-trt attribute` (which plans receptive-field crops with this) must not load it.
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    if not _all_static(inferred):
        try:
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        except Exception:  # keep what ONNX inferred
            pass
    shapes: dict[str, Shape] = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = _dims(value)
        if value.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in dims):
            shapes[value.name] = tuple(dims)  # type: ignore[arg-type]
    for init in proto.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _all_static(model: onnx.ModelProto) -> bool:
    """Whether inference gave every node output a fully known shape."""
    known = {v.name for v in [*model.graph.value_info, *model.graph.output]
             if v.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in _dims(v))}
    return all(o in known for n in model.graph.node for o in n.output if o)


def constants(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


# ------------------------------------------------------------------------------------ FLOPs


def _macs(node: onnx.NodeProto, shapes: dict[str, Shape]) -> int:
    """Multiply-accumulates of the compute-heavy ops; 0 for the rest or unknown shapes."""
    get = lambda i: shapes.get(node.input[i]) if len(node.input) > i else None  # noqa: E731
    out = shapes.get(node.output[0])
    if node.op_type == "Conv" and out and get(1):
        return math.prod(out) * math.prod(get(1)[1:])  # type: ignore[index]
    if node.op_type == "ConvTranspose" and get(0) and get(1):
        return math.prod(get(0)) * math.prod(get(1)[1:])  # type: ignore[index]
    if node.op_type == "MatMul" and out and get(0):
        return math.prod(out) * get(0)[-1]  # type: ignore[index]
    if node.op_type == "Gemm" and out and get(0):
        a = get(0)
        return math.prod(out) * (a[0] if _attr(node, "transA", 0) else a[-1])  # type: ignore[index]
    return 0


# --------------------------------------------------------------------------- receptive field


@dataclass(frozen=True)
class Field:
    """How a tensor depends on the input: receptive field and jump per axis (rows, cols)."""

    r: tuple[float, float]
    j: tuple[float, float]
    is_global: bool = False
    spatial: bool = True  # NCHW with H and W still at axes 2 and 3
    grid: tuple[int, int] | None = None  # H, W of the feature map when it was last NCHW


@dataclass
class _Context:
    shapes: dict[str, Shape]
    consts: dict[str, np.ndarray]
    size: tuple[int, int]

    def positions(self, field: Field) -> float:
        """How many positions a feature map at this field's jump has."""
        return (self.size[0] / field.j[0]) * (self.size[1] / field.j[1])

    def shape(self, name: str) -> Shape | None:
        return self.shapes.get(name)


Rule = Callable[[onnx.NodeProto, list["Field | None"], _Context], "Field | None"]
_RULES: dict[str, Rule] = {}


def _rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for op in op_types:
            _RULES[op] = fn
        return fn

    return register


def _pair(values: Any, default: int) -> tuple[int, int]:
    values = list(values or [])
    return (values[-2], values[-1]) if len(values) >= 2 else (default, default)


def _merge(fields: list[Field | None]) -> Field:
    """Several dependent inputs meet: the largest field, the finest grid."""
    live = [f for f in fields if f is not None]
    return Field(
        r=(max(f.r[0] for f in live), max(f.r[1] for f in live)),
        j=(min(f.j[0] for f in live), min(f.j[1] for f in live)),
        is_global=any(f.is_global for f in live),
        spatial=any(f.spatial for f in live),
        grid=next((f.grid for f in live if f.grid is not None), None),
    )


def _grow(f: Field, kernel: tuple[float, float], step: tuple[float, float]) -> Field:
    """Araujo's recursion: a kernel applied on ``f``'s grid, then a stride."""
    r = (f.r[0] + (kernel[0] - 1) * f.j[0], f.r[1] + (kernel[1] - 1) * f.j[1])
    return replace(f, r=r, j=(f.j[0] * step[0], f.j[1] * step[1]))


@_rule("Conv", "MaxPool", "AveragePool", "LpPool")
def _conv(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    f = _merge(fields)
    weight = ctx.shape(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
    k = _pair(_attr(node, "kernel_shape") or (weight[2:] if weight else None), 1)
    d = _pair(_attr(node, "dilations"), 1)
    s = _pair(_attr(node, "strides"), 1)
    return _grow(f, ((k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1), s)


@_rule("ConvTranspose")
def _conv_transpose(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    f = _merge(fields)
    weight = ctx.shape(node.input[1])
    k = _pair(_attr(node, "kernel_shape") or (weight[2:] if weight else None), 1)
    d = _pair(_attr(node, "dilations"), 1)
    s = _pair(_attr(node, "strides"), 1)
    # zero insertion (jump / s), then a kernel over the fine grid
    fine = replace(f, j=(f.j[0] / s[0], f.j[1] / s[1]))
    return _grow(fine, ((k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1), (1, 1))


@_rule("DepthToSpace")
def _depth_to_space(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    b = _attr(node, "blocksize")
    f = _merge(fields)
    return replace(f, j=(f.j[0] / b, f.j[1] / b))


@_rule("SpaceToDepth")
def _space_to_depth(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    b = _attr(node, "blocksize")
    return _grow(_merge(fields), (b, b), (b, b))


_RESIZE_TAPS = {"nearest": 1, "linear": 2, "cubic": 4}


@_rule("Resize", "Upsample")
def _resize(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    f = _merge([fields[0]])
    src, dst = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    if src is None or dst is None or len(src) != 4:
        return f
    taps = _RESIZE_TAPS.get(_attr(node, "mode", "nearest"), 2)
    grown = _grow(f, (taps, taps), (1, 1))
    return replace(grown, j=(f.j[0] * src[2] / dst[2], f.j[1] * src[3] / dst[3]))


@_rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "InstanceNormalization", "GroupNormalization")
def _global(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    return replace(_merge(fields), is_global=True)


def _mixes_positions(f: Field, axes: list[int], shape: Shape | None, ctx: _Context) -> bool:
    """Does an op over ``axes`` of a tensor with field ``f`` combine all positions?"""
    if shape is None:
        return False
    axes = [a % len(shape) for a in axes]
    if f.spatial and len(shape) == 4:
        return 2 in axes or 3 in axes
    extent = math.prod(shape[a] for a in axes)
    positions = round(ctx.positions(f))
    return positions > 1 and extent >= positions and extent % positions == 0


def _reduce_axes(node: onnx.NodeProto, ctx: _Context, rank: int) -> list[int]:
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1] in ctx.consts:
        axes = ctx.consts[node.input[1]].tolist()
    if not axes:
        return [] if _attr(node, "noop_with_empty_axes", 0) else list(range(rank))
    return list(axes)


@_rule(
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
)
def _reduce(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    f = _merge([fields[0]])
    shape = ctx.shape(node.input[0])
    axes = [_attr(node, "axis", 0)] if node.op_type.startswith("Arg") else _reduce_axes(node, ctx, len(shape or ()))
    mixes = _mixes_positions(f, axes, shape, ctx)
    return replace(f, is_global=f.is_global or mixes, spatial=f.spatial and not mixes)


@_rule("Softmax", "LogSoftmax", "Hardmax", "LayerNormalization", "MeanVarianceNormalization")
def _normalise(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    f = _merge([fields[0]])
    shape = ctx.shape(node.input[0])
    rank = len(shape or ())
    if node.op_type == "MeanVarianceNormalization":
        axes = list(_attr(node, "axes", [0, 2, 3]))
    elif node.op_type == "LayerNormalization":
        axes = list(range(_attr(node, "axis", -1) % max(rank, 1), rank))
    else:
        axes = [_attr(node, "axis", -1)]
    return replace(f, is_global=f.is_global or _mixes_positions(f, axes, shape, ctx))


@_rule("MatMul", "Gemm")
def _matmul(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    f = replace(_merge(fields[:2]), spatial=False)
    a, b, out = ctx.shape(node.input[0]), ctx.shape(node.input[1]), ctx.shape(node.output[0])
    if a is None or b is None or out is None or len(out) < 2:
        return f
    k = a[0] if node.op_type == "Gemm" and _attr(node, "transA", 0) else a[-1]
    m, n = out[-2], out[-1]
    positions = round(ctx.positions(f))
    spans = lambda x: positions > 1 and x >= positions and x % positions == 0  # noqa: E731
    if fields[0] is not None and fields[1] is not None:
        if spans(k) or spans(m) or spans(n):  # non-local attention, covariance pooling
            return replace(f, is_global=True)
        window = math.isqrt(m)
        if m == n and k != m and window > 1 and window * window == m:
            # attention scores inside w x w windows: each token sees its window, like a w x w kernel
            return _grow(f, (window, window), (1, 1))
        return f
    # one operand is constant: a per-token linear layer, unless it is a square positions x positions mix
    square = (k == n) if fields[0] is not None else (m == k)
    return replace(f, is_global=f.is_global or (square and spans(k)))


@_rule("Shape", "Size", "EyeLike", "ConstantOfShape", "RandomNormalLike", "RandomUniformLike")
def _data_independent(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    return None


_LAYOUT_OPS = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}


def _layout(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    """Reshapes lose track of H and W; a 4-D result that tiles the last known grid regains it."""
    f = _merge([fields[0]])
    shape = ctx.shape(node.output[0])
    lost = replace(f, spatial=False)
    if shape is None or len(shape) != 4 or shape[0] != 1 or f.grid is None or not shape[2] or not shape[3]:
        return lost
    b = (f.grid[0] / shape[2], f.grid[1] / shape[3])
    if not math.isclose(b[0], b[1]) or b[0] < 1 and not math.isclose(1 / b[0], round(1 / b[0])):
        return lost
    if b[0] >= 1 and not math.isclose(b[0], round(b[0])):
        return lost
    # merging b x b pixels into channels (pixel unshuffle) widens the field like a b x b kernel
    grown = _grow(f, b, b) if b[0] > 1 else replace(f, j=(f.j[0] * b[0], f.j[1] * b[1]))
    return replace(grown, spatial=True, grid=(shape[2], shape[3]))


def _default(node: onnx.NodeProto, fields: list[Field | None], ctx: _Context) -> Field | None:
    """Elementwise ops, activations, slicing, concatenation, padding: the inputs' field."""
    f = _merge(fields)
    shape = ctx.shape(node.output[0]) if node.output else None
    spatial = f.spatial and (shape is None or len(shape) == 4)
    return replace(f, spatial=spatial, grid=(shape[2], shape[3]) if spatial and shape else f.grid)


def _walk(proto: onnx.ModelProto, ctx: _Context) -> dict[str, Field]:
    """Field of every input-dependent tensor."""
    fields: dict[str, Field] = {_image_input(proto).name: Field((1.0, 1.0), (1.0, 1.0), grid=ctx.size)}
    for node in proto.graph.node:
        ins = [fields.get(name) for name in node.input]
        if not any(ins):
            continue
        rule = _RULES.get(node.op_type) or (_layout if node.op_type in _LAYOUT_OPS else _default)
        out = rule(node, ins, ctx)
        if out is None:
            continue
        shape = ctx.shape(node.output[0]) if node.output else None
        if out.spatial and shape is not None and len(shape) == 4:
            out = replace(out, grid=(shape[2], shape[3]))
        for name in node.output:
            if name:
                fields[name] = out
    return fields


def receptive_field(field: Field | None) -> float | str | None:
    if field is None:
        return None
    if field.is_global:
        return "global"
    return _number(max(field.r))


def _number(x: float) -> float | int:
    rounded = round(x, 3)
    return int(rounded) if rounded == int(rounded) else rounded


# ---------------------------------------------------------------------------------- report


def inspect_model(model: str | Path | onnx.ModelProto, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The report ``lam-trt inspect`` prints, as a JSON-ready dict.

    The model is read and checked as ``lam-trt attribute`` reads and checks it (one image in, one
    image out; the same list of ops without a gradient rule), so the two never disagree."""
    proto = load_model(model)
    image = image_io(proto)[0]
    h, w = analysis_size(proto, size)
    channels = _dims(image)[1]
    if not isinstance(channels, int) or channels < 1:
        raise ModelError("the input's channel count must be fixed")
    shapes = static_shapes(proto, (1, channels, h, w))
    ctx = _Context(shapes, constants(proto), (h, w))
    fields = _walk(proto, ctx)
    output = proto.graph.output[0]
    out_shape = shapes.get(output.name)
    macs = sum(_macs(node, shapes) for node in proto.graph.node)
    out_field = fields.get(output.name)
    report: dict[str, Any] = {
        "inputs": [{"name": image.name, "shape": _dims(image)}],
        "outputs": [{"name": o.name, "shape": _dims(o)} for o in proto.graph.output],
        "analysis_size": [h, w],
        "scale": _number(out_shape[2] / h) if out_shape and len(out_shape) == 4 else None,
        "channels": {"input": channels, "output": out_shape[1] if out_shape and len(out_shape) == 4 else None},
        "parameters": _parameter_count(proto),
        "ops": dict(Counter(n.op_type for n in proto.graph.node).most_common()),
        "unsupported_ops": sorted({op for op, *_ in unsupported_nodes(proto)}),
        "gflops_per_lr_pixel": float(f"{2 * macs / (h * w) / 1e9:.4g}"),
        "receptive_field": receptive_field(out_field),
        "receptive_field_hw": [_number(r) for r in out_field.r] if out_field and not out_field.is_global else None,
        "metadata": {p.key: p.value for p in proto.metadata_props},
    }
    return report


def _parameter_count(proto: onnx.ModelProto) -> int:
    """The count `lam-trt export` recorded (PyTorch's, as export prints it), else the elements of the
    floating-point initializers: weights plus any constants folded at export."""
    recorded = {p.key: p.value for p in proto.metadata_props}.get("lam_trt.parameters", "")
    if recorded.isdigit():
        return int(recorded)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    return sum(math.prod(i.dims) for i in proto.graph.initializer if i.data_type in floats)
