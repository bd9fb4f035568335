"""The window geometry of Conv, ConvTranspose and pooling nodes, resolved once for every rule that
needs it: their VJP rules, the weight gradients and their receptive-field rules."""
from __future__ import annotations

from dataclasses import dataclass

from lam_trt.export.builder import Node

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Geometry:
    """Per spatial axis: kernel, strides, dilations; pads as [begins..., ends...]; the group count."""

    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    pads: list[int]
    group: int

    @property
    def spatial(self) -> int:
        return len(self.kernel)

    def extent(self, i: int) -> int:
        """Input positions one output position spans along spatial axis ``i``: (k - 1) * d + 1."""
        return (self.kernel[i] - 1) * self.dilations[i] + 1


def geometry(node: Node, x_shape: Shape | None = None, w_shape: Shape | None = None,
             y_shape: Shape | None = None) -> Geometry:
    """The node's geometry with explicit pads: auto_pad (and ConvTranspose's output_shape) resolved
    from the input (ConvTranspose: output) shape; where that shape is not given, pads stay as written.
    The kernel is ``kernel_shape``, else the weight's spatial dims."""
    kernel = list(node.attrs.get("kernel_shape", w_shape[2:] if w_shape else []))
    spatial = len(kernel)
    strides = list(node.attrs.get("strides", [1] * spatial))
    dilations = list(node.attrs.get("dilations", [1] * spatial))
    pads = list(node.attrs.get("pads", [0] * (2 * spatial)))
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    same = auto_pad in ("SAME_UPPER", "SAME_LOWER")
    if node.op_type == "ConvTranspose" and ("output_shape" in node.attrs or same):
        out_pad = list(node.attrs.get("output_padding", [0] * spatial))
        for i in range(spatial if x_shape and y_shape else 0):
            full = strides[i] * (x_shape[2 + i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1
            # the ONNX spec (and ONNX Runtime): the odd pixel goes at the end only for SAME_UPPER
            _split(pads, i, max(full - y_shape[2 + i], 0), upper=auto_pad == "SAME_UPPER")
    elif same:
        for i in range(spatial if x_shape else 0):
            size = x_shape[2 + i]
            out = -(-size // strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
            _split(pads, i, total, upper=auto_pad == "SAME_UPPER")
    elif auto_pad == "VALID":
        pads = [0] * (2 * spatial)
    return Geometry(kernel, strides, dilations, pads, int(node.attrs.get("group", 1)))


def _split(pads: list[int], i: int, total: int, upper: bool) -> None:
    """Pad axis ``i`` by ``total``, the odd one at the end (SAME_UPPER) or at the beginning."""
    small, large = total // 2, total - total // 2
    pads[i], pads[i + len(pads) // 2] = (small, large) if upper else (large, small)
