"""Specialise the user's graph to one input size: fold what does not depend on the image.

The result, a ForwardGraph, keeps only the nodes whose outputs depend on the image ("data"
nodes). Everything else (weights, Constant nodes, shape arithmetic) becomes an initializer whose
value was computed once at batch 1, and every data tensor gets a static batch-1 shape. The batch
stays dynamic: follow_batch tracks which axis of every data tensor carries it (moved by
Transpose, merged with windows or pixels by Reshape; where batch-1 shapes leave that ambiguous,
the source's shapes at batch 3 decide) and rewrites what baked in batch 1: Reshape/Expand/Resize
shape arguments, Gathers along the batch axis, folded operands that must repeat once per item.
What it cannot rewrite, the batch probe (batch_probe.py) finds when the graph is built.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from lam_trt.errors import ModelError
from lam_trt.export.batch_probe import relative_l2
from lam_trt.export.builder import SHAPE_READERS, one_hot_kernels
from lam_trt.export.source import canonicalise, image_io, opset_of, static_dims

# Ops whose folded operands must line up with the image data along the batch axis (MatMul: on
# its stacking axes); of these, the broadcasting ones take a size-1 batch axis as it is.
BROADCASTING = frozenset({"Add", "Sub", "Mul", "Div", "Where", "MatMul"})
BATCHED_OPERANDS = BROADCASTING | {"Concat", "ScatterElements", "ScatterND"}
# Outputs of these ops have a size that depends on the values they read (a boolean-mask selection).
VALUE_SIZED = frozenset({"NonZero", "Unique", "Compress"})
# Outputs of these ops take the shape of their first input whatever the sizes of the others.
SHAPED_LIKE_FIRST = frozenset({"ScatterND", "ScatterElements"})
SMALL = 1 << 16  # constants up to this many elements are kept as NumPy for the rules to read
SOURCE_BATCHES = 1e-6  # relative L2 between a source's batch and its images alone (HAT's traced mask: 4e-5)


@dataclass
class ForwardGraph:
    input_name: str
    output_name: str
    input_shape: tuple[int, int, int]
    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto]
    values: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, int]
    opset: int
    ir_version: int
    extra_opsets: list = field(default_factory=list)
    batch_axes: dict[str, int] = field(default_factory=dict)  # data tensor -> axis that carries the batch

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes[self.output_name]

    def rename_output(self, name: str) -> None:
        """Call the output tensor ``name`` everywhere, so a graph output of that name is the tensor
        itself (an Identity would copy the whole SR batch on every run)."""
        old = self.output_name
        for node in self.nodes:
            node.input[:] = [name if i == old else i for i in node.input]
            node.output[:] = [name if o == old else o for o in node.output]
        for table in (self.shapes, self.dtypes, self.values, self.batch_axes):
            if old in table:
                table[name] = table.pop(old)
        self.output_name = name


def specialise(model: onnx.ModelProto, input_shape: tuple[int, int, int]) -> ForwardGraph:
    check_input_shape(image_io(model)[0], input_shape)
    model = canonicalise(model)
    image_in, image_out = image_io(model)
    fixed = with_input_shape(model, image_in.name, input_shape)
    data = data_tensors(fixed.graph, image_in.name)
    data_nodes = [n for n in fixed.graph.node if any(o in data for o in n.output)]
    if image_out.name not in data:
        raise ModelError("the model's output does not depend on its input")
    refuse_sizes_set_by_values(fixed.graph.node, data)
    needed = {i for n in data_nodes for i in n.input if i and i not in data}
    inits = {t.name: t for t in fixed.graph.initializer}
    values, protos = fold_constants(fixed, needed - set(inits), image_in.name, input_shape)
    for name in needed & set(inits):
        protos[name] = inits[name]
        if np.prod(inits[name].dims) <= SMALL:
            values[name] = numpy_helper.to_array(inits[name])
    shapes, dtypes = static_shapes(fixed, data_nodes, protos, image_in.name, input_shape, data)
    for name, proto in protos.items():
        shapes[name], dtypes[name] = tuple(proto.dims), proto.data_type
    graph = ForwardGraph(image_in.name, image_out.name, tuple(input_shape), data_nodes, list(protos.values()),
                         values, shapes, dtypes, opset_of(fixed), fixed.ir_version,
                         [o for o in fixed.opset_import if o.domain not in ("", "ai.onnx")])
    follow_batch(graph, data, reshape_shapes_at_batch_3(fixed, data_nodes, input_shape))
    pixel_shuffles_as_convolutions(graph)
    return graph


def check_input_shape(vi: onnx.ValueInfoProto, input_shape: tuple[int, int, int]) -> None:
    dims = static_dims(vi)
    if len(dims) != 4:
        return
    want = [None, *input_shape]
    for axis, (have, need) in enumerate(zip(dims, want)):
        if axis == 0:
            if have not in (None, 0, 1):
                raise ModelError(f"the model's batch is fixed to {have}; export it with batch 1 or dynamic")
        elif have not in (None, 0) and have != need:
            what = ["batch", "channels", "height", "width"][axis]
            raise ModelError(f"the model takes {what} {have} (input {dims[1:]}), not {need}: "
                             f"use an image of that size or re-export with dynamic height/width")


def with_input_shape(model: onnx.ModelProto, name: str, input_shape, batch: int | None = 1) -> onnx.ModelProto:
    """The model with the image input fixed to ``input_shape`` and ``batch`` (None: a named dim)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for vi in fixed.graph.input:
        if vi.name == name:
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            first = dims.add()
            if batch is None:
                first.dim_param = "N"
            else:
                first.dim_value = batch
            for d in input_shape:
                dims.add().dim_value = d
    for vi in fixed.graph.output:
        vi.type.tensor_type.ClearField("shape")
    del fixed.graph.value_info[:]
    return fixed


def data_tensors(graph: onnx.GraphProto, input_name: str) -> set[str]:
    """Tensors whose values depend on the image's values (graph nodes are topologically sorted)."""
    data = {input_name}
    for node in graph.node:
        if node.op_type in SHAPE_READERS:
            continue
        if any(i in data for i in node.input) or subgraph_reads(node, data):
            data.update(o for o in node.output if o)
    return data


def refuse_sizes_set_by_values(nodes, data: set[str]) -> None:
    """Refuse a data node that reads a size counted from the image's values (``x[mask] = ...``:
    how many elements a NonZero selects). Specialisation folds what does not depend on the values,
    and a Shape only reads a shape: that count would be folded at the one image specialisation
    runs, and be wrong for every other image. One line, before any work."""
    sized: dict[str, onnx.NodeProto] = {}  # tensor -> the node whose value-dependent size it carries
    for node in nodes:
        reads = node.input[:1] if node.op_type in SHAPED_LIKE_FIRST else node.input
        source = next((sized[i] for i in reads if i in sized), None)
        folded = next((i for i in node.input if i in sized and i not in data), None)
        if folded is not None and any(o in data for o in node.output):
            src = sized[folded]
            raise ModelError(f"{node.op_type} node '{node.name}' reads {folded}, a size taken from {src.op_type} node "
                             f"'{src.name}' (a boolean-mask selection: its count depends on the image); lam-trt would "
                             "fix that count at one image, so no exact gradient graph exists for other images; torch's dynamo "
                             "exporter (`lam-trt export --exporter dynamo`) often writes such masked assignments "
                             "without a size to fix, and lam-trt differentiates those exactly")
        if node.op_type in VALUE_SIZED and any(i in data for i in node.input):
            source = node
        for o in node.output:
            if o and source is not None:
                sized[o] = source


def subgraph_reads(node: onnx.NodeProto, data: set[str]) -> bool:
    for attr in node.attribute:
        for g in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            if any(i in data for n in g.node for i in n.input):
                return True
    return False


def run_for(model: onnx.ModelProto, names: list[str], input_name: str, input_shape,
            types: dict[str, onnx.TypeProto]) -> dict[str, np.ndarray]:
    """Run the model at batch 1 and return the named intermediate tensors."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for name in names:
        vi = onnx.ValueInfoProto(name=name)
        vi.type.tensor_type.elem_type = types[name].tensor_type.elem_type
        probe.graph.output.append(vi)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random((1, *input_shape), dtype=np.float32)
        return dict(zip(names, sess.run(names, {input_name: x})))
    except Exception as e:  # ORT's own exceptions carry no common base class
        raise ModelError(f"onnxruntime cannot run the model at input {list(input_shape)}: "
                         f"{str(e).splitlines()[0][:300]}") from None


def inferred_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:
        raise ModelError(f"ONNX shape inference failed on the model: {str(e).splitlines()[0][:300]}") from None
    types = {vi.name: vi.type for vi in
             [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    for node in model.graph.node:  # Constant outputs are typed by their value
        if node.op_type == "Constant" and node.output[0] not in types:
            t = onnx.TypeProto()
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            t.tensor_type.elem_type = value.data_type if value is not None else onnx.TensorProto.FLOAT
            types[node.output[0]] = t
    return types


def fold_constants(model, names: set[str], input_name: str, input_shape):
    """Values of the non-image tensors that data nodes read, computed once at batch 1."""
    if not names:
        return {}, {}
    types = inferred_types(model)
    untyped = sorted(n for n in names if n not in types or not types[n].tensor_type.elem_type)
    if untyped:
        raise ModelError(f"cannot determine the type of tensor(s) {', '.join(untyped[:5])}")
    values = run_for(model, sorted(names), input_name, input_shape, types)
    protos = {n: numpy_helper.from_array(np.asarray(v), n) for n, v in values.items()}
    small = {n: np.asarray(v) for n, v in values.items() if np.asarray(v).size <= SMALL}
    return small, protos


def reshape_shapes_at_batch_3(model: onnx.ModelProto, data_nodes, input_shape) -> dict[str, tuple[int, ...]]:
    """Output shapes of the data Reshapes when the model runs three images as one batch, if it then
    gives what it gives them one at a time ({} otherwise). At batch 1, [L*N, E] and [L, N*E] look
    alike; the axis that triples says where the batch goes. A source traced at batch 1 (Swin's
    window_reverse) or at the dynamo exporter's example batch 2 computes other shapes at batch 3
    and wrong outputs: it is not followed."""
    outputs = [n.output[0] for n in data_nodes if n.op_type == "Reshape"]
    if not outputs:
        return {}
    image_in, image_out = image_io(model)
    probe = with_input_shape(model, image_in.name, input_shape, batch=None)
    probe.graph.node.extend(helper.make_node("Shape", [o], [f"{o}__at_batch_3"]) for o in outputs)
    names = [f"{o}__at_batch_3" for o in outputs]
    del probe.graph.output[:]
    probe.graph.output.extend([helper.make_tensor_value_info(n, onnx.TensorProto.INT64, None) for n in names]
                              + [helper.make_tensor_value_info(image_out.name, image_out.type.tensor_type.elem_type, None)])
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    x = np.random.default_rng(0).random((3, *input_shape), dtype=np.float32)
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        *shapes, together = sess.run(names + [image_out.name], {image_in.name: x})
        alone = np.concatenate([sess.run([image_out.name], {image_in.name: x[i:i + 1]})[0] for i in range(3)])
    except Exception:  # a source whose batch is fixed; ORT's exceptions have no common base class
        return {}
    if together.shape != alone.shape or relative_l2(together, alone) > SOURCE_BATCHES:
        return {}
    return {o: tuple(int(d) for d in shape) for o, shape in zip(outputs, shapes)}


def static_shapes(model, data_nodes, protos, input_name, input_shape, data):
    """Static batch-1 shapes and types of every data tensor (shape inference, ORT as fallback)."""
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    del folded.graph.node[:]
    folded.graph.node.extend(data_nodes)
    del folded.graph.initializer[:]
    folded.graph.initializer.extend(protos.values())
    del folded.graph.value_info[:]
    types = inferred_types(folded)
    shapes, dtypes, missing = {}, {}, []
    for name in sorted(t for t in data if t):
        t = types.get(name)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim] \
            if t is not None and t.tensor_type.HasField("shape") else None
        if dims is None or any(d is None for d in dims) or not t.tensor_type.elem_type:
            missing.append(name)
            continue
        shapes[name], dtypes[name] = tuple(dims), t.tensor_type.elem_type
    for start in range(0, len(missing), 64):  # ORT as a fallback, in groups to bound memory
        group = [m for m in missing[start:start + 64] if m in types and types[m].tensor_type.elem_type]
        if len(group) < len(missing[start:start + 64]):
            unknown = [m for m in missing[start:start + 64] if m not in group]
            raise ModelError(f"cannot determine the type of tensor(s) {', '.join(unknown[:5])}")
        for name, value in run_for(folded, group, input_name, input_shape, types).items():
            shapes[name], dtypes[name] = tuple(value.shape), types[name].tensor_type.elem_type
    shapes[input_name], dtypes[input_name] = (1, *input_shape), onnx.TensorProto.FLOAT
    return shapes, dtypes


# ---- keeping the batch dynamic ----------------------------------------------------------------
def follow_batch(graph: ForwardGraph, data: set[str], at_batch_3: dict[str, np.ndarray] | None = None) -> None:
    """Rewrite folded shape arguments that fixed the batch to 1 so any batch N runs, and record
    which axis of every data tensor carries the batch (``graph.batch_axes``, for the rules).
    ``at_batch_3``: output shapes of Reshapes at batch 3, where known."""
    at_batch_3 = at_batch_3 or {}
    axes = {graph.input_name: 0}
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.nodes:
        if node.op_type == "Gather" and gathers_batch_axis(graph, node, axes):
            new_nodes += per_item_gather(graph, node, axes)
            continue
        axis = batch_axis(graph, node, axes, data)
        if node.op_type == "Reshape":
            axis = tripled_axis(graph.shapes[node.output[0]], at_batch_3.get(node.output[0]), axis)
        axes.update({o: axis for o in node.output if o})
        if node.op_type == "Reshape" and node.input[1] not in data:
            out_shape = list(graph.shapes[node.output[0]])
            out_shape[axis] = -1
            name = f"{node.output[0]}__batch_shape"
            add_constant(graph, name, np.array(out_shape, np.int64))
            node = copy_with_input(node, 1, name)
        elif node.op_type == "Expand" and node.input[1] not in data:
            node = batch_expand(graph, node, axes[node.input[0]], axis)
        elif (node.op_type == "Resize" and len(node.input) > 3 and node.input[3] and node.input[3] not in data
              and not any(a.name == "axes" for a in node.attribute)):
            new_nodes += batch_sized(graph, node)
            node = copy_with_input(node, 3, f"{node.output[0]}__batch_sizes")
        elif node.op_type in BATCHED_OPERANDS:
            new_nodes, node = tile_constant_operands(graph, node, data, axis, new_nodes)
        new_nodes.append(node)
    graph.nodes = new_nodes
    graph.batch_axes.update(axes)


def tripled_axis(out_shape, at_3, default: int) -> int:
    """The one axis of a Reshape's output that triples from batch 1 to batch 3, else ``default``."""
    if at_3 is None or len(out_shape) != len(at_3):
        return default
    changed = [k for k, (a, b) in enumerate(zip(out_shape, at_3)) if a != b]
    if len(changed) == 1 and at_3[changed[0]] == 3 * out_shape[changed[0]]:
        return changed[0]
    return default


def batch_expand(graph: ForwardGraph, node: onnx.NodeProto, in_axis: int, out_axis: int) -> onnx.NodeProto:
    """Expand to a folded shape whose batch entry is the input's batch-1 size (F.normalize's
    Expand(norm, Shape(x)) with windows x batch on one axis): a 1 there keeps the runtime size.
    An entry that broadcasts the batch axis is left; the batch probe reports it."""
    if node.input[1] not in graph.values:
        return node
    shape = np.array(graph.values[node.input[1]], np.int64)
    k = out_axis - (len(graph.shapes[node.output[0]]) - len(shape))
    if k < 0 or shape[k] == 1 or shape[k] != graph.shapes[node.input[0]][in_axis]:
        return node
    shape[k] = 1
    name = f"{node.output[0]}__batch_shape"
    add_constant(graph, name, shape)
    return copy_with_input(node, 1, name)


def gathers_batch_axis(graph: ForwardGraph, node: onnx.NodeProto, axes: dict[str, int]) -> bool:
    """A Gather with folded (non-scalar) indices along the axis that carries the batch."""
    x, indices = node.input[0], node.input[1]
    if x not in axes or indices not in graph.values or np.ndim(graph.values[indices]) == 0:
        return False
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
    return int(axis) % len(graph.shapes[x]) == axes[x]


def per_item_gather(graph: ForwardGraph, node: onnx.NodeProto, axes: dict[str, int]) -> list[onnx.NodeProto]:
    """A Gather along the axis that carries the batch (the dynamo exporter's as_strided: a flat
    [N*M] view indexed by constants folded at batch 1) reads item 0 only at batch N. Split the
    axis into (N, M), gather each item's own entries, and merge N back in front."""
    x, out = node.input[0], node.output[0]
    axis, in_shape, out_shape = axes[x], list(graph.shapes[x]), list(graph.shapes[out])
    size = in_shape[axis]
    indices = np.asarray(graph.values[node.input[1]], np.int64) % size
    items, picked = f"{out}__items", f"{out}__per_item"
    for name, value in ((f"{items}__shape", in_shape[:axis] + [-1, size] + in_shape[axis + 1:]),
                        (f"{out}__indices", indices), (f"{out}__shape", out_shape[:axis] + [-1] + out_shape[axis + 1:])):
        add_constant(graph, name, np.asarray(value, np.int64))
    graph.shapes[items] = tuple(in_shape[:axis] + [1, size] + in_shape[axis + 1:])
    graph.shapes[picked] = tuple(in_shape[:axis] + [1, *indices.shape] + in_shape[axis + 1:])
    for name in (items, picked, out):
        graph.dtypes[name], axes[name] = graph.dtypes[x], axis
    return [helper.make_node("Reshape", [x, f"{items}__shape"], [items], name=f"{node.name}__items"),
            helper.make_node("Gather", [items, f"{out}__indices"], [picked], name=node.name, axis=axis + 1),
            helper.make_node("Reshape", [picked, f"{out}__shape"], [out], name=f"{node.name}__merge")]


def batch_axis(graph: ForwardGraph, node: onnx.NodeProto, axes: dict[str, int], data: set[str]) -> int:
    """Which axis of the node's output carries the batch, given where its data input has it."""
    source = next((i for i in node.input if i in axes), None)
    if source is None or not node.output or node.output[0] not in graph.shapes:
        return 0
    axis, in_shape, out_shape = axes[source], graph.shapes[source], graph.shapes[node.output[0]]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Transpose":
        perm = list(attrs.get("perm", reversed(range(len(in_shape)))))
        return perm.index(axis)
    if node.op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
        return matching_axis(in_shape, axis, out_shape)
    if node.op_type in ("Gather", "GatherND") and source == node.input[0]:
        idx = graph.values.get(node.input[1])
        ndim = idx.ndim if idx is not None else 1
        if node.op_type == "Gather":
            gathered = int(attrs.get("axis", 0)) % len(in_shape)
            return axis + ndim - 1 if gathered < axis else axis
        k = idx.shape[-1] if idx is not None else 0
        return axis - k + ndim - 1 if axis >= k else 0
    return max(axis + len(out_shape) - len(in_shape), 0)


def matching_axis(in_shape, axis: int, out_shape) -> int:
    """The output axis that starts where the batch axis started (same element count before it).

    The runtime batch is the outermost factor of its axis, so when a reshape splits that axis the
    batch goes to the first piece, and when it merges axes the batch leads the merged one.
    """
    before = int(np.prod(in_shape[:axis]))
    count = 1
    for j, d in enumerate(out_shape):
        if count == before:
            return j
        count *= d
    return 0


def pixel_shuffles_as_convolutions(graph: ForwardGraph) -> None:
    """DepthToSpace (CRD, PyTorch's PixelShuffle) -> ConvTranspose with one-hot r x r kernels.

    The same values exactly (each output is one input times 1.0), but ONNX Runtime runs
    DepthToSpace on one thread and ConvTranspose on all: 1.1-1.2x on whole attribution graphs of
    EDSR, RCAN, SAN and SwinIR (bench/RESULTS.md). Its adjoint is then the one-hot Conv.
    """
    for k, node in enumerate(graph.nodes):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "DepthToSpace" or attrs.get("mode", b"DCR") not in (b"CRD", "CRD"):
            continue
        r, channels = int(attrs["blocksize"]), graph.shapes[node.output[0]][1]
        name = f"{node.output[0]}__shuffle_kernels"
        add_constant(graph, name, one_hot_kernels(channels, r, r))
        graph.nodes[k] = helper.make_node("ConvTranspose", [node.input[0], name], list(node.output),
                                          name=node.name, kernel_shape=[r, r], strides=[r, r], group=channels)


def add_constant(graph: ForwardGraph, name: str, value: np.ndarray) -> None:
    graph.initializers.append(numpy_helper.from_array(value, name))
    graph.values[name], graph.shapes[name] = value, value.shape
    graph.dtypes[name] = helper.np_dtype_to_tensor_dtype(value.dtype)


def copy_with_input(node: onnx.NodeProto, index: int, name: str) -> onnx.NodeProto:
    new = onnx.NodeProto()
    new.CopyFrom(node)
    new.input[index] = name
    return new


def batch_shape_nodes(graph: ForwardGraph, like: str, rest: list[int], out: str,
                      before: list[int] = ()) -> list[onnx.NodeProto]:
    """``out`` = [*before, runtime size of ``like``'s first axis, *rest] as int64."""
    first, head, tail = f"{out}__n", f"{out}__before", f"{out}__rest"
    add_constant(graph, head, np.array(before, np.int64))
    add_constant(graph, tail, np.array(rest, np.int64))
    add_constant(graph, f"{out}__0", np.array([0], np.int64))
    add_constant(graph, f"{out}__1", np.array([1], np.int64))
    return [helper.make_node("Shape", [like], [f"{out}__shape"]),
            helper.make_node("Slice", [f"{out}__shape", f"{out}__0", f"{out}__1"], [first]),
            helper.make_node("Concat", [head, first, tail], [out], axis=0)]


def batch_sized(graph: ForwardGraph, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Resize sizes as [runtime batch, *static rest]; rules still read the batch-1 value."""
    sizes = np.asarray(graph.values[node.input[3]], np.int64)
    name = f"{node.output[0]}__batch_sizes"
    nodes = batch_shape_nodes(graph, node.input[0], [int(s) for s in sizes[1:]], name)
    graph.values[name], graph.shapes[name], graph.dtypes[name] = sizes, sizes.shape, onnx.TensorProto.INT64
    return nodes


def tile_constant_operands(graph: ForwardGraph, node: onnx.NodeProto, data: set[str], axis: int, new_nodes):
    """A folded operand that lines up with the image data along the batch axis (a zero codebook
    one-hot that ScatterElements fills, a batch-1 tensor concatenated with image data, a per-window
    constant added to windows x batch) was made for one item: repeat it once per runtime item."""
    out_shape = graph.shapes[node.output[0]]
    if node.op_type == "MatMul" and axis >= len(out_shape) - 2:  # a weight matrix, not stacked items
        return new_nodes, node
    if node.op_type == "Concat":
        concat_axis = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "axis")
        if int(concat_axis) % len(out_shape) == axis:
            return new_nodes, node
    node = copy_with_input(node, 0, node.input[0])
    for k, name in enumerate(list(node.input)):
        shape = graph.shapes.get(name)
        if (not name or name in data or shape is None or len(shape) != len(out_shape)
                or shape[axis] != out_shape[axis] or (shape[axis] == 1 and node.op_type in BROADCASTING)):
            continue
        target = f"{node.output[0]}__tiled{k}"
        repeats = f"{target}__repeats"  # [1, .., N, .., 1]: N, the path's batch, on the batch axis
        new_nodes += batch_shape_nodes(graph, graph.input_name, [1] * (len(shape) - axis - 1), repeats,
                                       before=[1] * axis)
        new_nodes.append(helper.make_node("Tile", [name, repeats], [target], name=target))
        graph.shapes[target], graph.dtypes[target] = shape, graph.dtypes[name]
        graph.batch_axes[target] = axis  # one copy per item: the reverse pass of K windows tiles it
        if name in graph.values:  # rules read the batch-1 value
            graph.values[target] = graph.values[name]
        node.input[k] = target
    return new_nodes, node
