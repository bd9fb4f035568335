"""Batch LAM over many images and windows: inputs, windows, rows, resume, summary and QA gates.

One row per (image, window) goes to DIR/results.csv or DIR/results.jsonl. Rows are appended with an
fsync each, so an interrupted run loses at most the row it was writing; DIR/run.json records the
model and parameters, and a rerun with the same ones skips every row already in the file. Rows are
keyed by the image's resolved path and content sha256, so one file named two ways is one image and
a changed file is computed again. A bad image or window becomes a row with its error: the batch never
stops for one; rows that failed for an environment reason (error_kind "environment": no memory, an
unusable provider) are retried by the next run, whose row then stands in their place.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import lam_trt
from lam_trt.errors import InputError, LamTrtError, ProviderError, ResourceError
from lam_trt.io import write_json
from lam_trt.result import NOTHING_TO_ATTRIBUTE

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
FORMATS = ("csv", "jsonl")
METRIC_COLUMNS = ("diffusion_index", "gini", "completeness_gap", "completeness_gap_relative",
                  "detector_input", "detector_baseline", "scale")
COLUMNS = ("image", "image_path", "image_sha256", "window_x", "window_y", "window_size", *METRIC_COLUMNS,
           "warnings", "error", "error_kind", "seconds", "model_sha256", "method", "steps", "sigma",
           "kernel_size", "provider")
INT_COLUMNS = {"window_x", "window_y", "window_size", "scale", "steps", "kernel_size"}
FLOAT_COLUMNS = {"diffusion_index", "gini", "completeness_gap", "completeness_gap_relative",
                 "detector_input", "detector_baseline", "seconds", "sigma"}
_GLOB = re.compile(r"[*?\[]")

Window = tuple[int, int, int]                    # x (column), y (row), size, in SR pixels
# resolved image path, its content's sha256 (None: unreadable), x, y, size (None: an image's own error)
Key = tuple[str, str | None, int | None, int | None, int | None]
Row = dict[str, Any]
ENVIRONMENT = "environment"   # error_kind of a failure of this machine, not of the input: retried on resume
MESSAGES = "_warning_messages"  # a row's warning messages, for stderr only (not a column)


# ---------------------------------------------------------------------------------------- inputs

def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Image paths from files, folders (their images, sorted, not recursive) and globs, in the
    order given, each once. A missing plain file stays in the list (it becomes an error row); a
    glob that matches nothing or a folder without images is a bad argument."""
    images: list[str] = []
    seen: set[str] = set()
    for arg in inputs:
        for path in _expand_one(str(arg)):
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                images.append(path)
    if not images:
        raise InputError("no input images given")
    return images


def _expand_one(arg: str) -> list[str]:
    if os.path.isdir(arg):
        return _folder_images(Path(arg))
    if _GLOB.search(arg) and not os.path.exists(arg):
        matches = sorted(Path().glob(arg) if not os.path.isabs(arg) else _abs_glob(arg))
        if not matches:
            raise InputError(f"no files match {arg!r}")
        return [p for m in matches for p in ([str(m)] if not m.is_dir() else _folder_images(m))]
    return [str(Path(arg))]


def _abs_glob(pattern: str) -> Iterable[Path]:
    anchor = Path(Path(pattern).anchor)
    return anchor.glob(str(Path(pattern).relative_to(anchor)))


def _folder_images(folder: Path) -> list[str]:
    found = sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    return found


# --------------------------------------------------------------------------------------- windows

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


# ------------------------------------------------------------------------------------ parameters

@dataclass(frozen=True)
class BatchParams:
    """Everything that decides a row's numbers; a resumed run must use the same."""

    windows: WindowSpec = field(default_factory=lambda: WindowSpec("center"))
    size: int = 16
    steps: int = 100
    sigma: float = 1.2
    kernel_size: int = 9
    method: str = "lam"

    def check(self) -> None:
        """The same checks an attribution makes, before any work (a bad value is exit 2, not rows)."""
        from lam_trt.kernels.gaussian import check_kernel_size, check_sigma
        from lam_trt.kernels.paths import METHODS, check_steps

        if self.method not in METHODS:
            raise InputError(f"unknown attribution method {self.method!r}; choose one of {', '.join(METHODS)}")
        check_steps(self.steps)
        check_sigma(self.sigma)
        check_kernel_size(self.kernel_size)
        if self.size < 1:
            raise InputError(f"window size must be >= 1, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        return {"windows": self.windows.to_json(), "size": self.size, "steps": self.steps,
                "sigma": self.sigma, "kernel_size": self.kernel_size, "method": self.method,
                "rule": "right", "detector": "gradient", "reduce": "sum"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchParams:
        """Inverse of to_dict (for Ray workers, which get the parameters as JSON)."""
        w = d["windows"]
        spec = WindowSpec("file", listed=tuple(tuple(v) for v in w)) if isinstance(w, list) \
            else WindowSpec.parse(w)
        return cls(spec, d["size"], d["steps"], d["sigma"], d["kernel_size"], d["method"])


# ------------------------------------------------------------------------------------------ rows

def image_rows(attributor: Any, image: str, params: BatchParams, done: Collection[Key] = ()) -> Iterator[Row]:
    """The rows of one image that are not in ``done``: one per window, or one error row when the
    image cannot be read or has no room for a window. Used by the local and the Ray runs alike."""
    where = image_identity(image)
    common = {"model_sha256": attributor.sha256, "method": params.method, "steps": params.steps,
              "sigma": params.sigma, "kernel_size": params.kernel_size}
    if (*where, None, None, None) in done:
        return
    start = time.perf_counter()
    try:
        img = attributor.load(image, False, None)
        runner, _ = attributor.runner(tuple(img.shape))
        windows = params.windows.windows(runner.output_shape, params.size)
    except Exception as e:  # noqa: BLE001 - any failure of one image is that image's row
        provider = _resolved_provider(attributor)
        yield make_row(image, where, None, {}, e, time.perf_counter() - start, {**common, "provider": provider})
        return
    common["provider"] = runner.provider
    for window in windows:
        if (*where, *window) not in done:
            yield window_row(attributor, img, image, where, window, params, common)


def image_identity(image: str) -> tuple[str, str | None]:
    """(resolved path, sha256 of the content or None when unreadable): what a row's key names, so
    one file named two ways is one image, and a changed file is a new one."""
    from lam_trt.provenance import file_sha256

    try:
        return os.path.realpath(image), file_sha256(image)
    except OSError:
        return os.path.realpath(image), None


def window_row(attributor: Any, img: np.ndarray, image: str, where: tuple[str, str | None], window: Window,
               params: BatchParams, common: dict[str, Any]) -> Row:
    start = time.perf_counter()
    x, y, size = window
    try:
        result = attributor.attribute(img, window=(x, y), size=size, steps=params.steps, sigma=params.sigma,
                                      kernel_size=params.kernel_size, method=params.method)
    except Exception as e:  # noqa: BLE001 - a bad window is a row, not the end of the batch
        return make_row(image, where, window, {}, e, time.perf_counter() - start, common)
    values = {k: getattr(result, k) for k in METRIC_COLUMNS}
    row = make_row(image, where, window, values, None, time.perf_counter() - start, common)
    row["warnings"] = ";".join(dict.fromkeys(w.code for w in result.warnings)) or None
    row[MESSAGES] = {w.code: w.message for w in result.warnings}
    return row


def make_row(image: str, where: tuple[str, str | None], window: Window | None, values: dict[str, Any],
             error: BaseException | None, seconds: float, common: dict[str, Any]) -> Row:
    x, y, size = window if window is not None else (None, None, None)
    row: Row = {"image": image, "image_path": where[0], "image_sha256": where[1],
                "window_x": x, "window_y": y, "window_size": size}
    row.update({k: _finite(values.get(k)) for k in METRIC_COLUMNS})
    row.update({"warnings": None, "error": describe_error(error) if error is not None else None,
                "error_kind": error_kind(error) if error is not None else None,
                "seconds": round(seconds, 6), **common})
    return row


def row_key(row: Row) -> Key:
    return row["image_path"], row["image_sha256"], row["window_x"], row["window_y"], row["window_size"]


def describe_error(e: BaseException) -> str:
    text = str(e) if isinstance(e, LamTrtError) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())[:500]


def error_kind(e: BaseException) -> str:
    """"input" for a bad image, window or model (kept on resume); "environment" for anything this
    machine caused (no memory, an unavailable provider or cache, a runtime failure): retried."""
    if isinstance(e, LamTrtError) and not isinstance(e, (ProviderError, ResourceError)):
        return "input"
    return ENVIRONMENT


def row_warnings(row: Row) -> list[str]:
    return [code for code in (row.get("warnings") or "").split(";") if code]


def current_rows(rows: Sequence[Row]) -> list[Row]:
    """The rows that stand, in file order: for each image (resolved path) only those of its latest
    content, the last row of each window (a retried row replaces the failed one), and an image's own
    error row only while it has no window rows."""
    latest = {r["image_path"]: r["image_sha256"] for r in rows}
    last: dict[Key, int] = {}
    for i, r in enumerate(rows):
        if r["image_sha256"] == latest[r["image_path"]]:
            last[row_key(r)] = i
    windowed = {k[:2] for k in last if k[2] is not None}
    return [rows[i] for k, i in sorted(last.items(), key=lambda item: item[1])
            if k[2] is not None or k[:2] not in windowed]


def _finite(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return int(v) if isinstance(v, (np.integer,)) else v


def _resolved_provider(attributor: Any) -> str:
    from lam_trt import providers

    try:
        return providers.resolve(attributor.provider)
    except LamTrtError:
        return str(attributor.provider)


# ------------------------------------------------------------------------------- results on disk

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
            raise InputError(f"{self.path} has other columns than lam-trt {lam_trt.__version__} writes; "
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
            raise InputError(f"{self.path}, line {n} has other columns than lam-trt {lam_trt.__version__} "
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


# ------------------------------------------------------------------------------- summary, gates

@dataclass(frozen=True)
class Gates:
    """QA gates over the rows that stand. A row fails on an error (unless ``allow_errors``); on a
    DI below ``min_di``; on an |relative completeness gap| above ``max_gap``; on a degenerate window
    (DI undefined) or a gap with no ratio when ``min_di`` or ``max_gap`` is set (unless
    ``allow_degenerate``); and on any warning whose code is in ``fail_on_warnings`` ("all": any).
    A metric gate that no row measured fails the run: a gate never passes on nothing. A row whose
    D(F(I)) ~ D(F(I')) (warning nothing-to-attribute) has no meaningful relative gap for --max-gap."""

    min_di: float | None = None
    max_gap: float | None = None
    allow_errors: bool = False
    allow_degenerate: bool = False
    fail_on_warnings: tuple[str, ...] = ()

    def check(self, method: str = "lam") -> None:
        for name, value in (("--min-di", self.min_di), ("--max-gap", self.max_gap)):
            if value is not None and not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value}")
        if self.max_gap is not None and self.max_gap < 0:
            raise InputError(f"--max-gap is a ratio >= 0, got {self.max_gap}")
        if self.max_gap is not None and method not in ("lam", "ig"):
            raise InputError(f"--max-gap needs a path integral; {method} has no completeness gap")

    @property
    def metric(self) -> bool:
        return self.min_di is not None or self.max_gap is not None

    def reasons(self, row: Row) -> list[str]:
        if row.get("error"):
            return [] if self.allow_errors else [f"error: {row['error']}"[:200]]
        codes = row_warnings(row)
        out = [f"warning {c}" for c in codes if c in self.fail_on_warnings or "all" in self.fail_on_warnings]
        di, rel = row.get("diffusion_index"), row.get("completeness_gap_relative")
        if di is None and self.metric and not self.allow_degenerate:
            out.append("degenerate window (DI undefined)")
        if self.min_di is not None and di is not None and di < self.min_di:
            out.append(f"DI {di:.4g} < {self.min_di:g}")
        if self.max_gap is not None:
            flat = rel is None or NOTHING_TO_ATTRIBUTE in codes  # D(F(I)) ~ D(F(I')): a ratio of noise
            if flat and di is not None and not self.allow_degenerate:
                out.append("no meaningful relative gap (D(F(I)) ~ D(F(I')): nothing to attribute)")
            elif rel is not None and not flat and abs(rel) > self.max_gap:
                out.append(f"|relative gap| {abs(rel):.4g} > {self.max_gap:g}")
        return out

    def violations(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        """Each failing row's reasons, and a run-level one when a metric gate measured no row."""
        out = [{"image": r["image"], "window_x": r["window_x"], "window_y": r["window_y"], "reasons": why}
               for r in rows if (why := self.reasons(r))]
        for name, column, value in (("--min-di", "diffusion_index", self.min_di),
                                    ("--max-gap", "completeness_gap_relative", self.max_gap)):
            if value is not None and not any(r.get(column) is not None and not r.get("error") for r in rows):
                out.append({"image": None, "window_x": None, "window_y": None,
                            "reasons": [f"{name}: no row was measured, so the gate has nothing to pass"]})
        return out


DI_STATS: dict[str, Callable[[np.ndarray], Any]] = {
    "mean": np.mean, "median": np.median, "p5": lambda v: np.percentile(v, 5),
    "p95": lambda v: np.percentile(v, 95), "min": np.min, "max": np.max}


def summarise(rows: Sequence[Row]) -> dict[str, Any]:
    """Counts (measured, degenerate, errors), the warnings by code, and the DI distribution (mean,
    median, p5, p95) over the rows with a defined DI: degenerate windows never pull the mean."""
    ok = [r for r in rows if not r.get("error")]
    di = np.array([r["diffusion_index"] for r in ok if r.get("diffusion_index") is not None], dtype=np.float64)
    gaps = np.array([abs(r["completeness_gap_relative"]) for r in ok
                     if r.get("completeness_gap_relative") is not None], dtype=np.float64)
    warnings: dict[str, int] = {}
    for r in ok:
        for code in row_warnings(r):
            warnings[code] = warnings.get(code, 0) + 1
    return {"count": len(rows), "ok": len(ok), "measured": int(di.size), "degenerate": len(ok) - int(di.size),
            "errors": len(rows) - len(ok),
            "environment_errors": sum(1 for r in rows if r.get("error_kind") == ENVIRONMENT),
            "warnings": warnings, "diffusion_index": _stats(di, DI_STATS),
            "completeness_gap_relative_abs": _stats(gaps, {"median": np.median, "max": np.max})}


def _stats(values: np.ndarray, fns: dict[str, Callable[[np.ndarray], Any]]) -> dict[str, float | None]:
    return {name: (float(fn(values)) if values.size else None) for name, fn in fns.items()}


# ----------------------------------------------------------------------------------------- a run

@dataclass
class BatchPlan:
    """A checked batch: nothing is written until ``run_batch`` runs it."""

    model: Path
    images: list[str]
    out_dir: Path
    params: BatchParams
    log: ResultsLog
    provider: str
    gates: Gates
    attributor: Any
    run_info: dict[str, Any]
    cache_dir: str | None = None    # handed to Ray workers; None: their own default


@dataclass
class BatchOutcome:
    summary: dict[str, Any]
    violations: list[dict[str, Any]]
    new_rows: int
    skipped_rows: int
    warning_messages: dict[str, str] = field(default_factory=dict)  # code -> the first message of this run

    @property
    def passed(self) -> bool:
        return not self.violations


def plan_batch(model: str | os.PathLike, inputs: Sequence[str], out_dir: str | os.PathLike,
               params: BatchParams, fmt: str = "csv", provider: str = "auto", gates: Gates = Gates(),
               cache_dir: str | os.PathLike | None = None, threads: int | None = None) -> BatchPlan:
    """Check every argument (and an earlier run in ``out_dir``) without writing anything."""
    from lam_trt import providers
    from lam_trt.attributor import Attributor

    params.check()
    gates.check(params.method)
    log = ResultsLog(Path(out_dir), fmt)
    images = expand_inputs(inputs)
    providers.resolve(provider)
    attributor = Attributor(model, provider=provider, cache_dir=cache_dir, threads=threads)
    run_info = {"lam_trt_version": lam_trt.__version__,
                "model": {"path": str(model), "sha256": attributor.sha256},
                "format": fmt, "parameters": params.to_dict(), "windows_file": params.windows.source or None}
    _check_earlier_run(Path(out_dir), log, run_info)
    cache = cache_dir if cache_dir is not None else os.environ.get("LAM_TRT_CACHE")
    return BatchPlan(Path(model), images, Path(out_dir), params, log, provider, gates, attributor, run_info,
                     str(cache) if cache is not None else None)


def _check_earlier_run(out_dir: Path, log: ResultsLog, run_info: dict[str, Any]) -> None:
    """Refuse to mix rows made another way into one folder."""
    path = out_dir / "run.json"
    if not path.exists():
        if log.path.exists() and log.path.stat().st_size:
            raise InputError(f"{log.path} exists but {path} does not; use another --out")
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise InputError(f"{path} is unreadable; use another --out") from None
    diffs = [f"{name}: {a!r} before, {b!r} now" for name, a, b in _differences(old, run_info)]
    if diffs:
        raise InputError(f"{out_dir} holds a batch made with other settings ({'; '.join(diffs)}); "
                         "use another --out, or delete the folder to start over")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    if old.get("model", {}).get("sha256") != new["model"]["sha256"]:
        yield "model sha256", old.get("model", {}).get("sha256", "?")[:12], new["model"]["sha256"][:12]
    if old.get("format") != new["format"]:
        yield "format", old.get("format"), new["format"]
    before, now = old.get("parameters", {}), new["parameters"]
    for name in sorted(set(before) | set(now)):
        if before.get(name) != now.get(name):
            yield name, before.get(name), now.get(name)


def run_batch(plan: BatchPlan, ray: bool = False, ray_address: str | None = None,
              on_row: Callable[[Row], None] | None = None) -> BatchOutcome:
    """Attribute every pending (image, window), appending each row as it is made; then write
    DIR/summary.json and return the summary and the gate violations over all rows. With ``ray``
    the rows come from a Ray cluster, connected to before anything is written."""
    if not ray:
        return _run(plan, on_row, use_ray=False)
    from lam_trt.scaleout import ray_session

    with ray_session(ray_address):
        return _run(plan, on_row, use_ray=True)


def _run(plan: BatchPlan, on_row: Callable[[Row], None] | None, use_ray: bool) -> BatchOutcome:
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    if not (plan.out_dir / "run.json").exists():
        write_json(plan.out_dir / "run.json", plan.run_info)
    with plan.log.appending() as (rows, append):
        done = {row_key(r) for r in current_rows(rows) if r.get("error_kind") != ENVIRONMENT}
        before, messages = len(rows), {}
        for row in _rows(plan, done, use_ray):
            messages.update({k: v for k, v in row.pop(MESSAGES, {}).items() if k not in messages})
            append(row)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    standing = current_rows(rows)
    summary = summarise(standing)
    violations = plan.gates.violations(standing)
    summary["gates"] = {**asdict(plan.gates), "violations": len(violations), "passed": not violations}
    write_json(plan.out_dir / "summary.json", {**summary, "violations": violations})
    return BatchOutcome(summary, violations, len(rows) - before, len(done), messages)


def _rows(plan: BatchPlan, done: set[Key], ray: bool) -> Iterator[Row]:
    if ray:
        from lam_trt.scaleout import ray_rows

        by_image: dict[str, list[Key]] = {}
        for key in done:
            by_image.setdefault(key[0], []).append(key)
        jobs = [(image, by_image.get(os.path.realpath(image), [])) for image in plan.images]
        yield from ray_rows(plan.model, jobs, plan.params, plan.provider, plan.cache_dir)
        return
    for image in plan.images:
        yield from image_rows(plan.attributor, image, plan.params, done)


__all__ = ["BatchOutcome", "BatchParams", "BatchPlan", "COLUMNS", "Gates", "ResultsLog", "WindowSpec",
           "expand_inputs", "image_rows", "plan_batch", "read_windows_csv", "run_batch", "summarise"]
