"""Building ONNX for lam-trt: the attribution graph (and, with the export extra, PyTorch export)."""
from lam_trt.export.attribution_graph import build_attribution_graph, save_attribution_graph

__all__ = ["build_attribution_graph", "save_attribution_graph"]
