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

from lam_trt import metrics
from lam_trt.metrics import format_gap  # noqa: F401 - kept importable from here

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


def _num(v: Any) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def warnings_from_json(text: str | None) -> list[ResultWarning]:
    """Warnings stored as JSON (attribution-graph metadata); none for an empty or absent value."""
    return [ResultWarning.from_dict(d) for d in json.loads(text)] if text else []


# ---- assembling a result -----------------------------------------------------------------------


@dataclass
class Run:
    """What every window attributed from one path of one image shares: the input, the path's two
    ends through the network, the crop, the run's warnings and its provenance."""

    image: np.ndarray                # LR input, float32 [C, h, w]
    sr: np.ndarray                   # [2, C', H, W]: F(I) and F(I') (I' the path's start)
    alphas: np.ndarray               # [N] position of each path point
    method: str
    crop: Any                        # the crop.Crop the path ran on (it pastes maps back to full size)
    warnings: list[ResultWarning]    # about the model, the graph and the run, for every window
    meta: dict[str, Any]             # provenance (see ``provenance.describe_run``), crop included
    hr_image: Optional[np.ndarray] = None
    gap_warning: float = metrics.GAP_WARNING

    @property
    def scale(self) -> int:
        return int(round(self.sr.shape[2] / self.image.shape[1]))


def window_result(run: Run, window: tuple[int, int, int], integral: np.ndarray, detector_path: np.ndarray,
                  contributions: np.ndarray) -> LAMResult:
    """The result of ``window`` (x, y, size) from the runner's sum (float64, on the crop) and
    per-step values; its numbers are computed from that sum, the map is it pasted to full size."""
    x, y, size = window
    ends = metrics.gradient_detector(run.sr, (y, x, size, size))
    attribution = run.crop.paste(integral.astype(np.float32), run.image.shape)
    saliency = metrics.abs_normalised(attribution)
    numbers, warnings = judge(run.method, integral, saliency, (float(ends[0]), float(ends[1])), run.sr[0],
                              size, run.gap_warning)
    return LAMResult(
        attribution=attribution, saliency=saliency, detector_input=float(ends[0]),
        detector_baseline=float(ends[1]), alphas=run.alphas, detector_path=detector_path,
        contributions=contributions, image=run.image, sr_output=run.sr[0], window=(x, y, size),
        scale=run.scale, method=run.method, meta=run.meta, warnings=[*run.warnings, *warnings],
        hr_image=run.hr_image, **numbers)


def judge(method: str, attribution: np.ndarray, saliency: np.ndarray, ends: tuple[float, float],
          sr: np.ndarray, size: int, gap_warning: float) -> tuple[dict[str, Any], list[ResultWarning]]:
    """The result's numbers, None where they mean nothing, and the warnings that say why."""
    d_input, d_baseline = ends
    warnings: list[ResultWarning] = []
    di = gini = gap = rel = None
    reason = metrics.degenerate_reason(attribution, d_input, size, metrics.mean_gradient(sr))
    if reason:
        warnings.append(ResultWarning(DEGENERATE_WINDOW, f"DI and Gini are undefined: {reason}",
                                      {"detector_input": d_input}))
    else:
        gini, di = metrics.gini(saliency), metrics.diffusion_index(saliency)
    if method not in PATH_METHODS:
        warnings.append(ResultWarning(NO_PATH_INTEGRAL, f"{method} is one gradient, not a path integral: "
                                      "it has no completeness gap"))
        return {"gini": gini, "diffusion_index": di, "completeness_gap": None,
                "completeness_gap_relative": None}, warnings
    gap, rel = metrics.completeness(float(attribution.sum(dtype=np.float64)), d_input, d_baseline)
    rel = rel if np.isfinite(rel) else None  # D(F(I)) = D(F(I')) exactly: no ratio
    if metrics.nothing_to_attribute(d_input, d_baseline):
        warnings.append(ResultWarning(NOTHING_TO_ATTRIBUTE, f"D(F(I)) {d_input:.4g} and D(F(I')) {d_baseline:.4g} "
                                      "are nearly equal: the path changes nothing to attribute, and the "
                                      "relative gap divides by almost nothing",
                                      {"difference": d_input - d_baseline}))
    elif abs(rel) > gap_warning:
        warnings.append(ResultWarning(COMPLETENESS_GAP, f"the completeness gap is {100 * rel:.1f}% of "
                                      f"D(F(I)) - D(F(I')), above {100 * gap_warning:g}%: use more --steps "
                                      "or --rule trapezoid", {"relative": rel, "threshold": gap_warning}))
    return {"gini": gini, "diffusion_index": di, "completeness_gap": gap, "completeness_gap_relative": rel}, warnings


def output_warnings(input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> list[ResultWarning]:
    """One warning when the output is not an image of the input's channels at an integer scale >= 2."""
    (c, h, w), (c_out, h_out, w_out) = input_shape, output_shape
    if c_out == c and h_out % h == 0 and h_out * w == w_out * h and h_out >= 2 * h:
        return []
    return [ResultWarning(OUTPUT_NOT_SR_IMAGE, f"the model maps {c}x{h}x{w} to {c_out}x{h_out}x{w_out}, not to "
                          f"an image of {c} channels at an integer scale >= 2; LAM assumes super-resolution",
                          {"input_shape": [c, h, w], "output_shape": [c_out, h_out, w_out]})]


def batch_warnings(fallback: Optional[str]) -> list[ResultWarning]:
    """One warning when the path images ran one per run (exact, slower) because the graph cannot batch."""
    if not fallback:
        return []
    return [ResultWarning(BATCH_FALLBACK, f"the attribution graph cannot run several path images at once "
                          f"({fallback}); they ran one at a time (exact, slower)", {"reason": fallback})]


def windows_warnings(limit: Optional[str], windows: int) -> list[ResultWarning]:
    """One warning when several windows ran one per run (exact, slower) because the graph cannot
    run them together."""
    if not limit or windows < 2:
        return []
    return [ResultWarning(BATCH_FALLBACK, f"the attribution graph cannot run several windows at once "
                          f"({limit}); they ran one at a time (exact, slower)", {"reason": limit})]


__all__ = ["LAMResult", "ResultWarning", "Run", "batch_warnings", "windows_warnings", "judge", "output_warnings", "window_result", "format_gap", "unique_warnings", "warnings_from_json",
           "DEGENERATE_WINDOW", "NOTHING_TO_ATTRIBUTE", "COMPLETENESS_GAP", "NO_PATH_INTEGRAL",
           "OUTPUT_NOT_SR_IMAGE", "GRAPH_CACHE_UNAVAILABLE", "BATCH_FALLBACK", "GRADIENT_CAVEAT", "WARNINGS_METADATA_KEY"]
