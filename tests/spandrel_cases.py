"""Small, random-weight members of every image-to-image architecture of spandrel and
spandrel-extra-arches, for the zoo test matrix (tests/test_spandrel_zoo.py) and bench/coverage.py.

Each case builds the bare network with a tiny configuration (and the input size it needs), goes
through spandrel's own state-dict detection once, and wraps it as lam-trt's checkpoint export does,
so that ``forward`` returns the image spandrel's descriptor computes (its ``call_fn``: output
selection, value mapping), without the descriptor's padding and clamping. Where spandrel cannot
read a tiny configuration back, the network's first output is taken.
"""
from __future__ import annotations

import copy
import importlib
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Inpainting networks take an image and a mask: not image-to-image.
NOT_IMAGE_TO_IMAGE = {"LaMa": "inpainting: takes an image and a mask", "MAT": "inpainting: takes an image and a mask"}


@dataclass(frozen=True)
class Case:
    name: str  # case id: architecture, plus a variant where one architecture has several
    arch: str  # spandrel architecture id
    cls: str  # module path of the network class, relative to spandrel(-extra-arches).architectures
    kwargs: dict[str, Any] = field(default_factory=dict)
    size: int = 16  # LR height and width
    in_channels: int = 3
    use_call: bool = True  # wrap with the descriptor's call_fn (False: the bare network)
    extra: bool = False  # from spandrel-extra-arches


def _c(name, cls, size=16, **kw) -> Case:
    arch = kw.pop("_arch", name.split("-")[0])
    extra = kw.pop("_extra", False)
    use_call = kw.pop("_use_call", True)
    in_ch = kw.pop("_in_channels", 3)
    return Case(name, arch, cls, kw, size, in_ch, use_call, extra)


_SWIN = dict(img_size=16, embed_dim=12, depths=(1,), num_heads=(2,), window_size=4, upscale=2, upsampler="pixelshuffle")
CASES: list[Case] = [
    _c("ATD", "ATD.ATD", img_size=16, embed_dim=12, depths=(2,), num_heads=(2,), window_size=4, category_size=32,
       num_tokens=8, reducted_dim=2, upscale=2, upsampler="pixelshuffle"),
    _c("AuraSR", "AuraSR.AuraSR", size=8, dim=8, image_size=32, input_image_size=8,
       style_network=dict(dim_in=8, dim_out=32, depth=1), up_dim_mults=(1, 1, 1, 2, 2), down_dim_mults=(2, 2),
       full_attn=(False, False, False, False, True), attn_depths=(1, 1, 1, 1, 1), mid_attn_depth=1,
       num_conv_kernels=2, self_attn_dim_head=8, self_attn_heads=2, resnet_block_groups=4, skip_connect_scale=0.4),
    _c("CRAFT", "CRAFT.CRAFT", window_size=8, embed_dim=32, depths=[1], num_heads=[2], split_size_0=2,
       split_size_1=8, upscale=2),
    _c("Compact", "Compact.Compact", num_feat=8, num_conv=2, upscale=2),
    _c("DAT", "DAT.DAT", img_size=16, embed_dim=32, split_size=[2, 4], depth=[1], num_heads=[2], upscale=2),
    _c("DCTLSA", "DCTLSA.DCTLSA", nf=10, num_modules=6, num_head=2, upscale=2),
    _c("DITN", "DITN.DITN", dim=12, ITL_blocks=1, SAL_blocks=1, UFONE_blocks=1, patch_size=8, upscale=2),
    _c("DRCT", "DRCT.DRCT", gc=8, **_SWIN),
    _c("DRUNet", "DRUNet.DRUNet", in_nc=4, out_nc=3, nc=[8, 8, 8, 8], nb=2),
    _c("DnCNN", "DnCNN.DnCNN", in_nc=3, out_nc=3, nc=8, nb=6, act_mode="R"),
    _c("ESRGAN", "ESRGAN.ESRGAN", num_filters=8, num_blocks=1, scale=2),
    _c("FBCNN", "FBCNN.FBCNN", nc=[8, 8, 8, 512], nb=2),
    _c("FDAT", "FDAT.FDAT", embed_dim=16, num_groups=1, depth_per_group=2, num_heads=2, window_size=4, mid_dim=8,
       scale=2, aim_reduction_ratio=2),
    _c("FFTformer", "FFTformer.FFTformer", size=32, dim=8, num_blocks=[1, 1, 1], num_refinement_blocks=1),
    _c("GFPGAN", "GFPGAN.GFPGAN", size=32, out_size=32, num_style_feat=32, channel_multiplier=1, num_mlp=1, narrow=0.125),
    _c("GRL", "GRL.GRL", img_size=16, embed_dim=12, depths=[1], num_heads_window=[2], num_heads_stripe=[2],
       window_size=4, stripe_size=[4, 4], upscale=2, upsampler="pixelshuffle", mlp_ratio=2.0),
    _c("HAT", "HAT.HAT", compress_ratio=3, squeeze_factor=2, num_feat=8, **_SWIN),
    _c("HVICIDNet", "HVICIDNet.HVICIDNet", size=32, channels=[8, 8, 16, 32], heads=[1, 2, 4, 8]),
    _c("IPT", "IPT.IPT", size=16, patch_size=16, patch_dim=4, n_feats=8, num_heads=2, num_layers=1, scale=[2], rgb_range=1.0),
    _c("KBNet-l", "KBNet.KBNet_l", dim=24, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1]),
    _c("KBNet-s", "KBNet.KBNet_s", width=8, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1]),
    _c("MMRealSR", "MMRealSR.MMRealSR", num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=1, num_grow_ch=4,
       num_feats=[8, 8, 8, 8], num_blocks=[1, 1, 1, 1]),
    _c("MixDehazeNet", "MixDehazeNet.MixDehazeNet", size=64, embed_dims=[8, 8, 8, 8, 8], depths=[1, 1, 1, 1, 1]),
    _c("MoESR", "MoESR.MoESR", dim=16, n_blocks=1, n_block=1, upsample_dim=8, scale=2),
    _c("MoSR", "MoSR.MoSR", n_block=1, dim=16, upscale=2),
    _c("NAFNet", "NAFNet.NAFNet", width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1]),
    _c("OmniSR", "OmniSR.OmniSR", num_feat=16, window_size=4, up_scale=2),
    _c("PLKSR", "PLKSR.PLKSR", dim=16, n_blocks=1, upscaling_factor=2, kernel_size=7),
    _c("RealPLKSR", "PLKSR.RealPLKSR", _arch="PLKSR", dim=16, n_blocks=1, upscaling_factor=2, kernel_size=7),
    _c("RealPLKSR-dysample", "PLKSR.RealPLKSR", _arch="PLKSR", dim=16, n_blocks=1, upscaling_factor=2, kernel_size=7, dysample=True),
    _c("RCAN", "RCAN.RCAN", n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4, scale=2, rgb_range=1),
    _c("RGT", "RGT.RGT", img_size=16, embed_dim=32, depth=[1], num_heads=[2], split_size=[4, 4], upscale=2),
    _c("RealCUGAN", "RealCUGAN.UpCunet2x", size=40),
    _c("RestoreFormer", "RestoreFormer.RestoreFormer", n_embed=16, embed_dim=8, ch=32, ch_mult=(1, 1),
       num_res_blocks=1, attn_resolutions=(8,), resolution=16, z_channels=32, head_size=2),
    _c("RetinexFormer", "RetinexFormer.RetinexFormer", n_feat=8, stage=1, num_blocks=[1, 1, 1]),
    _c("SAFMN", "SAFMN.SAFMN", dim=8, n_blocks=1, upscaling_factor=2),
    _c("SAFMNBCIE", "SAFMNBCIE.SAFMNBCIE", dim=8, n_blocks=1, num_layers=1),
    _c("SCUNet", "SCUNet.SCUNet", size=64, config=[2] * 7, dim=64, input_resolution=64),
    _c("SPAN", "SPAN.SPAN", num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2),
    _c("SeemoRe", "SeemoRe.SeemoRe", scale=2, num_experts=2, num_layers=1, embedding_dim=16, recursive=1, topk=1),
    _c("SwiftSRGAN", "SwiftSRGAN.SwiftSRGAN", num_channels=8, num_blocks=1, upscale_factor=2),
    _c("Swin2SR", "Swin2SR.Swin2SR", **_SWIN),
    _c("SwinIR", "SwinIR.SwinIR", **_SWIN),
    _c("Uformer", "Uformer.Uformer", size=32, img_size=32, embed_dim=8, depths=[1] * 9, num_heads=[1] * 9, win_size=4),
    _c("AdaCode", "AdaCode.AdaCode", _extra=True, size=64, codebook_params=[[8, 16, 8]], gt_resolution=64),
    _c("CodeFormer", "CodeFormer.CodeFormer", size=512, _extra=True, dim_embd=16, n_head=2, n_layers=1,
       codebook_size=16, latent_size=256, connect_list=["32"]),
    _c("DDColor", "DDColor.DDColor", size=32, _extra=True, _use_call=False, encoder_name="convnext-t",
       input_size=(32, 32), num_output_channels=2, num_queries=4, num_scales=3, dec_layers=1),
    _c("FeMaSR", "FeMaSR.FeMaSR", _extra=True, codebook_params=[[8, 16, 8]], gt_resolution=32),
    _c("M3SNet", "M3SNet.M3SNet", _extra=True, width=8, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1]),
    _c("MIRNet2", "MIRNet2.MIRNet2", _extra=True, n_feat=16, chan_factor=1.5, n_MRB=1),
    _c("MPRNet", "MPRNet.MPRNet", _extra=True, n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=1, reduction=2),
    _c("Restormer", "Restormer.Restormer", _extra=True, dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
       heads=[1, 1, 1, 1]),
    _c("SRFormer", "SRFormer.SRFormer", _extra=True, **_SWIN),
]
CASES_BY_NAME = {c.name: c for c in CASES}


def network_class(case: Case) -> type[nn.Module]:
    package = "spandrel_extra_arches" if case.extra else "spandrel"
    module, name = case.cls.rsplit(".", 1)
    return getattr(importlib.import_module(f"{package}.architectures.{module}"), name)


def build_network(case: Case, seed: int = 0) -> nn.Module:
    """The bare network with random weights (the same for a given seed)."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return network_class(case)(**case.kwargs).eval()


def descriptor(state: dict[str, torch.Tensor]):
    from lam_trt.export.checkpoint import spandrel_loader

    return spandrel_loader().load_from_state_dict(state)


def build_model(case: Case, seed: int = 0) -> nn.Module:
    """The network as an image-to-image function: spandrel's call_fn around the bare network."""
    net = build_network(case, seed)
    if not case.use_call:
        return net
    from lam_trt.export.checkpoint import image_function

    try:
        found = descriptor(net.state_dict())
    except Exception:  # spandrel cannot read this tiny configuration back: select the image output
        return FirstOutput(net)
    return image_function(found, net)


class FirstOutput(nn.Module):
    """The first output of a network that returns several (what spandrel's call_fns select)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y if isinstance(y, torch.Tensor) else y[0]


EXPORTERS = ("torchscript", "dynamo")


def export_case(model: nn.Module, x: torch.Tensor, path: str, exporter: str) -> str:
    """Export ``model`` at ``x``'s shape with a dynamic batch (static when torch cannot make the
    batch dynamic); returns a note ("" or why the batch is static). Raises what torch raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
            return ""
        try:
            program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},),
                                        verbose=False)
            note = ""
        except Exception as e:  # a batch-specialised trace: export at batch 1
            program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
            note = f"static batch ({_first_line(e)[:80]})"
        program.save(path)
        return note


# torch's exporter kills the process on these (not lam-trt's limit): they export in a child process.
TORCH_CRASHES = {("SPAN", "dynamo"): "torch.export's decomposition crashes the process (segmentation fault)"}


def export_apart(name: str, path: str, exporter: str) -> str:
    """``export_case`` for the case ``name`` (random weights, seed 0) in a child process: a crash
    there raises RuntimeError here instead of ending the test session or the coverage sweep."""
    code = (f"import sys, torch; sys.path.insert(0, {str(Path(__file__).parent)!r}); import spandrel_cases as s; "
            f"c = s.CASES_BY_NAME[{name!r}]; "
            f"print(s.export_case(s.build_model(c), torch.rand(1, c.in_channels, c.size, c.size), {path!r}, {exporter!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode < 0:
        raise RuntimeError(f"torch's {exporter} exporter crashed the process exporting {name} (signal {-proc.returncode})")
    if proc.returncode:
        raise RuntimeError(f"exporting {name} with {exporter} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def reference_function(model: nn.Module, images) -> tuple[nn.Module, str]:
    """The function the exported ONNX file computes, for torch autograd: ``model`` with ``.detach()``
    as the identity (ONNX has no stop-gradient; FeMaSR detaches its own input, quantisers their
    straight-through term), on a copy of its input (RCAN's mean shift works in place), on the whole
    batch if torch runs it so, else one image at a time (and why)."""
    fn = ExportedFunction(model)
    with torch.no_grad():
        try:
            fn(torch.from_numpy(images))
            return fn, ""
        except Exception as e:
            note = f"torch runs this model one image at a time only ({_first_line(e)[:100]})"
    return ExportedFunction(model, one_at_a_time=True), note


# Partial convolutions (PLKSR, RealPLKSR) write x[:, :idx] in place at eval time, which autograd
# refuses; their training branch computes the same function out of place (and holds no dropout).
IN_PLACE_AT_EVAL = {"PLKConv2d", "RectSparsePLKConv2d", "SparsePLKConv2d"}


class ExportedFunction(nn.Module):
    def __init__(self, model: nn.Module, one_at_a_time: bool = False):
        super().__init__()
        self.model, self.one_at_a_time = model, one_at_a_time

    def __deepcopy__(self, memo: dict) -> ExportedFunction:
        """The float64 reference copies the function. State that every forward sets anew can hold
        non-leaf tensors, which deepcopy refuses: weight_norm's computed weight (its pre-hook
        recomputes it from weight_g and weight_v), DDColor's feature hooks (the last forward's
        features). The copy gets None there."""
        for m in self.model.modules():
            hooks = [*m._forward_pre_hooks.values(), *m._forward_hooks.values()]
            for owner in [m, *(getattr(h, "__self__", h) for h in hooks)]:
                for value in getattr(owner, "__dict__", {}).values():
                    if isinstance(value, torch.Tensor) and not value.is_leaf:
                        memo[id(value)] = None
        return ExportedFunction(copy.deepcopy(self.model, memo), self.one_at_a_time)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        original = torch.Tensor.detach
        torch.Tensor.detach = lambda t: t  # noqa: E731 - what torch's ONNX exporters do with it
        partial = [m for m in self.model.modules() if type(m).__name__ in IN_PLACE_AT_EVAL and not m.training]
        for m in partial:
            m.training = True
        try:
            if self.one_at_a_time:
                return torch.cat([self.model(x[i:i + 1].clone()) for i in range(x.shape[0])])
            return self.model(x.clone())
        finally:
            torch.Tensor.detach = original
            for m in partial:
                m.training = False
