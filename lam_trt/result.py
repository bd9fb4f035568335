"""LAMResult: everything one attribution produced, and how it was made."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LAMResult:
    """One attribution of one window. Arrays are NumPy; ``to_dict`` gives the JSON part."""

    attribution: np.ndarray          # signed map, float32 [C, h, w] (C = model input channels)
    saliency: np.ndarray             # abs-normalised map, float32 [h, w] in [0, 1]
    gini: float
    diffusion_index: float
    detector_input: float            # D(F(I))
    detector_baseline: float         # D(F(I')), I' = start of the path
    completeness_gap: float          # sum(attribution) - (D(F(I)) - D(F(I')))
    completeness_gap_relative: float  # gap / (D(F(I)) - D(F(I'))); nan when the difference is 0
    alphas: np.ndarray               # [N] position of each path point, 0 = baseline, 1 = input
    detector_path: np.ndarray        # [N] D(F(p_k))
    contributions: np.ndarray        # [N] sum of grad D(F(p_k)) * w_k
    image: np.ndarray                # LR input, float32 [C, h, w] in [0, 1]
    sr_output: np.ndarray            # F(I), float32 [C_out, H, W]
    window: tuple[int, int, int]     # x (column), y (row), size, in SR-output pixels
    scale: int                       # SR output size / input size
    method: str = "lam"
    meta: dict[str, Any] = field(default_factory=dict)  # model, provider, parameters, versions, timings

    @property
    def convergence_delta(self) -> float:
        """Captum's name for the completeness gap."""
        return self.completeness_gap

    def to_dict(self) -> dict[str, Any]:
        """Everything but the arrays, JSON-serialisable (NaN becomes null)."""
        def num(v: float) -> float | None:
            return None if v is None or not np.isfinite(v) else float(v)

        x, y, size = self.window
        return {
            "method": self.method,
            "window": {"x": int(x), "y": int(y), "size": int(size)},
            "scale": int(self.scale),
            "diffusion_index": num(self.diffusion_index),
            "gini": num(self.gini),
            "detector_input": num(self.detector_input),
            "detector_baseline": num(self.detector_baseline),
            "completeness_gap": num(self.completeness_gap),
            "completeness_gap_relative": num(self.completeness_gap_relative),
            "attribution_sum": num(float(self.attribution.sum(dtype=np.float64))),
            "saliency_max_is_zero": bool(not np.any(self.saliency)),
            "path": {
                "alphas": [float(a) for a in self.alphas],
                "detector": [num(v) for v in self.detector_path],
                "contributions": [num(v) for v in self.contributions],
            },
            "input_shape": list(self.image.shape),
            "output_shape": list(self.sr_output.shape),
            **self.meta,
        }
