"""Activations: each rule multiplies the incoming gradient by the local derivative."""
from __future__ import annotations

import math

import numpy as np

from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.crops import pointwise
from lam_trt.export.fields import Field, FieldContext, normalised_over
from lam_trt.export.vjp.registry import crop_rule, field_rule, vjp
from lam_trt.export.vjp.elementwise import mask, unary


@vjp("Relu")
def vjp_relu(b, node, grads, needs):
    """Passes where the output is positive (x > 0, PyTorch's choice at 0). A 0/1 mask times g:
    ONNX Runtime's Where is several times slower than Mul when both branches are tensors."""
    return [b.op("Mul", grads[0], mask(b, "Greater", node.outputs[0], b.const(0.0)))]


@unary("Sigmoid")
def d_sigmoid(b, x, y):
    return b.op("Mul", y, b.op("Sub", b.const(1.0), y))


@unary("Tanh")
def d_tanh(b, x, y):
    return b.op("Sub", b.const(1.0), b.op("Mul", y, y))


@unary("Softplus")
def d_softplus(b, x, y):
    return b.op("Sigmoid", x)


@unary("Softsign")
def d_softsign(b, x, y):
    denom = b.op("Add", b.const(1.0), b.op("Abs", x))
    return b.op("Reciprocal", b.op("Mul", denom, denom))


@unary("Mish")
def d_mish(b, x, y):
    """tanh(sp) + x * sigmoid(x) * (1 - tanh(sp)^2), sp = softplus(x)."""
    t = b.op("Tanh", b.op("Softplus", x))
    sech2 = b.op("Sub", b.const(1.0), b.op("Mul", t, t))
    return b.op("Add", t, b.op("Mul", b.op("Mul", x, b.op("Sigmoid", x)), sech2))


def slope_from_output(b: GraphBuilder, y: str, slope: str) -> str:
    """The local slope of y = x > 0 ? x : slope * x as Clip(Ceil(y), slope, 1) (Min/Max per
    channel), read from the output so that the Conv before it keeps its fused activation. Valid for
    constant slopes in [0, 1], where y > 0 exactly when x > 0: bit for bit Where(x > 0, 1, slope),
    denormals and x = 0 included, at a third of the cost of Greater + Where in ONNX Runtime."""
    if b.value(slope).size == 1:
        return b.op("Clip", b.op("Ceil", y), b.const(float(b.value(slope).reshape(()))), b.const(1.0))
    return b.op("Max", b.op("Min", b.op("Ceil", y), b.const(1.0)), slope)


def slope_from_input(b: GraphBuilder, x: str, slope: str) -> str:
    """The same for any slope: m + (1 - m) * slope with m = Clip(Ceil(x), 0, 1), the exact 0/1 step
    of x > 0 (so 1 + 0 * slope or 0 + 1 * slope, no rounding); still ~2.5x cheaper than the Where."""
    step = b.op("Clip", b.op("Ceil", x), b.const(0.0), b.const(1.0))
    return b.op("Add", step, b.op("Mul", b.op("Sub", b.const(1.0), step), slope))


def slope_in_unit_interval(b: GraphBuilder, slope: str) -> bool:
    return b.has_value(slope) and bool(np.all((b.value(slope) >= 0) & (b.value(slope) <= 1)))


def leaky_slope(b: GraphBuilder, node: Node, slope: str) -> str:
    x, y = node.inputs[0], node.outputs[0]
    return slope_from_output(b, y, slope) if slope_in_unit_interval(b, slope) else slope_from_input(b, x, slope)


@vjp("LeakyRelu")
def vjp_leaky_relu(b, node, grads, needs):
    return [b.op("Mul", grads[0], leaky_slope(b, node, b.const(float(node.attrs.get("alpha", 0.01)))))]


@vjp("PRelu")
def vjp_prelu(b, node, grads, needs):
    g, (x, slope), out = grads[0], node.inputs, node.outputs[0]
    gs = None
    if needs[1]:
        gs = b.unbroadcast(b.op("Where", b.op("Greater", x, b.const(0.0)), b.const(0.0), b.op("Mul", g, x)),
                           out, slope)
    return [b.op("Mul", g, leaky_slope(b, node, slope)), gs]


@vjp("Elu", "Celu", "Selu")
def vjp_elu(b, node, grads, needs):
    x, op = node.inputs[0], node.op_type
    alpha = float(node.attrs.get("alpha", {"Elu": 1.0, "Celu": 1.0, "Selu": 1.67326319217681884765625}[op]))
    gamma = float(node.attrs.get("gamma", 1.05070102214813232421875)) if op == "Selu" else 1.0
    scaled = x if op != "Celu" else b.op("Div", x, b.const(alpha))
    neg = b.op("Mul", b.const(gamma * (alpha if op != "Celu" else 1.0)), b.op("Exp", scaled))
    local = b.op("Where", b.op("Greater", x, b.const(0.0)), b.const(gamma), neg)
    return [b.op("Mul", grads[0], local)]


@vjp("HardSigmoid")
def vjp_hard_sigmoid(b, node, grads, needs):
    x = node.inputs[0]
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    z = b.op("Add", b.op("Mul", x, b.const(alpha)), b.const(beta))
    inside = b.op("Mul", mask(b, "Greater", z, b.const(0.0)), mask(b, "Less", z, b.const(1.0)))
    return [b.op("Mul", grads[0], b.op("Mul", inside, b.const(alpha)))]


@vjp("HardSwish")
def vjp_hard_swish(b, node, grads, needs):
    """y = x * clip(x/6 + 1/2, 0, 1): 0 below -3, x/3 + 1/2 on [-3, 3], 1 above (PyTorch's rule)."""
    x = node.inputs[0]
    mid = b.op("Add", b.op("Div", x, b.const(3.0)), b.const(0.5))
    local = b.op("Where", b.op("Less", x, b.const(-3.0)), b.const(0.0),
                 b.op("Where", b.op("LessOrEqual", x, b.const(3.0)), mid, b.const(1.0)))
    return [b.op("Mul", grads[0], local)]


@vjp("Gelu")
def vjp_gelu(b, node, grads, needs):
    x = node.inputs[0]
    if node.attrs.get("approximate", "none") == "tanh":
        k, c = math.sqrt(2.0 / math.pi), 0.044715
        x2 = b.op("Mul", x, x)
        inner = b.op("Mul", b.const(k), b.op("Add", x, b.op("Mul", b.const(c), b.op("Mul", x2, x))))
        t = b.op("Tanh", inner)
        dinner = b.op("Mul", b.const(k), b.op("Add", b.const(1.0), b.op("Mul", b.const(3 * c), x2)))
        sech2 = b.op("Sub", b.const(1.0), b.op("Mul", t, t))
        local = b.op("Add", b.op("Mul", b.const(0.5), b.op("Add", b.const(1.0), t)),
                     b.op("Mul", b.op("Mul", b.const(0.5), x), b.op("Mul", sech2, dinner)))
    else:  # Phi(x) + x * phi(x)
        cdf = b.op("Mul", b.const(0.5), b.op("Add", b.const(1.0),
                                             b.op("Erf", b.op("Mul", x, b.const(1 / math.sqrt(2.0))))))
        pdf = b.op("Mul", b.const(1 / math.sqrt(2 * math.pi)),
                   b.op("Exp", b.op("Mul", b.const(-0.5), b.op("Mul", x, x))))
        local = b.op("Add", cdf, b.op("Mul", x, pdf))
    return [b.op("Mul", grads[0], local)]


@vjp("Softmax")
def vjp_softmax(b, node, grads, needs):
    """y * (g - sum(g * y)) along the axis (opset >= 13 semantics; older forms are canonicalised)."""
    g, y = grads[0], node.outputs[0]
    axis = int(node.attrs.get("axis", -1))
    dot = b.reduce_sum(b.op("Mul", g, y), [axis], keepdims=True)
    return [b.op("Mul", y, b.op("Sub", g, dot))]


@vjp("LogSoftmax")
def vjp_log_softmax(b, node, grads, needs):
    g, y = grads[0], node.outputs[0]
    axis = int(node.attrs.get("axis", -1))
    total = b.reduce_sum(g, [axis], keepdims=True)
    return [b.op("Sub", g, b.op("Mul", b.op("Exp", y), total))]


@field_rule("Softmax", "LogSoftmax", "Hardmax")
def softmax_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    """Global where the axis it normalises over spans all positions (non-local attention)."""
    return normalised_over(node, fields, ctx, [node.attrs.get("axis", -1)])


# ---- crops ------------------------------------------------------------------------------------
# Pointwise: a window's crop of the output reads the input's crop (Softmax and LogSoftmax mix a
# whole axis and have no crop rule).
crop_rule("Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Celu", "Selu", "HardSigmoid", "HardSwish",
          "Gelu", "Softplus", "Mish")(pointwise)
