"""Window crops of the reverse pass: the box algebra each op's crop rule (beside its VJP rule) speaks.

Near the SR output a window's gradient is nonzero only around the window, so the reverse pass of
the upsampling tail can run on a crop per window instead of the whole image (tail_crop.py). A box
is where a tensor's gradient may be nonzero for one window, per spatial axis a ``Span``: it starts
at ``q * m + c`` and is ``s`` long, where q = floor(window start / R) for the SR output's alignment
R (the model's scale), and ``m`` is R at the tensor's resolution (R at the output, 1 at the input's
size). Only q varies between windows, so every box of a tensor has the same static size, and the
ops between two tensors relate their boxes by static offsets.

A crop rule answers, for a node and the box of its output: the box of each input that holds
everything the output's box reads, the output box the node computes exactly from those input
boxes (the given one or a larger one), and the node's attributes on the crops. The node so changed
runs on crops as the original does on whole tensors (``rule(b, node, out) -> CropStep | None``;
None: the op cannot run on a crop with these attributes). Positions of a box beyond the tensor's
edge are the zero padding a convolution reads; tail_crop.py zeroes their gradients.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np


@dataclass(frozen=True)
class Span:
    """One axis of a box: window k's interval starts at q_k * m + c and has s positions."""

    m: int
    c: int
    s: int

    @property
    def end(self) -> int:
        return self.c + self.s

    def hull(self, other: "Span") -> Optional["Span"]:
        """The smallest span holding both (None when their resolutions differ)."""
        if self.m != other.m:
            return None
        c = min(self.c, other.c)
        return Span(self.m, c, max(self.end, other.end) - c)

    def shrink(self, factor: int) -> Optional[int]:
        """m at a resolution ``factor`` times coarser, None if not whole."""
        return self.m // factor if self.m % factor == 0 else None


@dataclass(frozen=True)
class Box:
    """Rows and columns of one window's crop of a [N, C, H, W] tensor."""

    rows: Span
    cols: Span

    @property
    def spans(self) -> tuple[Span, Span]:
        return self.rows, self.cols

    @property
    def area(self) -> int:
        return self.rows.s * self.cols.s

    def hull(self, other: "Box") -> Optional["Box"]:
        rows, cols = self.rows.hull(other.rows), self.cols.hull(other.cols)
        return Box(rows, cols) if rows and cols else None


@dataclass
class CropStep:
    """A crop rule's answer: ``inputs`` the box of each input (None: a constant read as it is),
    ``output`` the box the node computes (holding the box asked for), ``attrs`` the node's attributes
    on crops, ``consts`` constant inputs replaced (index -> value), ``arity`` the inputs kept."""

    inputs: list[Optional[Box]]
    output: Box
    attrs: dict[str, Any]
    consts: dict[int, np.ndarray] = field(default_factory=dict)
    arity: Optional[int] = None


CropRule = Callable[[Any, Any, Box], Optional[CropStep]]  # (GraphBuilder, Node, output box)


def spatial_operand(b: Any, name: str, out_shape: tuple[int, ...]) -> Optional[bool]:
    """How an elementwise node reads ``name`` on crops: True as a crop (a [N, C, H, W] tensor of the
    output's size), False as it is (no spatial extent: it broadcasts over the crop), None: neither.
    (The planner refuses a node whose image-dependent input would be read as it is.)"""
    shape = b.shapes.get(name)
    if shape is None:
        return None
    if len(shape) < 2 or tuple(shape[-2:]) == (1, 1):
        return False
    return True if len(shape) == 4 and shape[2:] == out_shape[2:] else None


def pointwise(b: Any, node: Any, out: Box) -> Optional[CropStep]:
    """An elementwise node: every tensor operand cropped to the output's box, constants as they are."""
    shape = b.shape(node.outputs[0])
    reads = [spatial_operand(b, name, shape) if name else False for name in node.inputs]
    if len(shape) != 4 or None in reads:
        return None
    return CropStep([out if crop else None for crop in reads], out, dict(node.attrs))
