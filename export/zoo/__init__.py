"""The model zoo: PyTorch definitions of the networks in the LAM paper's Table 1, plus SwinIR.

Each network is built by ``build(name, scale, width, depth, in_channels, **options)``; ``width``
and ``depth`` scale the family (the paper's Fig. 7c varies them for FSRCNN and EDSR) and default
to the published configuration. Parameter names follow the published checkpoints (the source is
named in each module), so those weights load with ``load_state_dict(strict=True)``. Every model
takes and returns images in [0, 1].
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from lam_trt.errors import InputError

from ._blocks import DIV2K_RGB_MEAN

from .carn import CARN
from .edsr import EDSR
from .fsrcnn import FSRCNN
from .imdn import IMDN
from .msrn import MSRN
from .pan import PAN
from .rcan import RCAN
from .rfdn import RFDN
from .rnan import RNAN
from .rrdbnet import RRDBNet
from .san import SAN
from .swinir import SwinIR

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "fsrcnn": FSRCNN,
    "edsr": EDSR,
    "carn": CARN,
    "msrn": MSRN,
    "rrdbnet": RRDBNet,
    "imdn": IMDN,
    "rfdn": RFDN,
    "pan": PAN,
    "rcan": RCAN,
    "rnan": RNAN,
    "san": SAN,
    "swinir": SwinIR,
}

# Architectures whose forward pass only works for input sizes that are multiples of a number;
# their ONNX export fixes H and W (window attention cannot be made shape-generic in ONNX).
FIXED_SIZE = {"swinir"}


def build(
    name: str,
    scale: int = 4,
    width: int | None = None,
    depth: int | None = None,
    in_channels: int = 3,
    **options: Any,
) -> nn.Module:
    """Build a zoo network in eval mode; ``None`` keeps the published width or depth."""
    try:
        constructor = ARCHITECTURES[name.lower()]
    except KeyError:
        raise InputError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}") from None
    sizes = {k: v for k, v in (("width", width), ("depth", depth)) if v is not None}
    try:
        model = constructor(scale=scale, in_channels=in_channels, **sizes, **options)
    except TypeError as e:  # an option the architecture does not take
        raise InputError(f"{name}: {e}") from None
    return model.eval()


__all__ = ["ARCHITECTURES", "DIV2K_RGB_MEAN", "FIXED_SIZE", "build"]
