"""A batch's summary (counts, warnings, the DI distribution) and its QA gates over the rows that stand."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lam_trt.batch.rows import ENVIRONMENT, Row, row_warnings
from lam_trt.errors import InputError
from lam_trt.result import NOTHING_TO_ATTRIBUTE


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
