"""Reverse-mode differentiation over ONNX nodes: walk the nodes backwards, apply each op's rule."""
from __future__ import annotations

from typing import Iterable, Optional

import onnx

from lam_trt.errors import UnsupportedOpError
from lam_trt.export.builder import Broadcast, GraphBuilder, Node, Placed
from lam_trt.export.vjp.shape import pad_axis
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


def total(b: GraphBuilder, parts: Optional[list[str]], grads: dict[str, str], name: str,
          keep_broadcast: bool = False) -> Optional[str]:
    """Sum the gradient contributions of one tensor (once) and remember it. Lazy parts stay cheap:
    ``Placed`` blocks that tile the tensor are concatenated, ``Broadcast`` parts ride on Sum's
    broadcasting, and either is materialised only when nothing else gives the full shape (and,
    for ``Broadcast``, the consuming rule cannot take it as it is: ``keep_broadcast``)."""
    if not parts:
        return grads.get(name)
    placed = [p for p in parts if isinstance(p, Placed)]
    if placed and len(placed) == len(parts) and tiles(placed, b.shape(name)[placed[0].axis]):
        placed.sort(key=lambda p: p.begin)
        grads[name] = placed[0] if len(placed) == 1 else b.op("Concat", *placed, axis=placed[0].axis)
        return grads[name]
    full = [pad_axis(b, p, b.rank(name), p.axis, p.begin, p.end) if isinstance(p, Placed) else p
            for p in parts if not isinstance(p, Broadcast)]
    lazy = [p for p in parts if isinstance(p, Broadcast)]
    if not full and keep_broadcast:
        grads[name] = lazy[0] if len(lazy) == 1 else Broadcast(b.op("Sum", *lazy))
        return grads[name]
    if not full:
        full = [b.op("Expand", lazy.pop(0), b.dyn_shape(name))]
    parts = full + lazy
    grads[name] = parts[0] if len(parts) == 1 else b.op("Sum", *parts)
    return grads[name]


def tiles(blocks: list[Placed], dim: int) -> bool:
    """Whether the blocks cover their axis of length ``dim`` exactly once, edge to edge."""
    ordered = sorted(blocks, key=lambda p: p.begin)
    if len({p.axis for p in ordered}) != 1 or ordered[0].begin != 0 or ordered[-1].end != 0:
        return False
    return all(dim - a.end == c.begin for a, c in zip(ordered, ordered[1:]))
