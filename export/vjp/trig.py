"""Trigonometric functions beyond Sin and Cos (HVICIDNet's colour space: Atan)."""
from __future__ import annotations

from lam_trt.export.vjp.elementwise import unary


def one_over(b, value):
    return b.op("Reciprocal", value)


@unary("Atan")
def d_atan(b, x, y):  # 1 / (1 + x^2)
    return one_over(b, b.op("Add", b.const(1.0), b.op("Mul", x, x)))


@unary("Tan")
def d_tan(b, x, y):  # 1 + tan(x)^2
    return b.op("Add", b.const(1.0), b.op("Mul", y, y))


@unary("Asin")
def d_asin(b, x, y):  # 1 / sqrt(1 - x^2)
    return one_over(b, b.op("Sqrt", b.op("Sub", b.const(1.0), b.op("Mul", x, x))))


@unary("Acos")
def d_acos(b, x, y):  # -1 / sqrt(1 - x^2)
    return b.op("Neg", d_asin(b, x, y))
