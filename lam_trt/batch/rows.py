"""A batch's rows: one per (image, window), made the same way by the local and the Ray runs; the
parameters that decide their numbers; which rows stand after a resume."""
from __future__ import annotations

import math
import os
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lam_trt.batch.windows import Window, WindowSpec
from lam_trt.errors import InputError, LamTrtError, ProviderError, ResourceError
from lam_trt.window import check_window

METRIC_COLUMNS = ("diffusion_index", "gini", "completeness_gap", "completeness_gap_relative",
                  "detector_input", "detector_baseline", "scale")
COLUMNS = ("image", "image_path", "image_sha256", "window_x", "window_y", "window_size", *METRIC_COLUMNS,
           "warnings", "error", "error_kind", "seconds", "model_sha256", "method", "steps", "sigma",
           "kernel_size", "provider")
# resolved image path, its content's sha256 (None: unreadable), x, y, size (None: an image's own error)
Key = tuple[str, str | None, int | None, int | None, int | None]
Row = dict[str, Any]
ENVIRONMENT = "environment"   # error_kind of a failure of this machine, not of the input: retried on resume
MESSAGES = "_warning_messages"  # a row's warning messages, for stderr only (not a column)


@dataclass(frozen=True)
class BatchParams:
    """Everything that decides a row's numbers; a resumed run must use the same."""

    windows: WindowSpec = field(default_factory=lambda: WindowSpec("center"))
    size: int = 16
    steps: int = 100
    sigma: float = 1.2
    kernel_size: int = 9
    method: str = "lam"
    rule: str = "right"
    hr: bool = False              # the images are HR: each is downscaled by ``scale`` (the model's) first
    scale: int | None = None
    crop: bool = True             # receptive-field cropping where it is exact

    def check(self) -> None:
        """The same checks an attribution makes, before any work (a bad value is exit 2, not rows)."""
        from lam_trt.kernels.gaussian import check_kernel_size, check_sigma
        from lam_trt.kernels.paths import METHODS, check_rule, check_steps

        if self.method not in METHODS:
            raise InputError(f"unknown attribution method {self.method!r}; choose one of {', '.join(METHODS)}")
        check_rule(self.rule)
        check_steps(self.steps)
        check_sigma(self.sigma)
        check_kernel_size(self.kernel_size)
        if self.size < 1:
            raise InputError(f"window size must be >= 1, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        # hr, scale and crop only where they differ from the defaults: a folder written before they
        # existed resumes with the same run.json
        extra = {"hr": True, "scale": self.scale} if self.hr else {}
        return {"windows": self.windows.to_json(), "size": self.size, "steps": self.steps,
                "sigma": self.sigma, "kernel_size": self.kernel_size, "method": self.method,
                "rule": self.rule, "detector": "gradient", "reduce": "sum", **extra,
                **({} if self.crop else {"crop": False})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchParams:
        """Inverse of to_dict (for Ray workers, which get the parameters as JSON)."""
        w = d["windows"]
        spec = WindowSpec("file", listed=tuple(tuple(v) for v in w)) if isinstance(w, list) \
            else WindowSpec.parse(w)
        return cls(spec, d["size"], d["steps"], d["sigma"], d["kernel_size"], d["method"], d["rule"],
                   d.get("hr", False), d.get("scale"), d.get("crop", True))



def image_rows(attributor: Any, image: str, params: BatchParams, done: Collection[Key] = ()) -> Iterator[Row]:
    """The rows of one image that are not in ``done``: one per window, or one error row when the
    image cannot be read or has no room for a window. Used by the local and the Ray runs alike."""
    where = image_identity(image)
    common = {"model_sha256": attributor.sha256, "method": params.method, "steps": params.steps,
              "sigma": params.sigma, "kernel_size": params.kernel_size, "provider": _resolved_provider(attributor)}
    if (*where, None, None, None) in done:
        return
    start = time.perf_counter()
    try:
        img = attributor.load(image, params.hr, params.scale)
        output_shape = attributor.output_shape(img.shape)  # no graph: a crop may need none this size
        windows = params.windows.windows(output_shape, params.size)
    except Exception as e:  # noqa: BLE001 - any failure of one image is that image's row
        yield make_row(image, where, None, {}, e, time.perf_counter() - start, common)
        return
    pending = [w for w in windows if (*where, *w) not in done]
    yield from window_rows(attributor, img, output_shape, (image, where), pending, params, common)


def window_rows(attributor: Any, img: np.ndarray, output_shape: tuple[int, ...],
                source: tuple[str, tuple[str, str | None]], windows: Sequence[Window], params: BatchParams,
                common: dict[str, Any]) -> Iterator[Row]:
    """One row per window, all windows of the image attributed in one call (one forward pass per
    path image); a window that does not fit the output is its own error row. Where the shared call
    fails, each window runs alone, so one window's failure is that window's row only."""
    (image, where), fit, rows = source, [], {}
    for window in windows:
        try:
            check_window(*window, output_shape)
            fit.append(window)
        except InputError as e:
            rows[window] = make_row(image, where, window, {}, e, 0.0, common)
    start = time.perf_counter()
    try:
        results = attributor.attribute(img, windows=fit, **attribute_kwargs(params)) if fit else []
    except Exception:  # noqa: BLE001 - retried window by window below, each failure its own row
        results = [None] * len(fit)
    shared = (time.perf_counter() - start) / max(len(fit), 1)  # the call's time, shared by its windows
    for window, result in zip(fit, results):
        rows[window] = (window_row(attributor, img, image, where, window, params, common) if result is None
                        else result_row(result, image, where, window, shared, common))
    yield from (rows[w] for w in windows)


def attribute_kwargs(params: BatchParams) -> dict[str, Any]:
    """``Attributor.attribute``'s options that ``params`` set (the window and its size aside)."""
    return {"steps": params.steps, "sigma": params.sigma, "kernel_size": params.kernel_size,
            "method": params.method, "rule": params.rule, "crop": "auto" if params.crop else False}


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
        result = attributor.attribute(img, window=(x, y), size=size, **attribute_kwargs(params))
    except Exception as e:  # noqa: BLE001 - a bad window is a row, not the end of the batch
        return make_row(image, where, window, {}, e, time.perf_counter() - start, common)
    return result_row(result, image, where, window, time.perf_counter() - start, common)


def result_row(result: Any, image: str, where: tuple[str, str | None], window: Window, seconds: float,
               common: dict[str, Any]) -> Row:
    values = {k: getattr(result, k) for k in METRIC_COLUMNS}
    row = make_row(image, where, window, values, None, seconds, common)
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
