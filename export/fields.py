"""Receptive-field algebra: what each op's receptive-field rule (beside its VJP rule) works with.

Araujo, Norris & Sim ("Computing receptive fields of convolutional neural networks", Distill 2019):

    r_out = r_in + (k - 1) * dilation * j_in,    j_out = j_in * stride

with ``r`` in input (LR) pixels and ``j`` the jump, the distance in input pixels between
neighbouring positions of a tensor. A rule has the signature ``rule(node, fields, ctx) -> Field | None``:
the forward Node, the Field of each input (None where it does not depend on the image), and the
shapes and constants of the graph at one input size; None means the output does not depend on the
image's values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import numpy as np

from lam_trt.export.builder import Node

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Field:
    """How a tensor depends on the input: receptive field and jump per axis (rows, cols)."""

    r: tuple[float, float]
    j: tuple[float, float]
    is_global: bool = False
    spatial: bool = True  # NCHW with H and W still at axes 2 and 3
    grid: tuple[int, int] | None = None  # H, W of the feature map when it was last NCHW


@dataclass
class FieldContext:
    shapes: dict[str, Shape]
    consts: dict[str, np.ndarray]
    size: tuple[int, int]

    def positions(self, field: Field) -> float:
        """How many positions a feature map at this field's jump has."""
        return (self.size[0] / field.j[0]) * (self.size[1] / field.j[1])

    def shape(self, name: str) -> Shape | None:
        return self.shapes.get(name)


FieldRule = Callable[[Node, list[Optional[Field]], FieldContext], Optional[Field]]


def pair(values: Any, default: int) -> tuple[int, int]:
    """The last two entries (rows, cols), or ``default`` twice for fewer than two."""
    values = list(values or [])
    return (values[-2], values[-1]) if len(values) >= 2 else (default, default)


def merge(fields: list[Field | None]) -> Field:
    """Several dependent inputs meet: the largest field, the finest grid."""
    live = [f for f in fields if f is not None]
    return Field(
        r=(max(f.r[0] for f in live), max(f.r[1] for f in live)),
        j=(min(f.j[0] for f in live), min(f.j[1] for f in live)),
        is_global=any(f.is_global for f in live),
        spatial=any(f.spatial for f in live),
        grid=next((f.grid for f in live if f.grid is not None), None),
    )


def grow(f: Field, kernel: tuple[float, float], step: tuple[float, float]) -> Field:
    """Araujo's recursion: a kernel applied on ``f``'s grid, then a stride."""
    r = (f.r[0] + (kernel[0] - 1) * f.j[0], f.r[1] + (kernel[1] - 1) * f.j[1])
    return replace(f, r=r, j=(f.j[0] * step[0], f.j[1] * step[1]))


def mixes_positions(f: Field, axes: list[int], shape: Shape | None, ctx: FieldContext) -> bool:
    """Does an op over ``axes`` of a tensor with field ``f`` combine all positions?"""
    if shape is None:
        return False
    axes = [a % len(shape) for a in axes]
    if f.spatial and len(shape) == 4:
        return 2 in axes or 3 in axes
    extent = math.prod(shape[a] for a in axes)
    positions = round(ctx.positions(f))
    return positions > 1 and extent >= positions and extent % positions == 0


def normalised_over(node: Node, fields: list[Field | None], ctx: FieldContext, axes: list[int]) -> Field:
    """A normalisation over ``axes`` of the first input: global where those axes span all positions."""
    f = merge([fields[0]])
    return replace(f, is_global=f.is_global or mixes_positions(f, axes, ctx.shape(node.inputs[0]), ctx))


def global_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    """Every output position sees every input position (global pooling, instance statistics)."""
    return replace(merge(fields), is_global=True)


def no_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> None:
    """The output depends on the input's shape only, not on its values."""
    return None
