"""Where the analysed window goes when nobody says: the one default of every command and the API."""
from __future__ import annotations

from lam_trt.errors import InputError


def centre_window(output_hw: tuple[int, int], size: int) -> tuple[int, int]:
    """(x, y) of the size x size window at the centre of an H x W SR output, kept inside the
    detector map (whose last row and column are not window pixels: the gradient needs a neighbour)."""
    height, width = (int(v) for v in output_hw)
    if size < 1 or size > min(height, width) - 1:
        raise InputError(f"a {size}-pixel window does not fit the {width}x{height} SR output "
                         f"(at most {min(height, width) - 1})")
    return (width - size) // 2, (height - size) // 2
