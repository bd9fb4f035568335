"""Does an attribution graph give, for a batch of path images, what it gives for each one alone?

The batch rewrite (specialise.follow_batch) keeps the batch dynamic for the patterns it knows; a
shape constant it does not know can still pin the batch to 1 (an ONNX Runtime error at batch N)
or, worse, mix the images of a batch (a silent difference). Both show when three path images run
as one batch and one at a time, once, when the graph is built (three, not two: the dynamo
exporter traces at batch 2, and a shape baked there is right at 2 only); the answer goes into the
graph's metadata and the runner runs one path image at a time where the graph cannot batch.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np
import onnx
import onnxruntime as ort

MAX_BATCH_KEY = "lam_trt.max_batch"              # "1" where the graph cannot run batched
BATCH_REASON_KEY = "lam_trt.batch_limit_reason"  # why, in one line
TOLERANCE = 1e-4  # relative L2; batched kernels only reorder float sums (~1e-7)
PROBE_LIMIT = (1 << 31) - (1 << 24)  # sessions from bytes stop at protobuf's 2 GB


def batch_limit(session: ort.InferenceSession, input_shape: tuple[int, int, int],
                output_shape: tuple[int, int, int], bound: Optional[int] = None) -> Optional[str]:
    """None if three path images run as one batch give what they give one at a time; else why not.
    ``bound``: the largest window side the graph attributes (None: any).

    A graph that does not run even at batch 1 is not judged here (the runner reports that)."""
    path, weights = probe_inputs(input_shape, 3, seed=0)
    _, height, width = output_shape
    windows = np.array([[0, 0, *window_size(height - 1, width - 1, bound)]], np.int64)
    run = lambda lo, hi: session.run(["detector", "attribution", "contribution"], {
        "path": path[lo:hi], "weights": weights[lo:hi], "windows": windows})
    try:
        single = [run(i, i + 1) for i in range(3)]
    except Exception:  # ORT's exceptions have no common base class
        return None
    try:
        together = run(0, 3)
    except Exception as e:
        return f"onnxruntime cannot run it at batch 3 ({ort_message(e)})"
    expected = {"detector": np.concatenate([s[0] for s in single], -1), "attribution": sum(s[1] for s in single),
                "contribution": np.concatenate([s[2] for s in single], -1)}
    for (name, want), have in zip(expected.items(), together):
        if np.shape(have) != np.shape(want) or relative_l2(have, want) > TOLERANCE:
            return f"its {name} at batch 3 differs from one path image at a time"
    return None


def probe_session(model: onnx.ModelProto) -> Optional[ort.InferenceSession]:
    """A quiet CPU session of ``model`` for a probe; None where the graph is too large to load from bytes."""
    if model.ByteSize() > PROBE_LIMIT:
        return None
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def window_size(height: int, width: int, bound: Optional[int]) -> tuple[int, int]:
    """A probe window's size: as given, within the graph's window bound."""
    return (height, width) if bound is None else (min(height, bound), min(width, bound))


def probe_inputs(input_shape: tuple[int, int, int], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random path images and weights of ``input_shape``."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, *input_shape), dtype=np.float32),
            rng.standard_normal((n, *input_shape)).astype(np.float32))


def relative_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    diff = np.linalg.norm(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    scale = np.linalg.norm(np.asarray(expected, np.float64))
    return float(diff / scale) if scale > 0 else float(diff)


def ort_message(error: Exception) -> str:
    """ONNX Runtime's error in one short line: the failing node and what went wrong."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = text.replace("Non-zero status code returned while running ", "")
    text = re.sub(r"/onnxruntime_src/\S+ \S+\([^)]*\) ", "", text)
    return text[:200]
