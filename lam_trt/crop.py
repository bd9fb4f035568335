"""Receptive-field cropping: run the path on the part of the image that can reach the windows.

For a network without whole-image operations, an output pixel depends only on input pixels within
its receptive field, so the attribution outside (window + field) is exactly zero. Cropping the path
images (after blurring the whole image, so the blur needs no extra margin) to that region gives the
same map at a fraction of the cost. Validity is checked twice: the receptive field must be finite,
and the cropped network must reproduce the full network's output in every window.

One ``Crop`` serves several windows of one image: its region is the union of their regions, so
all of them run on one cropped path.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lam_trt.window import Window

Forward = Callable[[np.ndarray], np.ndarray]  # F(images [N, C, h, w]) -> SR outputs [N, C', H, W]
VERIFY_TOLERANCE = 1e-5  # of the window's largest output value (at least 1): the cropped output must match


@dataclass(frozen=True)
class Crop:
    applied: bool
    reason: str
    top: int = 0        # LR pixels
    left: int = 0
    height: int = 0
    width: int = 0
    margin: int = 0     # LR pixels kept around the windows' footprint

    @classmethod
    def off(cls, reason: str) -> Crop:
        """No crop (the whole image runs), and why."""
        return cls(False, reason)

    @classmethod
    def plan(cls, image_hw: tuple[int, int], windows: Sequence[Window], scale: float,
             receptive_field: float | str | None) -> Crop:
        """The LR region that can influence any of ``windows`` (detector neighbours included)."""
        if receptive_field is None or receptive_field == "global":
            return cls.off("the network has whole-image operations (receptive field: global)")
        if scale != int(scale) or scale < 1:
            return cls.off(f"non-integer scale {scale}")
        h, w = image_hw
        margin = int(math.ceil(float(receptive_field))) + 1
        regions = [footprint(window, int(scale), margin, image_hw) for window in windows]
        top, left = min(r[0] for r in regions), min(r[1] for r in regions)
        bottom, right = max(r[2] for r in regions), max(r[3] for r in regions)
        if (bottom - top) * (right - left) >= 0.8 * h * w:
            return cls.off("the receptive field covers most of the image")
        return cls(True, f"receptive field {receptive_field} LR px", top, left, bottom - top, right - left, margin)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def window(self, window: Window, scale: int) -> Window:
        """``window`` in the cropped SR output."""
        return window.moved(-self.left * scale, -self.top * scale) if self.applied else window

    def cut(self, *arrays: Any) -> list[Any]:
        """[N, C, h, w] arrays cut to the region (contiguous, NumPy or CuPy), or as they are."""
        if not self.applied:
            return list(arrays)
        rows, cols = slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)
        return [a[:, :, rows, cols].copy() for a in arrays]

    def paste(self, attribution: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The cropped map placed in a full-size map of zeros (exact: nothing outside can contribute)."""
        if not self.applied:
            return attribution
        full = np.zeros(shape, np.float32)
        full[:, self.top:self.top + self.height, self.left:self.left + self.width] = attribution
        return full

    def verify(self, forward: Forward, image: np.ndarray, full_sr: np.ndarray, windows: Sequence[Window],
               scale: int) -> Crop:
        """Itself, if the cropped network reproduces the full output [C', H, W] in every window
        (and its detector neighbours); else no crop, saying by how much it differed."""
        if not self.applied:
            return self
        mine = forward(self.cut(image[None])[0])[0]
        err = 0.0
        for window in windows:
            inner = self.window(window, scale)
            cropped = mine[:, inner.y:inner.y + window.size + 1, inner.x:inner.x + window.size + 1]
            full = full_sr[:, window.y:window.y + window.size + 1, window.x:window.x + window.size + 1]
            err = float(np.abs(cropped - full).max())
            if err > VERIFY_TOLERANCE * max(float(np.abs(full).max()), 1.0):
                return Crop.off(f"the cropped network's output differs in the window (max {err:.2g})")
        return self


def footprint(window: Window, scale: int, margin: int, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) in LR pixels of the window's footprint plus ``margin``, in the image."""
    h, w = image_hw
    x, y, size = window.xy_size
    top, left = max(y // scale - margin, 0), max(x // scale - margin, 0)
    bottom = min(-(-(y + size + 1) // scale) + margin, h)
    right = min(-(-(x + size + 1) // scale) + margin, w)
    return top, left, bottom, right


__all__ = ["Crop", "footprint"]
