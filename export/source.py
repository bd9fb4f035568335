"""Reading the user's ONNX file: validation and canonical forms of ops that changed across opsets."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx
from onnx import helper, numpy_helper
from google.protobuf.message import DecodeError
import numpy as np

from lam_trt.errors import InputError, ModelError
from lam_trt.export.random_ops import fix_random_ops_in
from lam_trt.filetypes import not_a_model_hint, regular_file

MIN_OPSET = 9
TARGET_OPSET = 18  # axes-as-input everywhere; LayerNormalization and GroupNormalization exist
IMAGE_TYPES = (onnx.TensorProto.FLOAT,)


def load_onnx(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """The model as a ModelProto with external data loaded and local functions inlined."""
    if isinstance(model, onnx.ModelProto):
        proto = model
    else:
        path = regular_file(model, "model file")
        hint = not_a_model_hint(path)
        if hint:
            raise ModelError(hint)
        try:
            proto = onnx.load(str(path))
        except onnx.checker.ValidationError as e:  # external data missing, outside the folder, a link
            raise ModelError(f"{path}: its external weight data cannot be used: {e}") from None
        except (DecodeError, ValueError, RuntimeError, OSError) as e:
            raise ModelError(f"{path} is not a readable ONNX model (truncated or another format): "
                             f"{type(e).__name__}") from None
        if not proto.graph.node:
            raise ModelError(f"{path} is not an ONNX model (no graph nodes)")
    if proto.functions:
        proto = onnx.inliner.inline_local_functions(proto)
    return proto


def model_sha256(model: str | os.PathLike | onnx.ModelProto) -> str:
    """sha256 of every byte the model reads: the file, then each external data file it names (sorted by
    location, each preceded by its name), so changed weights are a different model in caches and
    results. Without external data this is the file's own sha256 (``sha256sum model.onnx``)."""
    if isinstance(model, onnx.ModelProto):
        return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()
    path = Path(model)
    digest = hashlib.sha256()
    _hash_file(digest, path)
    for location in external_data_files(path):
        digest.update(b"\0external data:" + os.fsencode(location) + b"\0")
        try:
            _hash_file(digest, path.parent / location)
        except OSError as e:
            raise InputError(f"cannot read the external data file {location!r} of {path}: "
                             f"{e.strerror or type(e).__name__}") from None
    return digest.hexdigest()


def external_data_files(path: str | os.PathLike) -> list[str]:
    """The external data locations (relative to the model's folder) the ONNX file refers to, sorted."""
    proto = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in onnx.external_data_helper._get_all_tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(e.value for e in tensor.external_data if e.key == "location")
    return sorted(locations)


def _hash_file(digest: "hashlib._Hash", path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def opset_of(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ModelError("model declares no ai.onnx opset")


def image_io(model: onnx.ModelProto) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    """The single image input and output; anything else is not an SR network we can attribute."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"not an image-to-image model: {len(inputs)} inputs and {len(outputs)} outputs "
                         "(expected one NCHW image in, one image out)")
    for kind, vi in (("input", inputs[0]), ("output", outputs[0])):
        t = vi.type.tensor_type
        if t.elem_type not in IMAGE_TYPES or (t.HasField("shape") and len(t.shape.dim) != 4):
            rank = len(t.shape.dim) if t.HasField("shape") else "?"
            raise ModelError(f"not an image-to-image model: {kind} '{vi.name}' is "
                             f"{onnx.TensorProto.DataType.Name(t.elem_type)} of rank {rank}, expected "
                             "a float32 NCHW image")
    return inputs[0], outputs[0]


def static_dims(vi: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]


# ---- canonical forms ------------------------------------------------------------------------
AXES_TO_INPUT_AT = {"Squeeze": 13, "Unsqueeze": 13, "ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18,
                    "ReduceMin": 18, "ReduceProd": 18, "ReduceL1": 18, "ReduceL2": 18,
                    "ReduceLogSum": 18, "ReduceLogSumExp": 18, "ReduceSumSquare": 18}


RESERVED = frozenset({"path", "weights", "window", "detector", "attribution", "contribution", "sr"})


def source_name(name: str) -> str:
    """A source tensor name that cannot clash with the attribution graph's own names."""
    if name in RESERVED or name.startswith("lam/"):
        return f"src/{name}"
    return name


def rename_reserved(graph: onnx.GraphProto) -> None:
    """Rename, in place, source tensors whose names the attribution graph uses itself."""
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        vi.name = source_name(vi.name)
    for t in graph.initializer:
        t.name = source_name(t.name)
    for node in graph.node:
        node.input[:] = [source_name(n) if n else n for n in node.input]
        node.output[:] = [source_name(n) if n else n for n in node.output]


def canonicalise(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite the graph to one opset (>= 18) so every rule sees one form of each op."""
    source = opset_of(model)
    if source < MIN_OPSET:
        raise ModelError(f"opset {source} is older than {MIN_OPSET}; re-export the model with opset >= "
                         f"{MIN_OPSET}")
    target = max(source, TARGET_OPSET)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        nodes.extend(canonical_node(node, source))
    fix_random_ops_in(nodes)  # no-op after build_attribution_graph fixed them with the user's choice
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    rename_reserved(out.graph)
    del out.opset_import[:]
    out.opset_import.extend([helper.make_opsetid("", target)] +
                            [o for o in model.opset_import if o.domain not in ("", "ai.onnx")])
    out.ir_version = max(model.ir_version, 8)
    return out


def constant(name: str, values, dtype: str) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(values, dtype=dtype)))


def attrs_to_inputs(node: onnx.NodeProto, attrs: dict, names: list[tuple[str, str, object]],
                    **extra) -> list[onnx.NodeProto]:
    """Move attributes (name, dtype, default) to inputs, in order ("" where absent)."""
    nodes, inputs = [], [node.input[0]]
    for attr, dtype, default in names:
        value = attrs.pop(attr, default)
        if value is None:
            inputs.append("")
            continue
        const = f"{node.output[0]}__{attr}"
        nodes.append(constant(const, value, dtype))
        inputs.append(const)
    while inputs and inputs[-1] == "":
        inputs.pop()
    attrs.update(extra)
    return nodes + [helper.make_node(node.op_type, inputs, list(node.output), name=node.name, **attrs)]


def canonical_node(node: onnx.NodeProto, source: int) -> list[onnx.NodeProto]:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    op = node.op_type
    if op in AXES_TO_INPUT_AT and source < AXES_TO_INPUT_AT[op] and "axes" in attrs:
        return attrs_to_inputs(node, attrs, [("axes", "int64", None)])
    if op == "Split" and source < 13 and "split" in attrs:
        return attrs_to_inputs(node, attrs, [("split", "int64", None)])
    if op == "Split" and len(node.input) < 2 and "num_outputs" not in attrs:
        attrs["num_outputs"] = len(node.output)
        return [helper.make_node(op, list(node.input), list(node.output), name=node.name, **attrs)]
    if op == "Pad" and source < 11:
        return attrs_to_inputs(node, attrs, [("pads", "int64", None), ("value", "float32", 0.0)])
    if op == "Clip" and source < 11:
        return attrs_to_inputs(node, attrs, [("min", "float32", None), ("max", "float32", None)])
    if op == "Slice" and source < 10:
        return attrs_to_inputs(node, attrs, [("starts", "int64", None), ("ends", "int64", None),
                                             ("axes", "int64", None)])
    if op in ("Softmax", "LogSoftmax") and source < 13 and attrs.get("axis", 1) != -1:
        return coerced_softmax(node, attrs)
    if op == "Upsample" or (op == "Resize" and source < 11):
        # Upsample-9 and Resize-10 sample at x_out / scale (asymmetric), nearest rounding down
        mode = attrs.get("mode", "nearest")
        return [helper.make_node("Resize", [node.input[0], "", node.input[1]], list(node.output),
                                 name=node.name, mode=mode, coordinate_transformation_mode="asymmetric",
                                 nearest_mode="floor")]
    return [node]


def coerced_softmax(node: onnx.NodeProto, attrs: dict) -> list[onnx.NodeProto]:
    """Opset < 13 softmax works on the input flattened to 2-D at ``axis``: make that explicit."""
    axis = attrs.get("axis", 1)
    flat, soft, shape = (f"{node.output[0]}__{s}" for s in ("flat", "soft", "shape"))
    return [
        helper.make_node("Flatten", [node.input[0]], [flat], axis=axis),
        helper.make_node(node.op_type, [flat], [soft], axis=1),
        helper.make_node("Shape", [node.input[0]], [shape]),
        helper.make_node("Reshape", [soft, shape], list(node.output), name=node.name),
    ]
