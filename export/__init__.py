"""Building ONNX for lam-trt: the attribution graph (and, with the export extra, PyTorch export).

The runtime (``lam_trt/*.py``) uses only what this module exports: the model read once
(``load_source_model``), the graph builder, and the metadata keys a built graph carries.
"""
from lam_trt.export.attribution_graph import GRAPH_FORMAT, build_attribution_graph, save_attribution_graph
from lam_trt.export.batch_probe import BATCH_REASON_KEY, MAX_BATCH_KEY, ort_message
from lam_trt.export.model_report import inspect_model
from lam_trt.export.model import ReceptiveField, SourceModel, load_source_model
from lam_trt.export.options import WARNINGS_KEY as EXPORT_WARNINGS_KEY, GRAPH_OPTIONS_KEY, WINDOW_BOUND, WINDOW_BOUND_KEY, GraphOptions
from lam_trt.export.source import image_io, load_onnx, model_sha256, static_dims
from lam_trt.export.window_probe import MAX_WINDOWS_KEY, WINDOWS_REASON_KEY

__all__ = ["BATCH_REASON_KEY", "EXPORT_WARNINGS_KEY", "GRAPH_FORMAT", "GRAPH_OPTIONS_KEY", "GraphOptions", "MAX_BATCH_KEY", "MAX_WINDOWS_KEY",
           "ReceptiveField", "SourceModel", "build_attribution_graph", "image_io", "inspect_model",
           "load_onnx", "load_source_model", "model_sha256", "ort_message", "save_attribution_graph",
           "static_dims", "WINDOW_BOUND", "WINDOW_BOUND_KEY", "WINDOWS_REASON_KEY"]
