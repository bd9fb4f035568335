"""Which windows share one run: one crop for all, or one per region, whichever costs least.

With receptive-field cropping, one run for windows spread over the image crops to the union of
their regions, often the whole image, while each window alone would crop to its own small region.
A run costs about (crop area) x (1 + K): the forward pass once and a reverse pass per window (which
costs 0.6 to 1.0 of a forward pass on the zoo, bench/RESULTS.md "Many windows in one run"). So
windows are grouped by the cell of a square grid their corner falls in, for a few cell sizes (the
whole image: one group; single windows: one group each), and the cheapest grouping is used;
networks without a finite receptive field always give one group.
"""
from __future__ import annotations

from collections.abc import Sequence

from lam_trt.crop import Crop
from lam_trt.window import Window

CELLS = (2, 4, 8)  # cell sides tried, in receptive-field margins
REVERSE_COST = 1.0  # one window's reverse pass, in forward passes over the same crop


def group_windows(image_hw: tuple[int, int], windows: Sequence[Window], scale: int,
                  receptive_field: float | str | None) -> list[list[int]]:
    """Indices of ``windows`` per run, in order, grouped to minimise the estimated cost."""
    everything = [list(range(len(windows)))]
    union = Crop.plan(image_hw, windows, scale, receptive_field)
    if not union.applied and "whole-image" in union.reason:
        return everything
    margin = union.margin or Crop.plan(image_hw, windows[:1], scale, receptive_field).margin
    options = [everything, [[k] for k in range(len(windows))]]
    options += [by_cell(windows, max(1, cell * margin) * scale) for cell in CELLS if margin]
    return min(options, key=lambda groups: cost(image_hw, windows, scale, receptive_field, groups))


def by_cell(windows: Sequence[Window], side: int) -> list[list[int]]:
    """Windows grouped by the ``side`` x ``side`` SR-pixel cell holding their top-left corner."""
    cells: dict[tuple[int, int], list[int]] = {}
    for k, w in enumerate(windows):
        cells.setdefault((w.y // side, w.x // side), []).append(k)
    return list(cells.values())


def cost(image_hw: tuple[int, int], windows: Sequence[Window], scale: int, receptive_field: float | str | None,
         groups: list[list[int]]) -> float:
    """Estimated work: per group, its crop's LR area (the image's when not cropped) x (1 + K)."""
    total = 0.0
    for members in groups:
        crop = Crop.plan(image_hw, [windows[k] for k in members], scale, receptive_field)
        area = crop.height * crop.width if crop.applied else image_hw[0] * image_hw[1]
        total += area * (1 + REVERSE_COST * len(members))
    return total


__all__ = ["group_windows"]
