"""DFT (opset 17 form: axis attribute; opset 20: axis input), the adjoint of each of its four kinds.

Complex tensors carry (real, imaginary) on a last axis of 2, real ones a last axis of 1. With
F the unnormalised DFT matrix of length L (F^H = L * inverse DFT):
  forward, full:      y = F x            ->  x_bar = L * IDFT(y_bar)
  forward, onesided:  y = (F x)[:L//2+1] ->  x_bar = Re(L * IDFT(y_bar zero-padded to L))
  inverse, full:      y = F^H x / L      ->  x_bar = DFT(y_bar) / L
  inverse, onesided:  y = irfft(x, L)    ->  x_bar = rfft(y_bar, L) * c_k / L, c_k = 2 except for
                      the zero and (even L) Nyquist bins (c_k = 1), whose imaginary parts y ignores
then the real part for a real input, and undo the zero-padding / truncation to dft_length.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.vjp.registry import vjp
from lam_trt.export.vjp.shape import slice_axis


def dft_axis(b: GraphBuilder, node: Node) -> int:
    rank = b.rank(node.inputs[0])
    if b.opset >= 20:
        axis = int(b.value(node.input(2))) if node.input(2) else -2
    else:
        axis = int(node.attrs.get("axis", 1))
    return axis % rank


def dft(b: GraphBuilder, x: str, axis: int, inverse: bool, onesided: bool, length: Optional[int] = None) -> str:
    """A DFT node in the form this opset takes."""
    n = b.const(length, np.int64) if length is not None else ""
    flags = dict(inverse=int(inverse), onesided=int(onesided))
    if b.opset >= 20:
        return b.op("DFT", x, n, b.const(axis, np.int64), **flags)
    return b.op("DFT", x, n, axis=axis, **flags) if n else b.op("DFT", x, axis=axis, **flags)


def fit_axis(b: GraphBuilder, x: str, rank: int, axis: int, have: int, want: int) -> str:
    """Truncate or zero-pad ``x`` along ``axis`` from length ``have`` to ``want``."""
    if have > want:
        return slice_axis(b, x, axis, 0, want)
    return b.pad_axis(x, rank, axis, 0, want - have)


@vjp("DFT")
def vjp_dft(b, node, grads, needs):
    x, y, g = node.inputs[0], node.outputs[0], grads[0]
    rank, axis = b.rank(x), dft_axis(b, node)
    inverse, onesided = bool(node.attrs.get("inverse", 0)), bool(node.attrs.get("onesided", 0))
    n_in, n_out, real_in = b.shape(x)[axis], b.shape(y)[axis], b.shape(x)[-1] == 1
    if node.input(1) and not b.has_value(node.input(1)):
        raise NotImplementedError("DFT with a dft_length computed from the image")
    if node.input(1):
        length = int(b.value(node.input(1)))
    else:  # an inverse onesided DFT's length is its output's; otherwise the input's
        length = n_out if inverse and onesided else n_in
    if onesided and not inverse and not real_in:
        raise NotImplementedError("onesided DFT of a complex input")
    if inverse and onesided:
        bins = length // 2 + 1
        spectrum = dft(b, g, axis, inverse=False, onesided=True, length=length)
        weights = np.full(bins, 2.0 / length, np.float32)
        weights[0] = 1.0 / length
        if length % 2 == 0:
            weights[-1] = 1.0 / length
        scaled = b.op("Mul", spectrum, b.const(weights.reshape([bins] + [1] * (rank - 1 - axis))))
        return [fit_axis(b, scaled, rank, axis, bins, n_in)] + [None] * (len(node.inputs) - 1)
    if inverse:
        back = b.op("Mul", dft(b, g, axis, inverse=False, onesided=False), b.const(1.0 / length))
    else:
        full = fit_axis(b, g, rank, axis, n_out, length) if onesided else g
        back = b.op("Mul", dft(b, full, axis, inverse=True, onesided=False), b.const(float(length)))
    back = fit_axis(b, back, rank, axis, length, n_in)
    if real_in:
        back = slice_axis(b, back, rank - 1, 0, 1)
    return [back] + [None] * (len(node.inputs) - 1)
