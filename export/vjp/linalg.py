"""Matrix products: MatMul, Gemm and two-operand Einsum."""
from __future__ import annotations

import math
import string
from dataclasses import replace

from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.fields import Field, FieldContext, grow, merge
from lam_trt.export.vjp.registry import field_rule, mac_count, vjp


def swap_last(b: GraphBuilder, x: str) -> str:
    rank = b.rank(x)
    return b.op("Transpose", x, perm=list(range(rank - 2)) + [rank - 1, rank - 2])


@vjp("MatMul")
def vjp_matmul(b, node, grads, needs):
    g, (a, c), out = grads[0], node.inputs, node.outputs[0]
    if b.rank(a) < 2 or b.rank(c) < 2:
        raise NotImplementedError("MatMul with a 1-D operand")
    out_shape = b.shape(out)
    ga = gc = None
    if needs[0]:
        ga = b.unbroadcast_shape(b.op("MatMul", g, swap_last(b, c)),
                                 out_shape[:-1] + b.shape(a)[-1:], a, skip_last=2)
    if needs[1]:
        gc = b.unbroadcast_shape(b.op("MatMul", swap_last(b, a), g),
                                 out_shape[:-2] + b.shape(c)[-2:], c, skip_last=2)
    return [ga, gc]


@vjp("Gemm")
def vjp_gemm(b, node, grads, needs):
    """Y = alpha op(A) op(B) + beta C with op = optional transpose."""
    g, out = grads[0], node.outputs[0]
    a, c = node.inputs[0], node.inputs[1]
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    trans_a, trans_b = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
    g = b.op("Mul", g, b.const(alpha)) if alpha != 1.0 else g
    result: list = [None] * len(node.inputs)
    if needs[0]:  # d op(A) = g op(B)^T
        result[0] = b.op("Gemm", c, g, transA=trans_b, transB=1) if trans_a else \
            b.op("Gemm", g, c, transA=0, transB=1 - trans_b)
    if needs[1]:  # d op(B) = op(A)^T g
        result[1] = b.op("Gemm", g, a, transA=1, transB=trans_a) if trans_b else \
            b.op("Gemm", a, g, transA=1 - trans_a, transB=0)
    if len(needs) > 2 and needs[2]:
        scaled = b.op("Mul", grads[0], b.const(beta))
        result[2] = b.unbroadcast(scaled, out, node.inputs[2])
    return result


def explicit_subscripts(b: GraphBuilder, node: Node) -> tuple[list[str], str]:
    """The equation with '...' replaced by letters, and the output written out if implicit."""
    equation = node.attrs["equation"].replace(" ", "")
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    used = set(equation)
    spare = [ch for ch in string.ascii_letters if ch not in used]
    ell_rank = max((b.rank(x) - (len(t) - 3) for x, t in zip(node.inputs, terms) if "..." in t), default=0)
    ell = "".join(spare[:ell_rank])
    terms = [t.replace("...", ell[ell_rank - (b.rank(x) - (len(t) - 3)):]) if "..." in t else t
             for x, t in zip(node.inputs, terms)]
    if "->" in equation:
        rhs = rhs.replace("...", ell)
    else:
        counts = {ch: "".join(terms).count(ch) for ch in "".join(terms)}
        rhs = ell + "".join(sorted(ch for ch, n in counts.items() if n == 1 and ch not in ell))
    return terms, rhs


@vjp("Einsum")
def vjp_einsum(b, node, grads, needs):
    if len(node.inputs) != 2:
        raise NotImplementedError("Einsum with other than two operands")
    terms, out = explicit_subscripts(b, node)
    result: list = [None, None]
    for i in (0, 1):
        if not needs[i]:
            continue
        mine, other = terms[i], terms[1 - i]
        if len(set(mine)) != len(mine):
            raise NotImplementedError("Einsum with a repeated index in one operand (diagonal)")
        reachable = "".join(ch for ch in mine if ch in out or ch in other)
        gi = b.op("Einsum", grads[0], node.inputs[1 - i], equation=f"{out},{other}->{reachable}")
        if reachable != mine:  # indices summed only inside this operand: broadcast back
            missing = [k for k, ch in enumerate(mine) if ch not in reachable]
            gi = b.op("Expand", b.op("Unsqueeze", gi, b.ints(missing)), b.dyn_shape(node.inputs[i]))
        result[i] = gi
    return result


# ---- receptive field and cost -------------------------------------------------------------------
def inner_size(node: Node, a: tuple[int, ...]) -> int:
    """The summed-over length k of A [.., m, k] (Gemm's A may come transposed)."""
    return a[0] if node.op_type == "Gemm" and node.attrs.get("transA", 0) else a[-1]


@field_rule("MatMul", "Gemm")
def matmul_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    """Global where a product runs over all positions (non-local attention, covariance pooling);
    attention scores inside w x w windows grow the field like a w x w kernel; a per-token linear
    layer keeps it."""
    f = replace(merge(fields[:2]), spatial=False)
    a, b, out = ctx.shape(node.inputs[0]), ctx.shape(node.inputs[1]), ctx.shape(node.outputs[0])
    if a is None or b is None or out is None or len(out) < 2:
        return f
    k, m, n = inner_size(node, a), out[-2], out[-1]
    positions = round(ctx.positions(f))
    spans = lambda x: positions > 1 and x >= positions and x % positions == 0  # noqa: E731
    if fields[0] is not None and fields[1] is not None:
        if spans(k) or spans(m) or spans(n):
            return replace(f, is_global=True)
        window = math.isqrt(m)
        if m == n and k != m and window > 1 and window * window == m:
            return grow(f, (window, window), (1, 1))
        return f
    # one operand is constant: a per-token linear layer, unless it is a square positions x positions mix
    square = (k == n) if fields[0] is not None else (m == k)
    return replace(f, is_global=f.is_global or (square and spans(k)))


@mac_count("MatMul", "Gemm")
def matmul_macs(node: Node, shapes: dict) -> int:
    out, a = shapes.get(node.outputs[0]), shapes.get(node.inputs[0])
    return math.prod(out) * inner_size(node, a) if out and a else 0
