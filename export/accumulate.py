"""Summing the gradient contributions of one tensor, with two lazy kinds of contribution.

Some adjoints are naturally smaller than the tensor they belong to: a reduction's (broadcast back
over the reduced axes) and a slice's (zero outside the slice). Materialising them (Expand, Pad)
and summing costs full-size passes over memory; kept lazy until the contributions are summed,
blocks that tile the tensor become one Concat and broadcasts ride on Sum's broadcasting.
"""
from __future__ import annotations

from typing import Optional

from lam_trt.export.builder import GraphBuilder


class Broadcast(str):
    """A gradient that still has to be broadcast to its tensor's shape (a reduction's adjoint).
    Next to other contributions one broadcasting Sum adds it; alone it is expanded, unless the
    consuming rule takes it as it is (``vjp(..., takes_broadcast=True)``)."""

    def materialise(self, b: GraphBuilder, like: str) -> str:
        return b.op("Expand", self, b.dyn_shape(like))


class Placed(str):
    """A gradient that is zero outside ``[begin, dim - end)`` along ``axis`` (a slice's adjoint),
    held as its nonzero block. Blocks that tile their tensor are joined by one Concat instead of
    being zero-padded to full size and summed."""

    axis: int
    begin: int
    end: int

    def __new__(cls, block: str, axis: int, begin: int, end: int) -> "Placed":
        placed = super().__new__(cls, block)
        placed.axis, placed.begin, placed.end = axis, begin, end
        return placed

    def materialise(self, b: GraphBuilder, like: str) -> str:
        return b.pad_axis(str(self), b.rank(like), self.axis, self.begin, self.end)


def total(b: GraphBuilder, parts: Optional[list[str]], grads: dict[str, str], name: str,
          keep_broadcast: bool = False) -> Optional[str]:
    """The gradient of ``name`` from its contributions, built once and remembered in ``grads``.
    ``keep_broadcast``: the consuming rule takes a ``Broadcast`` as it is."""
    if parts:
        grads[name] = combine(b, parts, name, keep_broadcast)
    return grads.get(name)


def combine(b: GraphBuilder, parts: list[str], like: str, keep_broadcast: bool) -> str:
    """Tiling ``Placed`` blocks -> one Concat; otherwise one Sum, on whose broadcasting the
    ``Broadcast`` parts ride; a lazy part is materialised only when nothing has the full shape."""
    placed = [p for p in parts if isinstance(p, Placed)]
    if len(placed) == len(parts) and tiles(placed, b.shape(like)[placed[0].axis]):
        placed.sort(key=lambda p: p.begin)
        return placed[0] if len(placed) == 1 else b.op("Concat", *placed, axis=placed[0].axis)
    full = [p.materialise(b, like) if isinstance(p, Placed) else p for p in parts if not isinstance(p, Broadcast)]
    lazy = [p for p in parts if isinstance(p, Broadcast)]
    if not full:
        if keep_broadcast:
            return lazy[0] if len(lazy) == 1 else Broadcast(b.op("Sum", *lazy))
        full = [lazy.pop(0).materialise(b, like)]
    parts = full + lazy
    return parts[0] if len(parts) == 1 else b.op("Sum", *parts)


def tiles(blocks: list[Placed], dim: int) -> bool:
    """Whether the blocks cover their axis of length ``dim`` exactly once, edge to edge."""
    ordered = sorted(blocks, key=lambda p: p.begin)
    if len({p.axis for p in ordered}) != 1 or ordered[0].begin != 0 or ordered[-1].end != 0:
        return False
    return all(dim - a.end == c.begin for a, c in zip(ordered, ordered[1:]))
