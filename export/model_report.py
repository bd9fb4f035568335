"""What an ONNX SR model is: interface, size, cost, ops, and its theoretical receptive field.

Everything is computed from the graph at one concrete input size (the model's own if it is
fixed, else 64x64): shapes by shape inference, multiply-accumulates from the shapes (each
compute-heavy op's count is registered beside its VJP rule), and the receptive field as
``receptive_field.py`` walks it. Pure NumPy/ONNX: no PyTorch needed.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import onnx

from lam_trt.errors import InputError
from lam_trt.export.autodiff import unsupported_nodes
from lam_trt.export.builder import Node
from lam_trt.export.receptive_field import (
    dims, field_size, image_input, input_shape, number, output_field, static_shapes,
)
from lam_trt.export.source import image_io, load_model
from lam_trt.export.vjp import MAC_COUNTS

DEFAULT_SIZE = (64, 64)
Shape = tuple[int, ...]


def analysis_size(proto: onnx.ModelProto, size: tuple[int, int] | None) -> tuple[int, int]:
    """The model's fixed H, W if it has them (a different ``size`` is an error), else ``size``."""
    hw = dims(image_input(proto))[2:]
    fixed = tuple(d if isinstance(d, int) and d > 0 else None for d in hw)
    if all(fixed):
        if size is not None and tuple(size) != fixed:
            raise InputError(f"this model's input size is fixed at {fixed[0]}x{fixed[1]}, not {size[0]}x{size[1]}")
        return fixed  # type: ignore[return-value]
    return tuple(size) if size is not None else DEFAULT_SIZE  # type: ignore[return-value]


def check_accepts(proto: onnx.ModelProto, image_shape: tuple[int, ...]) -> None:
    """Refuse an image of another size than a fixed-size model's, saying the size it takes and
    how to get a model for this one (ONNX Runtime's own message names only dimension indices)."""
    hw = dims(image_input(proto))[2:]
    h, w = image_shape[-2:]
    fixed = [d if isinstance(d, int) and d > 0 else None for d in hw]
    if any(f is not None and f != n for f, n in zip(fixed, (h, w))):
        accepts = "x".join(str(f) if f else "any" for f in fixed)
        raise InputError(f"this model takes only {accepts} images (its input size is fixed), the image is "
                         f"{h}x{w}: crop or resize the image to {accepts}, or export the model for this size "
                         f"with `lam-trt export CHECKPOINT --size {h}x{w}`")


def forward_bytes(proto: onnx.ModelProto, input_shape: Shape) -> int:
    """A lower bound of one forward pass's memory: the largest set of activations one node reads
    and writes at once (float32; weights not counted). ONNX Runtime cannot run in less."""
    shapes = static_shapes(proto, input_shape)
    weights = {i.name for i in proto.graph.initializer}
    size = lambda name: 4 * math.prod(shapes[name]) if name in shapes and name not in weights else 0  # noqa: E731
    return max((sum(size(n) for n in {*node.input, *node.output} if n) for node in proto.graph.node), default=0)


def inspect_model(model: str | Path | onnx.ModelProto, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The report ``lam-trt inspect`` prints, as a JSON-ready dict.

    The model is read and checked as ``lam-trt attribute`` reads and checks it (one image in, one
    image out; the same list of ops without a gradient rule), so the two never disagree."""
    proto = load_model(model)
    image = image_io(proto)[0]
    h, w = analysis_size(proto, size)
    channels = input_shape(proto, (h, w))[1]
    shapes = static_shapes(proto, (1, channels, h, w))
    out_shape = shapes.get(proto.graph.output[0].name)
    out_field = output_field(proto, shapes, (h, w))
    report: dict[str, Any] = {
        "inputs": [{"name": image.name, "shape": dims(image)}],
        "outputs": [{"name": o.name, "shape": dims(o)} for o in proto.graph.output],
        "analysis_size": [h, w],
        "scale": number(out_shape[2] / h) if out_shape and len(out_shape) == 4 else None,
        "channels": {"input": channels, "output": out_shape[1] if out_shape and len(out_shape) == 4 else None},
        "parameters": _parameter_count(proto),
        "ops": dict(Counter(n.op_type for n in proto.graph.node).most_common()),
        "unsupported_ops": sorted({op for op, *_ in unsupported_nodes(proto)}),
        "gflops_per_lr_pixel": float(f"{2 * macs(proto, shapes) / (h * w) / 1e9:.4g}"),
        "receptive_field": field_size(out_field),
        "receptive_field_hw": [number(r) for r in out_field.r] if out_field and not out_field.is_global else None,
        "metadata": {p.key: p.value for p in proto.metadata_props},
    }
    return report


def macs(proto: onnx.ModelProto, shapes: dict[str, Shape]) -> int:
    """Multiply-accumulates of one forward pass: the compute-heavy ops' registered counts."""
    counts = ((MAC_COUNTS.get(n.op_type), n) for n in proto.graph.node)
    return sum(count(Node.from_proto(n), shapes) for count, n in counts if count)


def _parameter_count(proto: onnx.ModelProto) -> int:
    """The count `lam-trt export` recorded (PyTorch's, as export prints it), else the elements of the
    floating-point initializers: weights plus any constants folded at export."""
    recorded = {p.key: p.value for p in proto.metadata_props}.get("lam_trt.parameters", "")
    if recorded.isdigit():
        return int(recorded)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    return sum(math.prod(i.dims) for i in proto.graph.initializer if i.data_type in floats)
