"""Vector-Jacobian rules, one per ONNX op type, in a registry (as HIPS/autograd and JAX keep them).

A rule has the signature ``rule(b, node, grads, needs) -> list[str | None]``:
  b      GraphBuilder: emits nodes, knows static shapes and folded constants
  node   the forward Node (attributes decoded)
  grads  gradient tensor names of the node's outputs (None where nothing flows back)
  needs  for each input, whether its gradient is wanted (it depends on the image)
and returns one gradient name (or None) per input. Rules may assume at least one grad is not None.

A rule that is exact only for some attributes names the others with ``refuses(node, needs)``: a
one-line reason, checked on the user's graph before any work (``autodiff.undifferentiable``).
"""
from __future__ import annotations

from typing import Callable, Optional

from lam_trt.export.builder import GraphBuilder, Node

Rule = Callable[[GraphBuilder, Node, list[Optional[str]], list[bool]], list[Optional[str]]]
Refusal = Callable[[Node, list[bool]], Optional[str]]

REGISTRY: dict[str, Rule] = {}

# Ops whose outputs never carry a gradient: they only read shapes or produce integers/booleans, or
# their output is piecewise constant in the input (zero derivative almost everywhere).
NON_DIFFERENTIABLE: frozenset[str] = frozenset({
    "Shape", "Size", "Constant", "ConstantOfShape", "Range", "Equal", "Not", "And", "Or", "Xor",
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


def supported_op_types() -> set[str]:
    """Every op type lam-trt can put on the gradient path (or pass through as a shape op)."""
    return set(REGISTRY) | set(NON_DIFFERENTIABLE)


# Importing the rule modules fills REGISTRY (one file per op family, as onnx/reference/ops does).
from lam_trt.export.vjp import (  # noqa: E402,F401
    activation, conv, elementwise, linalg, normalization, pool, reduce, resize, shape,
    scatter, sampling, selection, spectral, fold, trig,
)
