"""The theoretical receptive field of an ONNX SR model's output, in LR pixels.

The graph is walked from the input at one concrete size, each op applying its receptive-field rule
(registered beside its VJP rule, fields.py has the algebra): Araujo, Norris & Sim's recursion
``r_out = r_in + (k - 1) * dilation * j_in``, ``j_out = j_in * stride``. Upsampling (DepthToSpace,
Resize, strided ConvTranspose) divides the jump, so layers after it add fractions of an LR pixel;
branches that merge take the largest field. Global pooling, normalisation over all positions, and
attention or reductions over all positions make the field ``"global"``. Window attention over
w x w tokens counts as a w x w kernel. Ops without a rule (activations, slicing, concatenation,
padding) keep the field. Pure NumPy/ONNX: no PyTorch needed.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import numpy_helper

from lam_trt.errors import ModelError
from lam_trt.export.builder import Node
from lam_trt.export.fields import Field, FieldContext, Shape, merge
from lam_trt.export.vjp import FIELD_RULES


def receptive_field(model: onnx.ModelProto, size: tuple[int, int]) -> float | str | None:
    """The receptive field of ``model``'s output at LR input size ``size`` (H, W): its side in LR
    pixels, ``"global"``, or None when the output does not depend on the input's values."""
    shape = input_shape(model, size)
    return field_size(output_field(model, static_shapes(model, shape), size))


def output_field(model: onnx.ModelProto, shapes: dict[str, Shape], size: tuple[int, int]) -> Field | None:
    """The Field of the model's first output, given every tensor's shape at input size ``size``."""
    return walk(model, FieldContext(shapes, constants(model), tuple(size))).get(model.graph.output[0].name)


def field_size(field: Field | None) -> float | str | None:
    if field is None:
        return None
    return "global" if field.is_global else number(max(field.r))


def number(x: float) -> float | int:
    """Rounded to 3 decimals; an int when whole."""
    rounded = round(x, 3)
    return int(rounded) if rounded == int(rounded) else rounded


def walk(model: onnx.ModelProto, ctx: FieldContext) -> dict[str, Field]:
    """Field of every input-dependent tensor."""
    fields: dict[str, Field] = {image_input(model).name: Field((1.0, 1.0), (1.0, 1.0), grid=ctx.size)}
    for proto in model.graph.node:
        ins = [fields.get(name) for name in proto.input]
        if not any(ins):
            continue
        node = Node.from_proto(proto)
        out = FIELD_RULES.get(node.op_type, same_field)(node, ins, ctx)
        if out is None:
            continue
        shape = ctx.shape(node.outputs[0]) if node.outputs else None
        if out.spatial and shape is not None and len(shape) == 4:
            out = replace(out, grid=(shape[2], shape[3]))
        fields.update({name: out for name in node.outputs if name})
    return fields


def same_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    """Elementwise ops, activations, slicing, concatenation, padding: the inputs' field."""
    f = merge(fields)
    shape = ctx.shape(node.outputs[0]) if node.outputs else None
    spatial = f.spatial and (shape is None or len(shape) == 4)
    return replace(f, spatial=spatial, grid=(shape[2], shape[3]) if spatial and shape else f.grid)


# ---- the graph at one input size ----------------------------------------------------------------
def image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise ModelError("expected one NCHW image input")
    return inputs[0]


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def input_shape(model: onnx.ModelProto, size: tuple[int, int]) -> Shape:
    """(1, C, H, W) of the image input at ``size``; the channel count must be fixed."""
    channels = dims(image_input(model))[1]
    if not isinstance(channels, int) or channels < 1:
        raise ModelError("the input's channel count must be fixed")
    return (1, channels, *size)


def static_shapes(model: onnx.ModelProto, shape: Shape) -> dict[str, Shape]:
    """Shape of every tensor for one concrete input shape (unknown tensors are left out)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for dim, value in zip(image_input(fixed).type.tensor_type.shape.dim, shape):
        dim.Clear()
        dim.dim_value = value
    # ONNX's own inference first: ONNX Runtime's symbolic tool imports PyTorch when it is installed,
    # and `lam-trt attribute` (which plans receptive-field crops with this) must not load it.
    inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    if not _all_static(inferred):
        inferred = symbolic_shapes(fixed) or inferred
    shapes: dict[str, Shape] = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        known = dims(value)
        if value.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in known):
            shapes[value.name] = tuple(known)  # type: ignore[arg-type]
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """ONNX Runtime's symbolic shape inference, keeping what it inferred where it cannot finish.
    Its ``infer_shapes`` would then write ``sym_shape_infer_temp.onnx`` (and a data file) into the
    current folder, the user's, and raise: so its loop runs here, without the file."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        inference = SymbolicShapeInference(2**31 - 1, True, False, 0)  # int_max, auto_merge, guess rank, verbose
        inference._preprocess(model)
        while inference.run_:
            inference._infer_impl()
        inference._update_output_from_vi()
        return inference.out_mp_
    except Exception:  # noqa: BLE001 - an internal tool's failure: keep what ONNX inferred
        return None


def _all_static(model: onnx.ModelProto) -> bool:
    """Whether inference gave every node output a fully known shape."""
    known = {v.name for v in [*model.graph.value_info, *model.graph.output]
             if v.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in dims(v))}
    return all(o in known for n in model.graph.node for o in n.output if o)


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values
