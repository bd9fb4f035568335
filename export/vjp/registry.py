"""The tables every op registers its facts in: VJP rule, receptive-field rule, MAC count (see the
package's docstring), and the one list of ops without a gradient. A leaf module: rule modules import
the decorators from here, and the package imports the rule modules to fill the tables."""
from __future__ import annotations

from typing import Callable, Optional

from lam_trt.export.builder import SHAPE_READERS, GraphBuilder, Node
from lam_trt.export.crops import CropRule
from lam_trt.export.fields import FieldRule

Rule = Callable[[GraphBuilder, Node, list[Optional[str]], list[bool]], list[Optional[str]]]
Refusal = Callable[[Node, list[bool]], Optional[str]]
MacCount = Callable[[Node, dict[str, tuple[int, ...]]], int]  # (node, static shapes) -> MACs, 0 if unknown

REGISTRY: dict[str, Rule] = {}
FIELD_RULES: dict[str, FieldRule] = {}  # ops without one keep their inputs' field (receptive_field.py)
MAC_COUNTS: dict[str, MacCount] = {}  # the compute-heavy ops; the rest count 0
CROP_RULES: dict[str, CropRule] = {}  # ops whose reverse pass can run on a window's crop (tail_crop.py)

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


def crop_rule(*op_types: str) -> Callable[[CropRule], CropRule]:
    """Register ``rule`` as the crop rule of each op type (crops.py says what it answers)."""
    return _register(CROP_RULES, op_types)


def _register(table: dict, op_types: tuple[str, ...]) -> Callable:
    def register(fn: Callable) -> Callable:
        table.update(dict.fromkeys(op_types, fn))
        return fn

    return register


def supported_op_types() -> set[str]:
    """Every op type lam-trt can put on the gradient path (or pass through as a shape op)."""
    return set(REGISTRY) | set(NON_DIFFERENTIABLE)
