"""Building ONNX for lam-trt: the attribution graph (and, with the export extra, PyTorch export)."""
from lam_trt.export.attribution_graph import build_attribution_graph, save_attribution_graph
from lam_trt.export.options import GraphOptions

__all__ = ["GraphOptions", "build_attribution_graph", "save_attribution_graph"]
