"""Reverse-mode differentiation over ONNX nodes: walk the nodes backwards, apply each op's rule."""
from __future__ import annotations

from typing import Iterable, Optional

import onnx

from lam_trt.errors import UnsupportedOpError
from lam_trt.export.accumulate import total
from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.vjp import NON_DIFFERENTIABLE, REGISTRY, Rule

REAL = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def active_tensors(nodes: list[Node], source: str, target: str, dtypes: dict[str, int]) -> set[str]:
    """Real-valued tensors on some path from ``source`` to ``target``: the ones needing gradients."""
    forward = {source}
    for node in nodes:
        if node.op_type not in NON_DIFFERENTIABLE and any(i in forward for i in node.inputs):
            forward.update(o for o in node.outputs if o and dtypes.get(o, onnx.TensorProto.FLOAT) in REAL)
    backward = {target}
    for node in reversed(nodes):
        if any(o in backward for o in node.outputs):
            backward.update(i for i in node.inputs if i in forward)
    return forward & backward


def unsupported_nodes(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(op type, node) of every op between the model's input and output that has no rule.

    A quick check on the user's graph as it is, so that a missing rule is reported before anything
    is built or run; the full check happens again when the attribution graph is built.
    """
    from lam_trt.export.source import canonicalise, image_io
    from lam_trt.export.specialise import data_tensors

    canonical = canonicalise(model)
    image_in, image_out = image_io(canonical)
    data = data_tensors(canonical.graph, image_in.name)
    nodes = [Node.from_proto(n) for n in canonical.graph.node if any(o in data for o in n.output)]
    reaching = {image_out.name}
    for node in reversed(nodes):
        if any(o in reaching for o in node.outputs):
            reaching.update(node.inputs)
    return [(n.op_type, n.name) for n in nodes if n.op_type not in REGISTRY
            and n.op_type not in NON_DIFFERENTIABLE and any(o in reaching for o in n.outputs)]


def nodes_without_rules(nodes: Iterable[Node], active: set[str]) -> list[tuple[str, str]]:
    return [(n.op_type, n.name) for n in nodes
            if any(o in active for o in n.outputs) and n.op_type not in REGISTRY]


def backpropagate(b: GraphBuilder, nodes: list[Node], active: set[str], seeds: dict[str, str],
                  overrides: dict[str, Rule]) -> dict[str, str]:
    """Gradients of every active tensor given ``seeds`` (tensor -> gradient tensor).

    ``overrides`` maps node names to a rule used instead of the op type's (the detector's sqrt).
    """
    missing = nodes_without_rules(nodes, active)
    if missing:
        raise UnsupportedOpError(missing)
    pending: dict[str, list[str]] = {k: [v] for k, v in seeds.items()}
    grads: dict[str, str] = {}
    for node in reversed(nodes):
        rule = overrides.get(node.name) or REGISTRY.get(node.op_type)
        lazy_ok = getattr(rule, "takes_broadcast", False)
        out_grads = [total(b, pending.pop(o, None), grads, o, lazy_ok) for o in node.outputs]
        if all(g is None for g in out_grads):
            continue
        needs = [i in active for i in node.inputs]
        if not any(needs):
            continue
        try:
            in_grads = rule(b, node, out_grads, needs)
        except NotImplementedError as e:
            raise UnsupportedOpError([(node.op_type, node.name)], str(e)) from None
        for name, need, g in zip(node.inputs, needs, in_grads):
            if need and g is not None:
                pending.setdefault(name, []).append(g)
    for name, parts in pending.items():
        total(b, parts, grads, name)
    return grads
