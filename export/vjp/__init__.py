"""Vector-Jacobian rules, one per ONNX op type, in a registry (as HIPS/autograd and JAX keep them).

A rule has the signature ``rule(b, node, grads, needs) -> list[str | None]``:
  b      GraphBuilder: emits nodes, knows static shapes and folded constants
  node   the forward Node (attributes decoded)
  grads  gradient tensor names of the node's outputs (None where nothing flows back)
  needs  for each input, whether its gradient is wanted (it depends on the image)
and returns one gradient name (or None) per input. Rules may assume at least one grad is not None.

A rule that is exact only for some attributes names the others with ``refuses(node, needs)``: a
one-line reason, checked on the user's graph before any work (``autodiff.undifferentiable``).

Beside its VJP rule each op's other facts register here too (JAX keeps a primitive's rules together):
its receptive-field rule (``field_rule``, fields.py: how the output's field follows from the inputs')
and its multiply-accumulate count (``mac_count``, for ``lam-trt inspect``'s FLOPs).
"""
from __future__ import annotations

from typing import Callable, Optional

from lam_trt.export.builder import SHAPE_READERS, GraphBuilder, Node
from lam_trt.export.fields import FieldRule

Rule = Callable[[GraphBuilder, Node, list[Optional[str]], list[bool]], list[Optional[str]]]
Refusal = Callable[[Node, list[bool]], Optional[str]]
MacCount = Callable[[Node, dict[str, tuple[int, ...]]], int]  # (node, static shapes) -> MACs, 0 if unknown

REGISTRY: dict[str, Rule] = {}
FIELD_RULES: dict[str, FieldRule] = {}  # ops without one keep their inputs' field (receptive_field.py)
MAC_COUNTS: dict[str, MacCount] = {}  # the compute-heavy ops; the rest count 0

# The one list of ops whose outputs never carry a gradient: they only read shapes or produce
# integers/booleans, or their output is piecewise constant in the input (zero derivative almost
# everywhere). ``autodiff.undifferentiable`` checks a graph against it and the rules.
NON_DIFFERENTIABLE: frozenset[str] = SHAPE_READERS | frozenset({
    "Constant", "ConstantOfShape", "Range", "Equal", "Not", "And", "Or", "Xor",
    "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Mod", "IsNaN", "IsInf", "Sign", "Floor",
    "Ceil", "Round", "ArgMax", "ArgMin", "NonZero", "EyeLike",
})


def vjp(*op_types: str, takes_broadcast: bool = False, refuses: Optional[Refusal] = None
        ) -> Callable[[Rule], Rule]:
    """Register ``rule`` for each op type. ``takes_broadcast``: the rule is also right when its
    output gradient is a ``Broadcast`` (only broadcastable to the output's shape), and marks its
    results ``Broadcast`` where they may stay smaller than the inputs, so no Expand is needed.
    ``refuses(node, needs)``: why the rule cannot be exact for this node, or None."""

    def register(rule: Rule) -> Rule:
        rule.takes_broadcast = takes_broadcast
        rule.refuses = refuses
        for op in op_types:
            REGISTRY[op] = rule
        return rule

    return register


def field_rule(*op_types: str) -> Callable[[FieldRule], FieldRule]:
    """Register ``rule`` as the receptive-field rule of each op type."""
    return _register(FIELD_RULES, op_types)


def mac_count(*op_types: str) -> Callable[[MacCount], MacCount]:
    """Register ``count`` as the multiply-accumulate count of each op type."""
    return _register(MAC_COUNTS, op_types)


def _register(table: dict, op_types: tuple[str, ...]) -> Callable:
    def register(fn: Callable) -> Callable:
        table.update(dict.fromkeys(op_types, fn))
        return fn

    return register


def supported_op_types() -> set[str]:
    """Every op type lam-trt can put on the gradient path (or pass through as a shape op)."""
    return set(REGISTRY) | set(NON_DIFFERENTIABLE)


# Importing the rule modules fills REGISTRY (one file per op family, as onnx/reference/ops does).
from lam_trt.export.vjp import (  # noqa: E402,F401
    activation, conv, elementwise, linalg, normalization, pool, reduce, resize, shape,
    scatter, sampling, selection, spectral, fold, trig,
)
