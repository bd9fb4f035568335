"""Receptive-field cropping: run the path on the part of the image that can reach the window.

For a network without whole-image operations, an output pixel depends only on input pixels within
its receptive field, so the attribution outside (window + field) is exactly zero. Cropping the path
images (after blurring the whole image, so the blur needs no extra margin) to that region gives the
same map at a fraction of the cost. Validity is checked twice: the receptive field must be finite,
and the cropped network must reproduce the full network's output in the window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict
from typing import Any


@dataclass(frozen=True)
class CropPlan:
    applied: bool
    reason: str
    top: int = 0        # LR pixels
    left: int = 0
    height: int = 0
    width: int = 0
    margin: int = 0     # LR pixels kept around the window's footprint

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sr_window(self, x: int, y: int, scale: int) -> tuple[int, int]:
        """The window's top-left corner in the cropped SR output."""
        return x - self.left * scale, y - self.top * scale


def plan_crop(image_hw: tuple[int, int], window: tuple[int, int, int], scale: float,
              receptive_field: float | str | None) -> CropPlan:
    """The LR region that can influence the window (detector neighbours included)."""
    h, w = image_hw
    x, y, size = window
    if receptive_field is None or receptive_field == "global":
        return CropPlan(False, "the network has whole-image operations (receptive field: global)")
    if scale != int(scale) or scale < 1:
        return CropPlan(False, f"non-integer scale {scale}")
    s = int(scale)
    margin = int(math.ceil(float(receptive_field))) + 1
    top, left = max(y // s - margin, 0), max(x // s - margin, 0)
    bottom = min(-(-(y + size + 1) // s) + margin, h)
    right = min(-(-(x + size + 1) // s) + margin, w)
    if (bottom - top) * (right - left) >= 0.8 * h * w:
        return CropPlan(False, "the receptive field covers most of the image")
    return CropPlan(True, f"receptive field {receptive_field} LR px", top, left, bottom - top, right - left, margin)
