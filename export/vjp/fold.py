"""Col2Im (torch.nn.functional.fold, IPT): its adjoint is Im2Col (unfold) of the output gradient,
one grouped Conv whose one-hot kernels copy each block position into its own channel (exact: one
product by 1.0 per value), in the C-major, then block-position order both ops use."""
from __future__ import annotations

from lam_trt.export.builder import one_hot_kernels
from lam_trt.export.vjp.registry import vjp


@vjp("Col2Im")
def vjp_col2im(b, node, grads, needs):
    y = node.outputs[0]
    if not (b.has_value(node.inputs[1]) and b.has_value(node.inputs[2])):
        raise NotImplementedError("Col2Im with an image or block shape computed from the image")
    block = [int(k) for k in b.value(node.inputs[2])]
    if len(block) != 2:
        raise NotImplementedError("Col2Im over other than two spatial axes")
    c = b.shape(y)[1]
    spatial = len(block)
    unfolded = b.op("Conv", grads[0], b.const(one_hot_kernels(c, *block)), kernel_shape=block, group=c,
                    strides=list(node.attrs.get("strides", [1] * spatial)),
                    dilations=list(node.attrs.get("dilations", [1] * spatial)),
                    pads=list(node.attrs.get("pads", [0] * 2 * spatial)))
    return [b.op("Reshape", unfolded, b.ints([0, 0, -1])), None, None]
