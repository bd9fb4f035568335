"""Random nodes (noise injection: RandomNormal(Like), RandomUniform(Like), Bernoulli, Multinomial).

A random node draws anew on every run, so the map would change from run to run and the gradient
would mix draws. Before specialisation each one is replaced by one fixed draw ("seeded": the
node's own distribution, drawn once by ONNX Runtime from a seed derived from ``seed`` and the
node's position) or by zeros ("zeros": no noise; Bernoulli never fires, Multinomial picks class
0). The replacements depend on the image's shape only, so specialisation folds them into
constants: the attribution graph contains no random op. Draws made at batch 1 broadcast over the
batch, so every path image sees the same noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import TensorProto, helper, numpy_helper
import numpy as np

from lam_trt.errors import InputError

RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                        "Bernoulli", "Multinomial"})
MODES = ("seeded", "zeros")
FIXED = "/lam_fixed_draw"  # name suffix of the seeded draws that replace a node: never replaced again


@dataclass(frozen=True)
class RandomOpsPolicy:
    """How random nodes are made deterministic: ``mode`` is "seeded" or "zeros"."""

    mode: str = "seeded"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"--random-ops must be one of {', '.join(MODES)}, got {self.mode!r}")


@dataclass
class RandomOpsReport:
    """What was replaced (node names, in graph order), for stderr and the result."""

    mode: str
    seed: int
    nodes: list[str] = field(default_factory=list)

    def message(self) -> str:
        what = f"one fixed draw (seed {self.seed})" if self.mode == "seeded" else "zeros"
        names = ", ".join(self.nodes[:5]) + (", ..." if len(self.nodes) > 5 else "")
        return (f"{len(self.nodes)} random node(s) ({names}) replaced by {what}: the map is that of the "
                f"network with this noise fixed (--random-ops seeded|zeros, --seed)")

    def to_dict(self) -> dict:
        return {"mode": self.mode, "seed": self.seed, "nodes": list(self.nodes)}


def fix_random_ops(model: onnx.ModelProto, policy: RandomOpsPolicy) -> RandomOpsReport:
    """Replace, in place, every random node of ``model``'s main graph; report what was replaced."""
    nodes = list(model.graph.node)
    report = fix_random_ops_in(nodes, policy)
    if report.nodes:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return report


def fix_random_ops_in(nodes: list[onnx.NodeProto], policy: RandomOpsPolicy = RandomOpsPolicy()) -> RandomOpsReport:
    """Replace, in the list ``nodes``, every random node; report what was replaced."""
    report = RandomOpsReport(policy.mode, policy.seed)
    fixed: list[onnx.NodeProto] = []
    for index, node in enumerate(nodes):
        if node.op_type not in RANDOM_OPS or node.name.endswith(FIXED):
            fixed.append(node)
            continue
        name = node.name or f"{node.op_type}_{index}"
        unique = name if name not in report.nodes else f"{name}_{index}"  # exporters may repeat names
        report.nodes.append(name)
        fixed.extend(_replacement(node, unique, policy.mode, float(policy.seed * 100_003 + index)))
    nodes[:] = fixed
    return report


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _replacement(node: onnx.NodeProto, name: str, mode: str, seed: float) -> list[onnx.NodeProto]:
    attrs = _attrs(node)
    out = node.output[0]
    tmp = lambda suffix: f"{out}__lam_{suffix}"  # noqa: E731 - names local to this replacement
    if node.op_type in ("RandomNormal", "RandomUniform"):
        return [_static_draw(node.op_type, attrs, out, name, mode, seed)]
    if node.op_type in ("RandomNormalLike", "RandomUniformLike"):
        dtype = attrs.pop("dtype", TensorProto.FLOAT)
        shaped = _zeros_like(node.input[0], tmp("shape"), tmp("zeros"), dtype, name)
        if mode == "zeros":
            return shaped[:-1] + [_renamed(shaped[-1], out)]
        attrs.pop("seed", None)
        return shaped + [helper.make_node(node.op_type, [tmp("zeros")], [out], name=name + FIXED, seed=seed, **attrs)]
    if node.op_type == "Bernoulli":  # y = (u < p) with one fixed uniform draw u
        dtype = attrs.get("dtype", TensorProto.FLOAT)
        shaped = _zeros_like(node.input[0], tmp("shape"), tmp("zeros"), TensorProto.FLOAT, name)
        if mode == "zeros":
            return shaped[:-1] + [_renamed(shaped[-1], out, dtype)]
        return shaped + [
            helper.make_node("RandomUniformLike", [tmp("zeros")], [tmp("u")], name=name + FIXED, seed=seed),
            helper.make_node("Less", [tmp("u"), node.input[0]], [tmp("less")], name=f"{name}/less"),
            helper.make_node("Cast", [tmp("less")], [out], name=name, to=dtype),
        ]
    return _multinomial(node, attrs, name, mode, seed, tmp)


def _static_draw(op: str, attrs: dict, out: str, name: str, mode: str, seed: float) -> onnx.NodeProto:
    """RandomNormal/RandomUniform have a static shape: draw once here, with NumPy."""
    shape = tuple(int(d) for d in attrs["shape"])
    dtype = helper.tensor_dtype_to_np_dtype(attrs.get("dtype", TensorProto.FLOAT))
    rng = np.random.default_rng(int(seed))
    if mode == "zeros":
        value = np.zeros(shape)
    elif op == "RandomNormal":
        value = rng.normal(attrs.get("mean", 0.0), attrs.get("scale", 1.0), shape)
    else:
        value = rng.uniform(attrs.get("low", 0.0), attrs.get("high", 1.0), shape)
    return helper.make_node("Constant", [], [out], name=name, value=numpy_helper.from_array(value.astype(dtype)))


def _zeros_like(source: str, shape: str, zeros: str, dtype: int, name: str) -> list[onnx.NodeProto]:
    """Zeros of ``source``'s shape: they depend on the image's shape only, never on its values."""
    return [
        helper.make_node("Shape", [source], [shape], name=f"{name}/shape"),
        helper.make_node("ConstantOfShape", [shape], [zeros], name=f"{name}/zeros",
                         value=helper.make_tensor("value", dtype, [1], [0])),
    ]


def _renamed(node: onnx.NodeProto, out: str, dtype: int | None = None) -> onnx.NodeProto:
    """The ConstantOfShape ``node`` writing ``out`` directly (with ``dtype`` zeros if given)."""
    attrs = _attrs(node)
    if dtype is not None:
        attrs["value"] = helper.make_tensor("value", dtype, [1], [0])
    return helper.make_node(node.op_type, list(node.input), [out], name=node.name, **attrs)


def _multinomial(node, attrs, name, mode, seed, tmp) -> list[onnx.NodeProto]:
    """Multinomial(logits [B, K]) -> [B, sample_size]: Gumbel-max with one fixed draw, or class 0."""
    samples = int(attrs.get("sample_size", 1))
    dtype = attrs.get("dtype", TensorProto.INT32)
    logits = node.input[0]
    ints = lambda n, v: helper.make_node("Constant", [], [n], value=numpy_helper.from_array(  # noqa: E731
        np.array(v, np.int64)))
    nodes = [helper.make_node("Shape", [logits], [tmp("shape")], name=f"{name}/shape"),
             ints(tmp("first"), [0]), ints(tmp("one"), [1]), ints(tmp("two"), [2]), ints(tmp("s"), [samples])]
    if mode == "zeros":
        return nodes + [
            helper.make_node("Slice", [tmp("shape"), tmp("first"), tmp("one")], [tmp("b")], name=f"{name}/b"),
            helper.make_node("Concat", [tmp("b"), tmp("s")], [tmp("out_shape")], axis=0, name=f"{name}/os"),
            helper.make_node("ConstantOfShape", [tmp("out_shape")], [node.output[0]], name=name,
                             value=helper.make_tensor("value", dtype, [1], [0])),
        ]
    return nodes + [  # u [1, s, K] fixed; argmax_k(logits_k + Gumbel(u)) samples softmax(logits)
        helper.make_node("Slice", [tmp("shape"), tmp("one"), tmp("two")], [tmp("k")], name=f"{name}/k"),
        helper.make_node("Concat", [tmp("one"), tmp("s"), tmp("k")], [tmp("u_shape")], axis=0, name=f"{name}/us"),
        helper.make_node("ConstantOfShape", [tmp("u_shape")], [tmp("zeros")], name=f"{name}/zeros",
                         value=helper.make_tensor("value", TensorProto.FLOAT, [1], [0])),
        helper.make_node("RandomUniformLike", [tmp("zeros")], [tmp("u")], name=name + FIXED, seed=seed,
                         low=1e-12, high=1.0),
        helper.make_node("Log", [tmp("u")], [tmp("log_u")], name=f"{name}/log_u"),
        helper.make_node("Neg", [tmp("log_u")], [tmp("neg_log_u")], name=f"{name}/neg"),
        helper.make_node("Log", [tmp("neg_log_u")], [tmp("gumbel_neg")], name=f"{name}/log2"),
        helper.make_node("Unsqueeze", [logits, tmp("one")], [tmp("logits3")], name=f"{name}/unsq"),
        helper.make_node("Sub", [tmp("logits3"), tmp("gumbel_neg")], [tmp("scores")], name=f"{name}/scores"),
        helper.make_node("ArgMax", [tmp("scores")], [tmp("argmax")], axis=2, keepdims=0, name=f"{name}/argmax"),
        helper.make_node("Cast", [tmp("argmax")], [node.output[0]], name=name, to=dtype),
    ]


def with_fixed_random_ops(model: onnx.ModelProto, policy: RandomOpsPolicy) -> tuple[onnx.ModelProto, RandomOpsReport]:
    """``model`` itself when it has no random node, else a copy with them replaced."""
    if not any(n.op_type in RANDOM_OPS and not n.name.endswith(FIXED) for n in model.graph.node):
        return model, RandomOpsReport(policy.mode, policy.seed)
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    return fixed, fix_random_ops(fixed, policy)
