"""Arithmetic and elementwise math: Add, Sub, Mul, Div, Pow, Min, Max, Where, Clip, unary maths."""
from __future__ import annotations

import math

import onnx

from lam_trt.export.accumulate import Broadcast
from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.crops import pointwise
from lam_trt.export.vjp.registry import crop_rule, vjp

FLOAT = 1


def mask(b: GraphBuilder, op: str, x: str, y: str) -> str:
    """A float 0/1 tensor for the comparison ``op(x, y)``."""
    return b.op("Cast", b.op(op, x, y), to=FLOAT)


def binary(b: GraphBuilder, node: Node, needs: list[bool], ga: str | None, gb: str | None) -> list:
    """Unbroadcast the two operand gradients of a broadcasting binary op."""
    out = node.outputs[0]
    a, c = node.inputs[0], node.inputs[1]
    return [
        b.unbroadcast(ga, out, a) if needs[0] and ga else None,
        b.unbroadcast(gb, out, c) if needs[1] and gb else None,
    ]


@vjp("Identity", "Dropout")
def vjp_identity(b, node, grads, needs):
    return [grads[0]] + [None] * (len(node.inputs) - 1)


HALF = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}


def refuse_half(node: Node, needs: list[bool]) -> str | None:
    """A gradient through half-precision tensors would keep 8 to 11 significant bits, not float32's 24."""
    half = HALF.get(int(node.attrs.get("to", 0)))
    return f"a Cast to {half} puts half precision on the gradient path; export the model in float32" \
        if half else None


@vjp("Cast", refuses=refuse_half)
def vjp_cast(b, node, grads, needs):
    return [b.op("Cast", grads[0], to=b.dtypes[node.inputs[0]])]


@vjp("Add")
def vjp_add(b, node, grads, needs):
    return binary(b, node, needs, grads[0], grads[0])


@vjp("Sub")
def vjp_sub(b, node, grads, needs):
    return binary(b, node, needs, grads[0], b.op("Neg", grads[0]) if needs[1] else None)


@vjp("Mul")
def vjp_mul(b, node, grads, needs):
    g, (x, y) = grads[0], node.inputs
    return binary(b, node, needs, b.op("Mul", g, y) if needs[0] else None,
                  b.op("Mul", g, x) if needs[1] else None)


@vjp("Div")
def vjp_div(b, node, grads, needs):
    g, (x, y), out = grads[0], node.inputs, node.outputs[0]
    gx = b.op("Div", g, y) if needs[0] else None
    gy = b.op("Neg", b.op("Div", b.op("Mul", g, out), y)) if needs[1] else None
    return binary(b, node, needs, gx, gy)


@vjp("Pow", takes_broadcast=True)
def vjp_pow(b, node, grads, needs):
    """A ``Broadcast`` g (a variance's sum) is multiplied in as it is: Mul broadcasts it against
    the full-shaped derivative; only a constant derivative (p = 1) leaves the product lazy."""
    g, (x, p), out = grads[0], node.inputs, node.outputs[0]
    gx = gp = None
    if needs[0]:
        derivative = pow_derivative(b, x, p, out)
        gx = b.op("Mul", g, derivative)
        if isinstance(g, Broadcast) and b.has_value(derivative):
            gx = Broadcast(gx)
    if needs[1]:
        gp = b.op("Mul", g, b.op("Mul", out, b.op("Log", x)))
    return binary(b, node, needs, gx, gp)


def pow_derivative(b: GraphBuilder, x: str, p: str, out: str) -> str:
    """p * x^(p-1); the exponents exporters emit (2 for variances, 0.5 for norms) without Pow,
    which is slow in ONNX Runtime. x^(p-1), not y / x, so that x = 0 behaves like PyTorch."""
    if b.has_value(p) and b.value(p).size == 1:
        exponent = float(b.value(p).reshape(()))
        if exponent == 1.0:
            return b.const(1.0)
        if exponent == 2.0:
            return b.op("Add", x, x)
        if exponent == 0.5:
            return b.op("Div", b.const(0.5), out)
        return b.op("Mul", b.const(exponent), b.op("Pow", x, b.const(exponent - 1.0)))
    p_f = b.op("Cast", p, to=b.dtypes[x])
    return b.op("Mul", p_f, b.op("Pow", x, b.op("Sub", p_f, b.const(1.0))))


@vjp("Max", "Min")
def vjp_max_min(b, node, grads, needs):
    """Gradient goes to the selected operand; ties share it equally (as PyTorch does)."""
    g, out = grads[0], node.outputs[0]
    if len(node.inputs) != 2:
        raise NotImplementedError(f"{node.op_type} with {len(node.inputs)} operands")
    x, y = node.inputs
    strict = "Greater" if node.op_type == "Max" else "Less"
    tie = b.op("Mul", mask(b, "Equal", x, y), b.const(0.5))
    gx = b.op("Mul", g, b.op("Add", mask(b, strict, x, y), tie)) if needs[0] else None
    gy = b.op("Mul", g, b.op("Add", mask(b, strict, y, x), tie)) if needs[1] else None
    return binary(b, node, needs, gx, gy)


@vjp("Sum")
def vjp_sum(b, node, grads, needs):
    out = node.outputs[0]
    return [b.unbroadcast(grads[0], out, x) if need else None for x, need in zip(node.inputs, needs)]


@vjp("Where")
def vjp_where(b, node, grads, needs):
    g, (cond, x, y), out = grads[0], node.inputs, node.outputs[0]
    zero = b.const(0.0)
    gx = b.unbroadcast(b.op("Where", cond, g, zero), out, x) if needs[1] else None
    gy = b.unbroadcast(b.op("Where", cond, zero, g), out, y) if needs[2] else None
    return [None, gx, gy]


@vjp("Clip")
def vjp_clip(b, node, grads, needs):
    """Passes where min <= x <= max (inclusive, as torch.clamp)."""
    g, x = grads[0], node.inputs[0]
    lo, hi = node.input(1), node.input(2)
    if lo:
        g = b.op("Mul", g, mask(b, "GreaterOrEqual", x, lo))
    if hi:
        g = b.op("Mul", g, mask(b, "LessOrEqual", x, hi))
    return [g] + [None] * (len(node.inputs) - 1)


# ---- unary maths: each rule is "grad times local derivative" ------------------------------------
def unary(op_type: str):
    def register(derivative):
        @vjp(op_type)
        def rule(b, node, grads, needs):
            return [b.op("Mul", grads[0], derivative(b, node.inputs[0], node.outputs[0]))]
        return derivative
    return register


@unary("Neg")
def d_neg(b, x, y):
    return b.const(-1.0)


@unary("Abs")
def d_abs(b, x, y):
    return b.op("Sign", x)


@unary("Exp")
def d_exp(b, x, y):
    return y


@unary("Log")
def d_log(b, x, y):
    return b.op("Reciprocal", x)


@unary("Sqrt")
def d_sqrt(b, x, y):
    return b.op("Div", b.const(0.5), y)


@unary("Reciprocal")
def d_reciprocal(b, x, y):
    return b.op("Neg", b.op("Mul", y, y))


@unary("Erf")
def d_erf(b, x, y):
    return b.op("Mul", b.const(2.0 / math.sqrt(math.pi)), b.op("Exp", b.op("Neg", b.op("Mul", x, x))))


@unary("Sin")
def d_sin(b, x, y):
    return b.op("Cos", x)


@unary("Cos")
def d_cos(b, x, y):
    return b.op("Neg", b.op("Sin", x))


# ---- crops ------------------------------------------------------------------------------------
# Each output value reads the inputs at its own position: a window's crop reads their crops.
crop_rule("Identity", "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Clip", "Where")(pointwise)
