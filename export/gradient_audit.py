"""Where the exact derivative of the exported graph differs from what a framework would give.

ONNX has no stop-gradient: torch's exporters drop ``.detach()``, so a vector quantiser's
straight-through estimator ``z + (q - z).detach()`` arrives as ``Add(z, Sub(q, z))``, whose exact
derivative is 0 through the codebook lookup (q is chosen by an ArgMin and is piecewise constant
in z), where torch's autograd gives the identity. More generally, any selection by ArgMin,
ArgMax or TopK indices that feeds the output cuts the gradient to the scores it was chosen by.

``audit`` finds both on the specialised forward graph (only nodes that depend on the image) and
says so by node name. ``straight_through_rules`` gives the user the framework's map instead: the
``Sub(q, z)`` of each such pattern passes no gradient, so the reverse pass of ``z + (q - z)`` is
the identity, exactly torch's gradient with the ``.detach()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import onnx

SELECTIONS = {"ArgMin": 0, "ArgMax": 0, "TopK": 1}  # op -> output holding indices


@dataclass
class StraightThrough:
    """``add`` computes z + (q - z) with ``sub`` = q - z, q picked by ``selections``."""

    add: str
    sub: str
    selections: list[str]


@dataclass
class GradientAudit:
    selections: list[str] = field(default_factory=list)  # "ArgMin 'name'" whose indices reach the output
    straight_through: list[StraightThrough] = field(default_factory=list)

    def warnings(self, straight_through_applied: bool = False) -> list[str]:
        out = []
        if self.straight_through and straight_through_applied:
            out.append(f"straight-through estimator applied at {_names(s.add for s in self.straight_through)}: "
                       "the reverse pass of z + (q - z) is the identity (torch's gradient with .detach()), "
                       "not the exported function's exact derivative")
        elif self.straight_through:
            out.append(f"{_names(s.add for s in self.straight_through)} compute z + (q - z) with q picked by "
                       f"{_names(x for s in self.straight_through for x in s.selections)}: a straight-through "
                       "estimator whose .detach() the ONNX export dropped; this map is the exact derivative "
                       "of the exported function (zero through the quantiser), torch's autograd gives the "
                       "identity there: pass --straight-through for that map")
        cut = [s for s in self.selections if not any(s in t.selections for t in self.straight_through)]
        if cut:
            out.append(f"the gradient does not flow through the selection made by {_names(cut)} (indices of a "
                       "data-dependent choice: piecewise constant, so its exact derivative is zero); a "
                       "framework's soft or straight-through estimator would differ there")
        return out


def _names(items: Iterable[str]) -> str:
    unique = list(dict.fromkeys(items))
    shown = ", ".join(f"'{n}'" if "'" not in n else n for n in unique[:4])
    return shown + (f" and {len(unique) - 4} more" if len(unique) > 4 else "")


def audit(nodes: list[onnx.NodeProto], output: str) -> GradientAudit:
    """Selections whose indices reach ``output``, and straight-through patterns, in ``nodes``
    (topologically sorted, each depending on the image)."""
    picked_by: dict[str, set[str]] = {}  # tensor -> selections whose indices it depends on
    producer: dict[str, onnx.NodeProto] = {}
    for node in nodes:
        found = set().union(*(picked_by.get(i, set()) for i in node.input if i))
        if node.op_type in SELECTIONS:
            index_output = node.output[SELECTIONS[node.op_type]] if len(node.output) > SELECTIONS[node.op_type] else ""
            if index_output:
                picked_by[index_output] = found | {f"{node.op_type} '{node.name or index_output}'"}
            found = set()  # TopK values and the scores themselves stay differentiable
        for out in node.output:
            producer[out] = node
            if found and out not in picked_by:
                picked_by[out] = found
    result = GradientAudit(selections=sorted(picked_by.get(output, set())))
    for node in nodes:
        pattern = _straight_through(node, producer)
        if pattern is not None:
            sub, z, q = pattern
            if picked_by.get(q):
                result.straight_through.append(StraightThrough(node.name or node.output[0], sub.name or sub.output[0],
                                                               sorted(picked_by[q])))
    return result


def _straight_through(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto]):
    """(sub node, z, q) when ``node`` is Add(z, Sub(q, z)) in either operand order."""
    if node.op_type != "Add":
        return None
    for z, d in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        sub = producer.get(d)
        if sub is not None and sub.op_type == "Sub" and sub.input[1] == z:
            return sub, z, sub.input[0]
    return None


def _stop_gradient(b, node, grads, needs) -> list:
    """No gradient to any input: the ``.detach()`` the export dropped."""
    return [None] * len(node.inputs)


def straight_through_rules(found: GradientAudit) -> dict[str, Callable]:
    """Rule overrides (node name -> rule) that make each straight-through pattern's reverse pass the
    identity, as torch's autograd has it."""
    return {s.sub: _stop_gradient for s in found.straight_through}
