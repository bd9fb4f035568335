"""DIR/results.csv or DIR/results.jsonl: the rows on disk, appended one fsync at a time."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lam_trt.version import __version__
from lam_trt.batch.rows import COLUMNS, Row
from lam_trt.errors import InputError

FORMATS = ("csv", "jsonl")
INT_COLUMNS = {"window_x", "window_y", "window_size", "scale", "steps", "kernel_size"}
FLOAT_COLUMNS = {"diffusion_index", "gini", "completeness_gap", "completeness_gap_relative",
                 "detector_input", "detector_baseline", "seconds", "sigma"}


class ResultsLog:
    """DIR/results.csv or .jsonl: append-only, one fsync per row, locked against a second writer."""

    def __init__(self, out_dir: Path, fmt: str):
        if fmt not in FORMATS:
            raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.fmt = fmt
        self.path = Path(out_dir) / f"results.{fmt}"

    @contextlib.contextmanager
    def appending(self) -> Iterator[tuple[list[Row], Callable[[Row], None]]]:
        """Yield (rows already there, append). A torn last line (a killed writer) is cut off first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b", buffering=0) as f:
            _lock(f, self.path)
            f.seek(0)
            data = f.read()
            complete = data[:data.rfind(b"\n") + 1]
            if len(complete) != len(data):
                f.truncate(len(complete))
            rows = self.parse(complete.decode("utf-8", "surrogateescape"))
            if self.fmt == "csv" and not complete:
                self._write(f, self._csv_line(list(COLUMNS)))
            yield rows, lambda row: self._write(f, self.serialise(row))

    def read(self) -> list[Row]:
        """The complete rows in the file (none when there is no file)."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        return self.parse(data[:data.rfind(b"\n") + 1].decode("utf-8", "surrogateescape"))

    def parse(self, text: str) -> list[Row]:
        if self.fmt == "jsonl":
            return [self._json_row(line, n) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        lines = list(csv.reader(io.StringIO(text)))
        if not lines:
            return []
        if tuple(lines[0]) != COLUMNS:
            raise InputError(f"{self.path} has other columns than lam-trt {__version__} writes; "
                             "use another --out")
        rows = []
        for n, line in enumerate(lines[1:], start=2):
            if not line:
                continue
            if len(line) != len(COLUMNS):
                raise InputError(f"{self.path}, row {n}: {len(line)} cells where {len(COLUMNS)} belong; "
                                 "the file is damaged: fix or delete that row, or use another --out")
            try:
                rows.append({k: _from_csv(k, v) for k, v in zip(COLUMNS, line)})
            except ValueError:
                raise InputError(f"{self.path}, row {n}: a number column holds text; the file is damaged: "
                                 "fix or delete that row, or use another --out") from None
        return rows

    def serialise(self, row: Row) -> bytes:
        if self.fmt == "jsonl":  # JSON escapes a non-UTF-8 file name's surrogates as \udcXX
            return (json.dumps({k: row.get(k) for k in COLUMNS}, allow_nan=False) + "\n").encode()
        return self._csv_line(["" if row.get(k) is None else row[k] for k in COLUMNS])

    def _json_row(self, line: str, n: int) -> Row:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{self.path}, line {n}: not a JSON row; the file is damaged") from None
        if not isinstance(row, dict) or set(COLUMNS) - set(row):
            raise InputError(f"{self.path}, line {n} has other columns than lam-trt {__version__} "
                             "writes; use another --out")
        return row

    @staticmethod
    def _csv_line(cells: list[Any]) -> bytes:
        """One CSV row, file names exactly as they are (csv quotes what needs quoting; a non-UTF-8
        name's bytes come back through surrogateescape, as the file system gave them)."""
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        return buf.getvalue().encode("utf-8", "surrogateescape")

    @staticmethod
    def _write(f: Any, data: bytes) -> None:
        f.write(data)
        os.fsync(f.fileno())


def _from_csv(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in INT_COLUMNS:
        return int(text)
    return float(text) if column in FLOAT_COLUMNS else text


def _lock(f: Any, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one writer per folder is then up to the user
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError(f"another lam-trt batch is writing {path}; wait for it or use another --out") from None
