"""Which windows of each image a batch attributes: ``center``, ``grid:K`` or a CSV file of them."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lam_trt.errors import InputError

Window = tuple[int, int, int]                    # x (column), y (row), size, in SR pixels


@dataclass(frozen=True)
class WindowSpec:
    """Which windows to attribute in each image: ``center``, ``grid:K`` or a list from a CSV file."""

    kind: str                                              # "center", "grid" or "file"
    grid: int = 1
    listed: tuple[tuple[int, int, int | None], ...] = ()   # x, y, size (None: --size)
    source: str = ""                                       # the CSV file, for run.json

    @classmethod
    def parse(cls, text: str) -> WindowSpec:
        text = text.strip()
        if text == "center":
            return cls("center")
        if text.startswith("grid:"):
            k = text[5:]
            if not k.isdigit() or int(k) < 1:
                raise InputError(f"--windows grid:K needs an integer K >= 1, got {text!r}")
            return cls("grid", grid=int(k))
        if not os.path.isfile(text):
            raise InputError(f"--windows must be center, grid:K or a CSV file of x,y[,size] rows; "
                             f"{text!r} is none of these")
        return cls("file", listed=tuple(read_windows_csv(Path(text))), source=text)

    def windows(self, output_shape: tuple[int, ...], size: int) -> list[Window]:
        """The windows of one image whose SR output is (C, H, W); listed ones are not checked here
        (each bad one becomes its own error row)."""
        if self.kind == "file":
            return list(dict.fromkeys((x, y, s if s is not None else size) for x, y, s in self.listed))
        _, height, width = output_shape
        max_x, max_y = width - 1 - size, height - 1 - size  # the detector map is (H-1) x (W-1)
        if max_x < 0 or max_y < 0:
            raise InputError(f"the SR output {width}x{height} has no room for a {size}-pixel window")
        k = 1 if self.kind == "center" else self.grid
        return [(x, y, size) for y in _spaced(max_y, k) for x in _spaced(max_x, k)]

    def to_json(self) -> str | list[list[int | None]]:
        return [list(w) for w in self.listed] if self.kind == "file" else (
            "center" if self.kind == "center" else f"grid:{self.grid}")


def _spaced(maximum: int, k: int) -> list[int]:
    """k evenly spaced positions in [0, maximum] (k = 1: the centre), without repeats."""
    if k == 1:
        return [(maximum + 1) // 2]
    return list(dict.fromkeys(int(round(v)) for v in np.linspace(0, maximum, k)))


def read_windows_csv(path: Path) -> list[tuple[int, int, int | None]]:
    """Rows x,y[,size] with or without a header line naming the columns."""
    with open(path, newline="") as f:
        lines = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    if not lines:
        raise InputError(f"window file {path} holds no windows")
    order = (0, 1, 2)
    if not lines[0][0].strip().lstrip("-").isdigit():
        header = [cell.strip().lower() for cell in lines.pop(0)]
        if "x" not in header or "y" not in header:
            raise InputError(f"window file {path}: the header must name columns x and y (and size)")
        order = (header.index("x"), header.index("y"), header.index("size") if "size" in header else -1)
    return [_window_cells(path, n, row, order) for n, row in enumerate(lines, start=1)]


def _window_cells(path: Path, n: int, row: list[str], order: tuple[int, int, int]) -> tuple[int, int, int | None]:
    try:
        cells = [row[i].strip() if 0 <= i < len(row) else "" for i in order]
        x, y = int(cells[0]), int(cells[1])
        size = int(cells[2]) if cells[2] else None
    except (ValueError, IndexError):
        raise InputError(f"window file {path}, window {n}: need integers x,y[,size], got {','.join(row)!r}") \
            from None
    if x < 0 or y < 0 or (size is not None and size < 1):
        raise InputError(f"window file {path}, window {n}: x and y must be >= 0 and size >= 1")
    return x, y, size
