"""Reverse-mode differentiation over ONNX nodes: walk the nodes backwards, apply each op's rule."""
from __future__ import annotations

from typing import Iterable

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
        if node.op_type not in NON_DIFFERENTIABLE and any(i in forward for i in [*node.inputs, *node.captures]):
            forward.update(o for o in node.outputs if o and dtypes.get(o, onnx.TensorProto.FLOAT) in REAL)
    backward = {target}
    for node in reversed(nodes):
        if any(o in backward for o in node.outputs):
            backward.update(i for i in [*node.inputs, *node.captures] if i in forward)
    return forward & backward


def undifferentiable(nodes: Iterable[Node], active: set[str]) -> list[tuple[str, str, str]]:
    """(op type, node, why) of every node on the gradient path that no rule differentiates exactly:
    the one list both the pre-check and the builder use (REGISTRY, its refusals, NON_DIFFERENTIABLE)."""
    found = []
    for n in nodes:
        if n.op_type in NON_DIFFERENTIABLE or not any(o in active for o in n.outputs):
            continue
        rule = REGISTRY.get(n.op_type)
        if rule is None:
            found.append((n.op_type, n.name, ""))
        elif getattr(rule, "refuses", None):
            why = rule.refuses(n, [i in active for i in n.inputs])
            if why:
                found.append((n.op_type, n.name, why))
    return found


def refuse(found: list[tuple[str, str, str]]) -> None:
    """Raise one UnsupportedOpError naming every node in ``found`` (and the reasons given)."""
    if found:
        refused = [(op, name, why) for op, name, why in found if why]
        reasons = [why for _, _, why in refused] if len(refused) == 1 else \
            [f"{op} ({name}): {why}" for op, name, why in refused]
        raise UnsupportedOpError([(op, name) for op, name, _ in found], "; ".join(reasons))


def unsupported_nodes(model: onnx.ModelProto) -> list[tuple[str, str, str]]:
    """(op type, node, why) of every op between the model's input and output that cannot be
    differentiated exactly: a quick check on the user's graph as it is, so that it is refused before
    anything is built or run, by the same list the builder checks again (``undifferentiable``)."""
    from lam_trt.export.source import canonicalise, image_io
    from lam_trt.export.specialise import data_tensors, inferred_types

    canonical = canonicalise(model)
    image_in, image_out = image_io(canonical)
    data = data_tensors(canonical.graph, image_in.name)
    nodes = [Node.from_proto(n) for n in canonical.graph.node if any(o in data for o in n.output)]
    dtypes = {k: t.tensor_type.elem_type for k, t in inferred_types(canonical).items()
              if t.HasField("tensor_type") and t.tensor_type.elem_type}
    return undifferentiable(nodes, active_tensors(nodes, image_in.name, image_out.name, dtypes))


def check_differentiable(model: onnx.ModelProto) -> None:
    """Raise UnsupportedOpError, one line naming ops, nodes and reasons, if any node is refused."""
    refuse(unsupported_nodes(model))


def backpropagate(b: GraphBuilder, nodes: list[Node], active: set[str], seeds: dict[str, str],
                  overrides: dict[str, Rule]) -> dict[str, str]:
    """Gradients of every active tensor given ``seeds`` (tensor -> gradient tensor).

    ``overrides`` maps node names to a rule used instead of the op type's (the detector's sqrt).
    """
    refuse(undifferentiable(nodes, active))
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
