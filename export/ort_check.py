"""Is it the exported file's fault? Run the user's model, as it is, in ONNX Runtime.

When lam-trt's own probe of the model fails, the user needs to know whether the file itself
runs at all: if it does not, no attribution tool can help and the export must be redone.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from lam_trt.errors import ModelError

PROBE_FAILED = "onnxruntime cannot run the model"  # specialise's message when its probe run fails


def own_failure(model: onnx.ModelProto, input_shape: tuple[int, int, int]) -> str | None:
    """The first line of ONNX Runtime's error when ``model`` itself cannot run one image of
    ``input_shape``, with or without graph optimisations; None when it runs."""
    x = np.random.default_rng(0).random((1, *input_shape), dtype=np.float32)
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.log_severity_level = 4
        try:
            session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            session.run(None, {session.get_inputs()[0].name: x})
        except Exception as e:  # ORT's exceptions share no base class
            return str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    return None


def blame_export(error: ModelError, model: onnx.ModelProto, input_shape: tuple[int, int, int]) -> ModelError:
    """``error`` (lam-trt could not run the model) restated when the exported file itself fails."""
    if not str(error).startswith(PROBE_FAILED):  # other refusals are about the input, not the file
        return error
    failure = own_failure(model, input_shape)
    if failure is None:
        return error
    return ModelError(f"the exported model itself does not run in ONNX Runtime at input {list(input_shape)} "
                      f"(a fault of the export, not of lam-trt; re-export it, e.g. with the other torch "
                      f"exporter): {failure}")
