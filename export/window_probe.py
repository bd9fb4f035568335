"""Does an attribution graph give, for several windows in one run, what it gives for each alone?

The reverse pass of K windows runs on K x N items (reverse_batch.py). A graph that mixes the items
of a batch (a sum over the batch axis) or pins the batch to a fixed size would then mix or refuse
windows as it would path images. Two windows, in one run and one at a time, once, when the graph
is built: the answer goes into the metadata, and the runner runs one window at a time where the
graph cannot run several (exact, slower, reported).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import onnxruntime as ort

from lam_trt.export.batch_probe import TOLERANCE, ort_message, probe_inputs, relative_l2, window_size

MAX_WINDOWS_KEY = "lam_trt.max_windows"              # "1" where the graph cannot run several windows
WINDOWS_REASON_KEY = "lam_trt.windows_limit_reason"  # why, in one line


def windows_limit(session: ort.InferenceSession, input_shape: tuple[int, int, int],
                  output_shape: tuple[int, int, int], batch: int, bound: Optional[int] = None) -> Optional[str]:
    """None if two windows over ``batch`` path images in one run give what each gives alone
    (windows within ``bound``, the largest side the graph attributes)."""
    path, weights = probe_inputs(input_shape, batch, seed=1)
    _, height, width = output_shape
    windows = np.array([[0, 0, *window_size(height - 1, width - 1, bound)],
                        [height // 2, 0, *window_size(height - 1 - height // 2, width // 2, bound)]], np.int64)
    run = lambda w: session.run(["detector", "attribution", "contribution"],
                                {"path": path, "weights": weights, "windows": w})
    try:
        alone = [run(windows[k:k + 1]) for k in range(2)]
    except Exception:  # ORT's exceptions have no common base class; the batch probe and runner say more
        return None
    try:
        together = run(windows)
    except Exception as e:
        return f"onnxruntime cannot run two windows at once ({ort_message(e)})"
    for i, name in enumerate(("detector", "attribution", "contribution")):
        want = np.concatenate([a[i] for a in alone])
        if together[i].shape != want.shape or relative_l2(together[i], want) > TOLERANCE:
            return f"its {name} for two windows at once differs from one window at a time"
    return None
