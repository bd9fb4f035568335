"""The analysed window: a size x size patch of the SR output, in the two orders lam-trt speaks.

Users and results say (x, y, size): x the column and y the row of the top-left corner, in SR
pixels. The attribution graph and the detector take (top, left, height, width). ``Window`` holds
one and gives both, so no caller swaps the order by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Optional

import numpy as np

from lam_trt.errors import InputError


@dataclass(frozen=True)
class Window:
    x: int      # column of the top-left corner, SR pixels
    y: int      # row of the top-left corner
    size: int

    @classmethod
    def resolve(cls, window: Optional[tuple[int, int]], size: int, output_shape: tuple[int, ...]) -> Window:
        """The window at (x, y) (None: centred) on an SR output of ``output_shape`` (C, H, W), checked."""
        xy = window if window is not None else centre_window(output_shape[-2:], size)
        x, y, size = window_integers(xy, size)
        check_window(x, y, size, output_shape)
        return cls(x, y, size)

    @property
    def xy_size(self) -> tuple[int, int, int]:
        """(x, y, size): the users' order."""
        return self.x, self.y, self.size

    @property
    def graph(self) -> tuple[int, int, int, int]:
        """(top, left, height, width): the attribution graph's and the detector's order."""
        return self.y, self.x, self.size, self.size

    def moved(self, dx: int, dy: int) -> Window:
        """The same window with its corner moved by (dx, dy): its place in a cropped output."""
        return Window(self.x + dx, self.y + dy, self.size)


def resolve_windows(window: Optional[tuple[int, int]], windows: Optional[Sequence[tuple[int, int]]], size: int,
                    output_shape: tuple[int, ...]) -> list[Window]:
    """The checked windows of one call: ``window`` alone (None: centred), or every one of ``windows``
    ((x, y), or (x, y, size) with a size of its own; at least one; duplicates allowed), a bad one
    named by its place in the list."""
    if windows is None:
        return [Window.resolve(window, size, output_shape)]
    if window is not None:
        raise InputError("give either window=(x, y) or windows=[(x, y), ...], not both")
    windows = list(windows)
    if not windows:
        raise InputError("the list of windows is empty: give at least one (x, y)")
    resolved = []
    for k, xy in enumerate(windows):
        try:
            xy = tuple(xy)
            resolved.append(Window.resolve(xy[:2], xy[2] if len(xy) == 3 else size, output_shape))
        except InputError as e:
            raise InputError(f"window {k + 1} of {len(windows)}: {e}") from None
    return resolved


def centre_window(output_hw: tuple[int, int], size: int) -> tuple[int, int]:
    """(x, y) of the size x size window at the centre of an H x W SR output, kept inside the
    detector map (whose last row and column are not window pixels: the gradient needs a neighbour)."""
    height, width = (int(v) for v in output_hw)
    if size < 1 or size > min(height, width) - 1:
        raise InputError(f"a {size}-pixel window does not fit the {width}x{height} SR output "
                         f"(at most {min(height, width) - 1})")
    return (width - size) // 2, (height - size) // 2


def check_window(x: int, y: int, size: int, output_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(top, left, height, width) for the graph; the window must lie inside the detector map."""
    _, height, width = output_shape
    if size < 1:
        raise InputError(f"window size must be >= 1, got {size}")
    if size > min(width, height) - 1:  # the detector needs one pixel beyond the window
        raise InputError(f"window size {size} is larger than the SR output {width}x{height} allows "
                         f"(at most {min(width, height) - 1})")
    if x < 0 or y < 0 or x + size > width - 1 or y + size > height - 1:
        raise InputError(f"window x={x} y={y} size={size} is outside the SR output {width}x{height}: need "
                         f"0 <= x <= {width - 1 - size} and 0 <= y <= {height - 1 - size}")
    return y, x, size, size


def window_integers(window: tuple[int, int], size: int) -> tuple[int, int, int]:
    """(x, y, size) as ints; a float or other non-integer coordinate is refused, never truncated."""
    values = (*tuple(window)[:2], size)
    if len(tuple(window)) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
        raise InputError(f"window (x, y) and size must be integers, got window={tuple(window)!r} size={size!r}")
    return int(values[0]), int(values[1]), int(values[2])


__all__ = ["Window", "resolve_windows", "centre_window", "check_window", "window_integers"]
