"""Checkpoints (.pth, .pt, .ckpt, .safetensors) -> PyTorch modules ready for ONNX export.

A checkpoint is loaded either into a zoo architecture named by the user (``strict=True``), or
into whatever architecture spandrel detects from its keys (SwinIR, HAT, RCAN, ESRGAN, Compact,
SPAN, DAT, ...). From spandrel only the bare network (``descriptor.model``) is kept: its
descriptor's ``__call__`` pads and clamps, which would hide the model's true gradients.
"""
from __future__ import annotations

import inspect
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from lam_trt.errors import InputError

from . import zoo

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin")
# Where training frameworks nest the weights; the first one present wins.
_NESTED_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net_g", "generator", "net")
_WRAPPER_PREFIXES = ("model.", "net_g.", "generator.", "net.")  # training frameworks' attribute names
# The first convolution of each zoo network: it tells the input channels and the width.
_FIRST_CONV = {
    "fsrcnn": "first_part.0.weight",
    "edsr": "head.0.weight",
    "carn": "entry.weight",
    "msrn": "head.0.weight",
    "rrdbnet": "conv_first.weight",
    "imdn": "fea_conv.weight",
    "rfdn": "fea_conv.weight",
    "pan": "conv_first.weight",
    "rcan": "head.0.weight",
    "rnan": "head.0.weight",
    "san": "head.0.weight",
    "swinir": "conv_first.weight",
}
# Keys that exist once per block: counting their distinct indices gives the depth.
_DEPTH_KEY = {
    "edsr": r"body\.(\d+)\.body\.0\.weight",
    "carn": r"b(\d+)\.b1\.body\.0\.weight",
    "msrn": r"body\.(\d+)\.conv_3_1\.weight",
    "rrdbnet": r"body\.(\d+)\.rdb1\.conv1\.weight",
    "imdn": r"IMDB(\d+)\.c1\.weight",
    "rfdn": r"B(\d+)\.c1_d\.weight",
    "pan": r"SCPA_trunk\.(\d+)\.conv1_a\.weight",
    "rcan": r"body\.(\d+)\.body\.0\.body\.0\.weight",
    "san": r"RG\.(\d+)\.conv_last\.weight",
    "swinir": r"layers\.(\d+)\.conv\.weight",
}


@dataclass
class LoadedModel:
    """A network ready for export, with what the exporter and the report need to know."""

    module: nn.Module
    architecture: str
    scale: int
    in_channels: int
    fixed_size: bool  # window attention and similar: the ONNX graph must fix H and W
    size_multiple: int = 1
    min_size: int = 1
    source: str = "random-init"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the weights of a checkpoint file, unwrapping the usual training containers."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise InputError(f"{path.name}: expected a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise InputError(f"{path.name}: not a readable safetensors file ({_first_line(e)})") from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickled code objects are refused by weights_only, corrupt files fail too
        raise InputError(
            f"{path.name}: cannot read the weights ({_first_line(e)}); save model.state_dict() instead"
        ) from e
    return _unwrap(obj, path.name)


def _unwrap(obj: Any, name: str) -> dict[str, torch.Tensor]:
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        nested = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
        if nested is None:
            break
        obj = nested
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise InputError(f"{name}: no tensor weights found (expected a state dict)")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return _strip_prefix(state, "module.")  # DataParallel


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _match_zoo_keys(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Lightning-style checkpoints prefix every key with the attribute holding the network."""
    if _FIRST_CONV[arch] in state:
        return state
    for prefix in _WRAPPER_PREFIXES:
        stripped = _strip_prefix(state, prefix)
        if _FIRST_CONV[arch] in stripped:
            return stripped
    return state


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and any(isinstance(v, torch.Tensor) for v in obj.values())


def build_zoo_model(
    arch: str,
    state: Mapping[str, torch.Tensor] | None = None,
    *,
    scale: int = 4,
    width: int | None = None,
    depth: int | None = None,
    source: str = "random-init",
    **options: Any,
) -> LoadedModel:
    """A zoo network, with ``state`` loaded strictly when given (its configuration read from it)."""
    arch = arch.lower()
    in_channels = 3
    if arch not in _FIRST_CONV:
        zoo.build(arch)  # raises the "unknown architecture" error
    if state is not None:
        state = _match_zoo_keys(dict(state), arch)
        inferred = infer_config(arch, state, scale)
        in_channels = inferred.pop("in_channels", 3)
        width = width or inferred.pop("width", None)
        depth = depth or inferred.pop("depth", None)
        options = inferred | options
    module = zoo.build(arch, scale=scale, width=width, depth=depth, in_channels=in_channels, **options)
    if state is not None:
        _load_strict(module, state, arch)
    fixed = arch in zoo.FIXED_SIZE
    multiple = getattr(module, "window_size", 1) if fixed else 1
    return LoadedModel(module, arch, scale, in_channels, fixed, multiple, source=source)


def infer_config(arch: str, state: Mapping[str, torch.Tensor], scale: int) -> dict[str, Any]:
    """Read a zoo network's configuration off its weights: channels, width, depth and options."""
    config: dict[str, Any] = {}
    first = state.get(_FIRST_CONV[arch])
    if first is not None:
        unshuffle = {1: 16, 2: 4}.get(scale, 1) if arch == "rrdbnet" else 1
        config["in_channels"], config["width"] = first.shape[1] // unshuffle, int(first.shape[0])
    if arch in _DEPTH_KEY:
        config |= _counted(state, "depth", _DEPTH_KEY[arch])
    config |= _ARCH_OPTIONS.get(arch, lambda _s: {})(state)
    return config


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.fullmatch(pattern, k))})


def _counted(state: Mapping[str, torch.Tensor], option: str, pattern: str) -> dict[str, int]:
    n = _count(state, pattern)
    return {option: n} if n else {}


def _swinir_options(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    table = state.get("layers.0.residual_group.blocks.0.attn.relative_position_bias_table")
    if table is None:
        return {}
    window = (math.isqrt(table.shape[0]) + 1) // 2
    options: dict[str, Any] = {
        "window_size": window,
        "num_heads": int(table.shape[1]),
        "blocks_per_layer": _count(state, r"layers\.0\.residual_group\.blocks\.(\d+)\.norm1\.weight"),
        "mlp_ratio": state["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0]
        / state["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[1],
        "upsampler": "pixelshuffle" if "conv_before_upsample.0.weight" in state else "pixelshuffledirect",
    }
    mask = state.get("layers.0.residual_group.blocks.1.attn_mask")
    if mask is not None:  # the training patch size: the mask holds one entry per window
        options["img_size"] = math.isqrt(mask.shape[0]) * window
    return options


def _fsrcnn_options(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    if "mid_part.0.weight" not in state:
        return {}
    mapping = sum(1 for k, v in state.items() if k.startswith("mid_part.") and v.dim() == 4) - 2
    return {"shrink": int(state["mid_part.0.weight"].shape[0]), "depth": mapping}


def _rnan_options(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    options = _rgb_range(state)
    if "body_nl_low.0.body.1.weight" in state:  # the two non-local groups plus the plain ones
        options["depth"] = 2 + _count(state, r"body\.(\d+)\.body\.0\.RA_RB1\.0\.body\.0\.weight")
    return options


def _rgb_range(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """EDSR-family mean shifts store -rgb_range * DIV2K mean as their bias: read the range back."""
    bias = state.get("sub_mean.bias")
    if bias is None or bias.numel() != 3:
        return {}
    value = float(-bias[0]) / zoo.DIV2K_RGB_MEAN[0]
    return {"rgb_range": next((r for r in (1.0, 255.0) if math.isclose(value, r, rel_tol=1e-3)), value)}


def _edsr_options(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    options = _rgb_range(state)
    if "head.0.weight" in state and state["head.0.weight"].shape[0] >= 256:
        options["res_scale"] = 0.1  # the paper's large EDSR (width 256) scales its residuals
    return options


_ARCH_OPTIONS = {
    "fsrcnn": _fsrcnn_options,
    "edsr": _edsr_options,
    "msrn": _rgb_range,
    "rnan": _rnan_options,
    "carn": lambda s: {"multi_scale": "upsample.up2.body.0.weight" in s},
    "rrdbnet": lambda s: {"num_grow_ch": int(s["body.0.rdb1.conv1.weight"].shape[0])} if "body.0.rdb1.conv1.weight" in s else {},
    "pan": lambda s: {"up_width": int(s["upconv1.weight"].shape[0])} if "upconv1.weight" in s else {},
    "rcan": lambda s: _rgb_range(s) | _counted(s, "n_resblocks", r"body\.0\.body\.(\d+)\.body\.0\.weight"),
    "san": lambda s: _rgb_range(s) | _counted(s, "n_resblocks", r"RG\.0\.rcab\.(\d+)\.conv_first\.0\.weight"),
    "swinir": _swinir_options,
}


def _random_init_options(arch: str) -> dict[str, Any]:
    """Random weights on 0..255 pixel values blow activations up by 255 and, in the attention
    networks, saturate softmaxes: random EDSR-family models take [0, 1] directly instead."""
    constructor = zoo.ARCHITECTURES.get(arch.lower())
    takes_range = constructor is not None and "rgb_range" in inspect.signature(constructor).parameters
    return {"rgb_range": 1.0} if takes_range else {}


def _load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], arch: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        parts = [
            f"{label} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
            if keys
        ]
        raise InputError(
            f"the checkpoint does not fit {arch} at this --scale/--width/--depth: {'; '.join(parts)}"
        )
    module.load_state_dict(state, strict=True)


def load_with_spandrel(state: Mapping[str, torch.Tensor], source: str) -> LoadedModel:
    """Detect the architecture with spandrel and keep its bare network."""
    try:
        import spandrel
    except ImportError as e:
        raise InputError("detecting the architecture needs spandrel: pip install 'lam-trt[export]'") from e
    try:
        with warnings.catch_warnings():  # architectures' own deprecation noise
            warnings.simplefilter("ignore")
            descriptor = spandrel_loader().load_from_state_dict(dict(state))
    except spandrel.UnsupportedModelError:
        raise InputError(f"{source}: spandrel does not recognise this architecture; name it with --arch") from None
    except Exception as e:
        raise InputError(f"{source}: spandrel could not load it ({_first_line(e)})") from e
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise InputError(f"{source}: {descriptor.architecture.name} is not a single-image restoration model")
    req = descriptor.size_requirements
    # spandrel pads transformer inputs to the window size inside forward(); ONNX would freeze that
    fixed = req.multiple_of > 1 or req.square or _window_size(descriptor.model) > 1
    module = image_function(descriptor)
    channels = descriptor.input_channels
    if descriptor.architecture.id in _BARE_NETWORK:  # the network's own input, not the pipeline's
        channels = next((m.in_channels for m in descriptor.model.modules() if isinstance(m, nn.Conv2d)), channels)
    return LoadedModel(
        module,
        descriptor.architecture.id,
        descriptor.scale,
        channels,
        fixed,
        max(req.multiple_of, _window_size(descriptor.model)),
        max(req.minimum, 1),
        source,
    )


def spandrel_loader():
    """spandrel's loader, with spandrel-extra-arches' architectures when that package is installed."""
    import spandrel

    try:
        import spandrel_extra_arches

        spandrel_extra_arches.install(ignore_duplicates=True)
    except ImportError:
        pass
    return spandrel.ModelLoader(device="cpu")


# Architectures whose descriptor call_fn is a whole pipeline rather than an output selection
# (DDColor's resizes a 1-channel image to the training size and back): export the bare network.
_BARE_NETWORK = frozenset({"DDColor"})


class _DescriptorCall(nn.Module):
    """The image a spandrel descriptor's ``call_fn`` returns (output selection, value mapping,
    noise-level map), without the descriptor's padding and clamping, which hide true gradients."""

    def __init__(self, model: nn.Module, call_fn: Any):
        super().__init__()
        self.model, self.call_fn = model, call_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.call_fn(self.model, x)


def image_function(descriptor: Any, model: nn.Module | None = None) -> nn.Module:
    """``descriptor``'s network as one image in, one image out (``model`` replaces its network)."""
    model = (descriptor.model if model is None else model).eval()
    call_fn = getattr(descriptor, "_call_fn", None)
    if call_fn is None or descriptor.architecture.id in _BARE_NETWORK:
        return model
    return _DescriptorCall(model, call_fn).eval()


def _window_size(model: nn.Module) -> int:
    size = getattr(model, "window_size", 1)
    return size if isinstance(size, int) else 1


def load_checkpoint(
    checkpoint: str | Path | None = None,
    *,
    arch: str | None = None,
    scale: int | None = None,
    width: int | None = None,
    depth: int | None = None,
) -> LoadedModel:
    """Dispatch: a zoo architecture (random weights or a checkpoint) or spandrel detection."""
    if checkpoint is None:
        if arch is None:
            raise InputError("give a checkpoint, or --arch NAME with --random-init")
        return build_zoo_model(arch, scale=scale or 4, width=width, depth=depth, **_random_init_options(arch))
    state = read_state_dict(checkpoint)
    name = Path(checkpoint).name
    if arch is not None:
        return build_zoo_model(arch, state, scale=scale or 4, width=width, depth=depth, source=name)
    if width is not None or depth is not None:
        raise InputError("--width and --depth apply to --arch; spandrel reads them from the checkpoint")
    loaded = load_with_spandrel(state, name)
    if scale is not None and scale != loaded.scale:
        raise InputError(f"{name} is a x{loaded.scale} model, not x{scale}")
    return loaded


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
