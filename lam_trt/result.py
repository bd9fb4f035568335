"""LAMResult: one attribution of one window, with what makes its numbers less than they seem.

Warnings are one mechanism for every part of lam-trt: a ``ResultWarning(code, message, details)``
in ``LAMResult.warnings`` and in result.json's ``warnings``; the CLI prints each once on stderr and
batch's QA gates read their codes. Anything that cannot be trusted as it stands adds one: its
``code`` a short kebab-case name (a constant below), ``message`` one line for a person, ``details``
JSON-serialisable numbers behind it. Code that adds warnings outside the Attributor (a runner, the
graph builder) hands them over as ``ResultWarning`` lists or, stored in an attribution graph,
as the JSON list of their ``to_dict()`` under the metadata key ``WARNINGS_METADATA_KEY``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

# Codes lam-trt itself emits (see README "Warnings")
DEGENERATE_WINDOW = "degenerate-window"          # DI and Gini undefined: zero map or featureless window
NOTHING_TO_ATTRIBUTE = "nothing-to-attribute"    # D(F(I)) ~ D(F(I')): the path changes nothing
COMPLETENESS_GAP = "completeness-gap"            # |relative gap| above the warning threshold
NO_PATH_INTEGRAL = "no-path-integral"            # grad, grad-x-input: no completeness check exists
OUTPUT_NOT_SR_IMAGE = "output-not-sr-image"      # other channels than the input, or not an integer x2+
GRAPH_CACHE_UNAVAILABLE = "graph-cache-unavailable"  # the graph was built for this run only
BATCH_FALLBACK = "batch-fallback"                # path images ran one per run: the graph cannot batch
GRADIENT_CAVEAT = "gradient-caveat"              # random nodes fixed, a lost straight-through, a cut selection
WARNINGS_METADATA_KEY = "lam_trt.warnings"       # attribution-graph metadata: JSON list of warnings
PATH_METHODS = ("lam", "ig")  # integrated along a path; grad and grad-x-input are one gradient


@dataclass(frozen=True)
class ResultWarning:
    """A reason to read a number with care: ``code`` for programs, ``message`` for people."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResultWarning:
        return cls(str(d["code"]), str(d["message"]), dict(d.get("details") or {}))


def unique_warnings(warnings: Iterable[ResultWarning]) -> list[ResultWarning]:
    """Each (code, message) once, first occurrence kept: how the CLI says a warning once."""
    seen: dict[tuple[str, str], ResultWarning] = {}
    for w in warnings:
        seen.setdefault((w.code, w.message), w)
    return list(seen.values())


@dataclass(repr=False)
class LAMResult:
    """One attribution of one window. Arrays are NumPy; ``to_dict`` gives the JSON part.

    ``diffusion_index`` and ``gini`` are None when the window is degenerate (``undefined_reason``
    says why); ``completeness_gap`` and its relative form are None for methods without a path
    integral (grad, grad-x-input). ``save(folder)`` writes the map, result.json and the pictures;
    ``plot()`` returns lam.png's panels as a matplotlib Figure.
    """

    attribution: np.ndarray          # signed map, float32 [C, h, w] (C = model input channels)
    saliency: np.ndarray             # abs-normalised map, float32 [h, w] in [0, 1]
    gini: Optional[float]
    diffusion_index: Optional[float]
    detector_input: float            # D(F(I))
    detector_baseline: float         # D(F(I')), I' = start of the path
    completeness_gap: Optional[float]           # sum(attribution) - (D(F(I)) - D(F(I')))
    completeness_gap_relative: Optional[float]  # gap / (D(F(I)) - D(F(I'))); None when undefined
    alphas: np.ndarray               # [N] position of each path point, 0 = baseline, 1 = input
    detector_path: np.ndarray        # [N] D(F(p_k))
    contributions: np.ndarray        # [N] sum of grad D(F(p_k)) * w_k
    image: np.ndarray                # LR input, float32 [C, h, w] in [0, 1]
    sr_output: np.ndarray            # F(I), float32 [C_out, H, W]
    window: tuple[int, int, int]     # x (column), y (row), size, in SR-output pixels
    scale: int                       # SR output size / input size
    method: str = "lam"
    meta: dict[str, Any] = field(default_factory=dict)  # input, model, parameters, runtime, versions, ...
    warnings: list[ResultWarning] = field(default_factory=list)
    hr_image: Optional[np.ndarray] = None  # with --hr: the HR image (cropped to a multiple of the scale)

    @property
    def convergence_delta(self) -> Optional[float]:
        """Captum's name for the completeness gap."""
        return self.completeness_gap

    @property
    def path_integral(self) -> bool:
        """True when the map is a path integral (lam, ig), so the path plot and the gap mean something."""
        return self.method in PATH_METHODS

    @property
    def undefined_reason(self) -> Optional[str]:
        """Why DI and Gini are undefined (a degenerate window), or None when they are defined."""
        return next((w.message for w in self.warnings if w.code == DEGENERATE_WINDOW), None)

    def warning_codes(self) -> list[str]:
        return [w.code for w in self.warnings]

    def to_dict(self) -> dict[str, Any]:
        """The JSON part: the numbers first, then provenance, then the per-step arrays (NaN -> null)."""
        x, y, size = self.window
        meta = dict(self.meta)
        head = {key: meta.pop(key) for key in ("command", "created") if key in meta}
        return {
            **head,
            "method": self.method,
            "window": {"x": int(x), "y": int(y), "size": int(size)},
            "scale": int(self.scale),
            "diffusion_index": _num(self.diffusion_index),
            "gini": _num(self.gini),
            "undefined_reason": self.undefined_reason,
            "detector_input": _num(self.detector_input),
            "detector_baseline": _num(self.detector_baseline),
            "completeness_gap": _num(self.completeness_gap),
            "completeness_gap_relative": _num(self.completeness_gap_relative),
            "attribution_sum": _num(float(self.attribution.sum(dtype=np.float64))),
            "saliency_max_is_zero": bool(not np.any(self.saliency)),
            "warnings": [w.to_dict() for w in self.warnings],
            "input_shape": list(self.image.shape),
            "output_shape": list(self.sr_output.shape),
            **meta,
            "path": {
                "alphas": [float(a) for a in self.alphas],
                "detector": [_num(v) for v in self.detector_path],
                "contributions": [_num(v) for v in self.contributions],
            },
        }

    def save(self, folder: str | os.PathLike, figure: str = "png", dpi: int = 150, **extra: Any) -> dict[str, Any]:
        """Write attribution.npy, result.json and the pictures (lam.<figure>; path.<figure> for path
        integrals) into ``folder``, all or nothing. Returns the JSON dict, with the files written."""
        from lam_trt.report import write_result  # the pictures need matplotlib: load it only here

        return write_result(self, folder, figure=figure, dpi=dpi, **extra)

    def plot(self, path: str | os.PathLike | None = None, show: bool = False, alpha: float = 0.5,
             dpi: int = 150) -> Any:
        """The panels of lam.png as a matplotlib Figure (Jupyter's inline backend displays it).
        ``path``: also write it there (png, pdf or svg, by the suffix); ``show``: draw it on a pyplot
        figure and call ``plt.show()`` (a window, as any pyplot figure)."""
        from lam_trt.render import lam_figure, save_figure  # matplotlib: load it only here

        fig = lam_figure(self, alpha, dpi, pyplot=show)
        if path is not None:
            save_figure(fig, path)
        if show:
            import matplotlib.pyplot as plt

            plt.show()
        return fig

    def summary(self) -> str:
        """Two or three lines for a person: the numbers, the window, the warnings."""
        x, y, size = self.window
        di = "undefined" if self.diffusion_index is None else f"{self.diffusion_index:.3f}"
        gini = "undefined" if self.gini is None else f"{self.gini:.4f}"
        lines = [f"{self.method.upper()} x{self.scale} window x={x} y={y} size={size}: DI {di}, Gini {gini}, "
                 f"D(F(I)) {self.detector_input:.4g}, D(F(I')) {self.detector_baseline:.4g}, "
                 f"completeness gap {format_gap(self.completeness_gap, self.completeness_gap_relative)}"]
        lines += [f"warning [{w.code}]: {w.message}" for w in self.warnings]
        return "\n".join(lines)

    def __repr__(self) -> str:
        di = None if self.diffusion_index is None else round(self.diffusion_index, 4)
        return (f"LAMResult(method={self.method!r}, window={tuple(self.window)}, scale={self.scale}, "
                f"diffusion_index={di}, completeness_gap_relative={_num(self.completeness_gap_relative)}, "
                f"warnings={self.warning_codes()}, attribution=<{'x'.join(map(str, self.attribution.shape))} "
                f"{self.attribution.dtype}>)")

    __str__ = summary


def format_gap(gap: Optional[float], relative: Optional[float]) -> str:
    """'0.0123 (1.20%)', '0.0123' without a ratio, 'none (no path integral)' without a gap."""
    if gap is None:
        return "none (no path integral)"
    share = f" ({100 * relative:.2f}%)" if relative is not None and np.isfinite(relative) else ""
    return f"{gap:.4g}{share}"


def _num(v: Any) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def warnings_from_json(text: str | None) -> list[ResultWarning]:
    """Warnings stored as JSON (attribution-graph metadata); none for an empty or absent value."""
    return [ResultWarning.from_dict(d) for d in json.loads(text)] if text else []


__all__ = ["LAMResult", "ResultWarning", "format_gap", "unique_warnings", "warnings_from_json",
           "DEGENERATE_WINDOW", "NOTHING_TO_ATTRIBUTE", "COMPLETENESS_GAP", "NO_PATH_INTEGRAL",
           "OUTPUT_NOT_SR_IMAGE", "GRAPH_CACHE_UNAVAILABLE", "BATCH_FALLBACK", "GRADIENT_CAVEAT", "WARNINGS_METADATA_KEY"]
