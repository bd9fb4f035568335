"""The model zoo: published parameter names, ONNX export, and attribution graphs against autograd.

Naming is checked three independent ways: keys and shapes the published checkpoints contain,
parameter counts the papers and model cards report, and (for RCAN, ESRGAN and SwinIR) loading
our state dict into spandrel's implementation with strict=True and comparing outputs.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lam_trt.errors import InputError
from lam_trt.export.checkpoint import build_zoo_model, read_state_dict
from lam_trt.export.torch_export import export_onnx
from lam_trt.export.zoo import ARCHITECTURES, FIXED_SIZE, build

SIZE = 16  # LR test size: RNAN needs it even, RFDN's ESA at least 15
# Small members of each family: a few channels and blocks, cheap enough to export and differentiate.
SMALL = {
    "fsrcnn": dict(width=8, depth=2, shrink=4),
    "edsr": dict(width=8, depth=2),
    "carn": dict(width=8, depth=2),
    "msrn": dict(width=8, depth=2),
    "rrdbnet": dict(width=8, depth=1, num_grow_ch=4),
    "imdn": dict(width=16, depth=2),
    "rfdn": dict(width=8, depth=2),
    "pan": dict(width=8, depth=2, up_width=8),
    "rcan": dict(width=16, depth=2, n_resblocks=2),
    "rnan": dict(width=8, depth=2, rgb_range=1.0),  # random weights on 0..255 saturate the softmax
    "san": dict(width=16, depth=2, n_resblocks=2, rgb_range=1.0),
    "swinir": dict(width=12, depth=2, blocks_per_layer=2, num_heads=2, window_size=4, img_size=SIZE),
}


def small_model(name: str, scale: int = 2, seed: int = 0) -> torch.nn.Module:
    """A small random network whose every trainable parameter matters (SAN's gammas start at 0)."""
    torch.manual_seed(seed)
    model = build(name, scale=scale, **SMALL[name])
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # the frozen mean shifts stay the DIV2K mean
                p.add_(0.05 * torch.randn_like(p))
    return model


def test_registry_has_table_1_networks_and_swinir() -> None:
    assert set(ARCHITECTURES) == {
        "fsrcnn", "edsr", "carn", "msrn", "rrdbnet", "imdn", "rfdn", "pan", "rcan", "rnan", "san", "swinir",
    }
    assert set(SMALL) == set(ARCHITECTURES)


# (architecture, build options, keys of the published x4 checkpoint with their shapes)
PUBLISHED_KEYS = [
    ("fsrcnn", dict(in_channels=1), {"first_part.0.weight": (56, 1, 5, 5), "first_part.1.weight": (56,),
                                     "mid_part.2.weight": (12, 12, 3, 3), "last_part.weight": (56, 1, 9, 9)}),
    ("edsr", {}, {"sub_mean.weight": (3, 3, 1, 1), "head.0.weight": (64, 3, 3, 3), "body.15.body.2.weight": (64, 64, 3, 3),
                  "body.16.weight": (64, 64, 3, 3), "tail.0.2.weight": (256, 64, 3, 3), "tail.1.weight": (3, 64, 3, 3)}),
    ("carn", dict(multi_scale=True), {"sub_mean.shifter.weight": (3, 3, 1, 1), "entry.weight": (64, 3, 3, 3),
                                      "b3.b3.body.2.weight": (64, 64, 3, 3), "b1.c3.body.0.weight": (64, 256, 1, 1),
                                      "c3.body.0.weight": (64, 256, 1, 1), "upsample.up3.body.0.weight": (576, 64, 3, 3),
                                      "upsample.up4.body.3.weight": (256, 64, 3, 3), "exit.weight": (3, 64, 3, 3)}),
    ("msrn", {}, {"head.0.weight": (64, 3, 3, 3), "body.7.conv_5_2.weight": (128, 128, 5, 5),
                  "body.0.confusion.weight": (64, 256, 1, 1), "tail.0.weight": (64, 576, 1, 1), "tail.2.2.weight": (256, 64, 3, 3)}),
    ("rrdbnet", {}, {"conv_first.weight": (64, 3, 3, 3), "body.22.rdb3.conv5.weight": (64, 192, 3, 3),
                     "conv_body.weight": (64, 64, 3, 3), "conv_up2.weight": (64, 64, 3, 3), "conv_last.weight": (3, 64, 3, 3)}),
    ("imdn", {}, {"fea_conv.weight": (64, 3, 3, 3), "IMDB6.c4.weight": (16, 48, 3, 3), "IMDB1.cca.conv_du.0.weight": (4, 64, 1, 1),
                  "c.0.weight": (64, 384, 1, 1), "LR_conv.weight": (64, 64, 3, 3), "upsampler.0.weight": (48, 64, 3, 3)}),
    ("rfdn", {}, {"fea_conv.weight": (50, 3, 3, 3), "B4.c1_d.weight": (25, 50, 1, 1), "B1.esa.conv3_.weight": (12, 12, 3, 3),
                  "B2.c5.weight": (50, 100, 1, 1), "c.0.weight": (50, 200, 1, 1), "upsampler.0.weight": (48, 50, 3, 3)}),
    ("pan", {}, {"conv_first.weight": (40, 3, 3, 3), "SCPA_trunk.15.PAConv.k3.weight": (20, 20, 3, 3),
                 "SCPA_trunk.0.k1.0.weight": (20, 20, 3, 3), "att2.conv.weight": (24, 24, 1, 1), "HRconv2.weight": (24, 24, 3, 3)}),
    ("rcan", {}, {"head.0.weight": (64, 3, 3, 3), "body.9.body.19.body.3.conv_du.0.weight": (4, 64, 1, 1),
                  "body.9.body.20.weight": (64, 64, 3, 3), "body.10.weight": (64, 64, 3, 3), "tail.0.2.weight": (256, 64, 3, 3)}),
    ("rnan", {}, {"body_nl_low.0.body.0.RA_MB.0.MB_RB1.0.theta.weight": (32, 64, 1, 1),
                  "body_nl_high.0.body.0.RA_MB.0.MB_Up.0.weight": (64, 64, 6, 6), "body.7.body.0.RA_TB.0.body.1.body.2.weight": (64, 64, 3, 3),
                  "body.8.weight": (64, 64, 3, 3), "body.7.body.1.weight": (64, 64, 3, 3), "tail.1.weight": (3, 64, 3, 3)}),
    ("san", {}, {"gamma": (1,), "RG.19.rcab.9.conv_first.2.weight": (64, 64, 3, 3), "RG.0.soca.conv_du.0.weight": (4, 64, 1, 1),
                 "RG.0.gamma": (1,), "non_local.non_local.theta.weight": (8, 64, 1, 1), "non_local.soca.conv_du.0.weight": (8, 64, 1, 1),
                 "conv_last.weight": (64, 64, 3, 3), "tail.0.2.weight": (256, 64, 3, 3)}),
]


@pytest.mark.parametrize("arch, options, keys", PUBLISHED_KEYS, ids=[p[0] for p in PUBLISHED_KEYS])
def test_published_parameter_names(arch: str, options: dict, keys: dict) -> None:
    state = build(arch, scale=4, **options).state_dict()
    assert {k: tuple(state[k].shape) for k in keys if k in state} == keys


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch, scale, options, published", [
    ("edsr", 2, {}, 1_369_859),  # EDSR-baseline x2; the frozen mean shifts are not counted
    ("edsr", 4, {}, 1_517_571),  # EDSR-baseline x4
    ("carn", 4, dict(multi_scale=True), 1_592_000),  # CARN "1,592K" (to the thousand)
    ("imdn", 4, {}, 715_176),  # IMDN x4 "715K"
    ("rfdn", 4, {}, 433_448),  # RFDN_AIM, AIM 2020 efficient SR report "0.433M"
    ("pan", 4, {}, 272_419),  # PAN x4 "272K"
    ("rcan", 4, {}, 15_592_379 - 24),  # RCAN x4 model card 15,592,379 counts the mean shifts
    ("rrdbnet", 4, {}, 16_697_987),  # ESRGAN generator
])
def test_published_parameter_counts(arch: str, scale: int, options: dict, published: int) -> None:
    count = _trainable(build(arch, scale=scale, **options))
    assert count == published or (published % 1000 == 0 and round(count, -3) == published)


def test_fsrcnn_weight_count_matches_the_paper() -> None:
    # FSRCNN(56, 12, 4) on the Y channel: 25*56 + 56*12 + 4*9*12*12 + 12*56 + 81*56 = 12,464 weights
    model = build("fsrcnn", scale=3, in_channels=1)
    assert sum(p.numel() for p in model.parameters() if p.dim() == 4) == 12_464


SPANDREL_TWINS = [
    ("rcan", dict(scale=2, width=16, depth=2, n_resblocks=2)),
    ("rrdbnet", dict(scale=4, width=16, depth=2)),
    ("swinir", dict(scale=2, width=12, depth=2, blocks_per_layer=2, num_heads=2, window_size=4, img_size=16)),
    ("swinir", dict(scale=3, width=12, depth=1, blocks_per_layer=2, num_heads=3, window_size=4, img_size=16,
                    upsampler="pixelshuffledirect")),
]


@pytest.mark.parametrize("arch, options", SPANDREL_TWINS, ids=lambda v: v if isinstance(v, str) else "")
def test_state_dict_loads_into_spandrel(arch: str, options: dict) -> None:
    spandrel = pytest.importorskip("spandrel")
    torch.manual_seed(1)
    ours = build(arch, **options)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    twin = spandrel.ModelLoader().load_from_state_dict(ours.state_dict())  # strict load inside
    assert twin.scale == options["scale"]
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(twin.model.eval()(x.clone()), ours(x), rtol=1e-5, atol=1e-6)  # spandrel scales in place


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_checkpoint_round_trip_infers_configuration(arch: str, tmp_path: Path) -> None:
    """Width, depth and options are read back off the weights, so --arch needs no sizes."""
    scale = 4 if arch == "rrdbnet" else 3  # BasicSR's RRDBNet has no x3
    model = small_model(arch, scale)
    torch.save({"params_ema": model.state_dict()}, tmp_path / "weights.pth")
    loaded = build_zoo_model(arch, read_state_dict(tmp_path / "weights.pth"), scale=scale)
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_export_matches_torch_and_attribution_matches_autograd(arch: str, tmp_path: Path, check_attribution) -> None:
    model = small_model(arch)
    path = tmp_path / f"{arch}.onnx"
    report = export_onnx(model, path, in_channels=3, size=(SIZE, SIZE), fixed_hw=arch in FIXED_SIZE)
    assert report.max_rel_error < 1e-4
    assert report.dynamic_batch
    assert report.dynamic_hw == (arch not in FIXED_SIZE)
    assert [c.shape[0] for c in report.checks] == [1, 2, 3]  # batches 2 and 3 were checked too
    check_attribution(path, model, (3, SIZE, SIZE), rtol=1e-4)


@pytest.mark.parametrize("arch, options, message", [
    ("vdsr", {}, "unknown architecture"),
    ("rrdbnet", dict(scale=3), "supports scales"),
    ("imdn", dict(width=10), "multiple of 4"),
    ("rnan", dict(depth=1), "depth >= 2"),
    ("edsr", dict(depth=0), "at least 1"),
    ("swinir", dict(width=10, num_heads=3), "divisible"),
    ("edsr", dict(n_resblocks=3), "unexpected keyword"),
])
def test_bad_configurations_are_input_errors(arch: str, options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        build(arch, **options)
