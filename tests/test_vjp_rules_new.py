"""The rules for writes, selections, sampling, spectra and folds against torch.autograd, as
test_vjp_rules.py tests the others: a small module exported by torch (TorchScript opset 17, and the
dynamo exporter where it emits something else), its attribution graph at batch 2 in ONNX Runtime,
float64 autograd as the reference (relative L2 < 1e-5). Hand-built graphs cover what torch never
emits. Also: the pre-check and the builder use one list of what is differentiable.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from torch import nn

from nets import export_onnx
from test_vjp_rules import Case, Fn, HandCase, case, fn, mod, rand, t

from lam_trt.errors import UnsupportedOpError
from lam_trt.export.autodiff import check_differentiable, unsupported_nodes
from lam_trt.export.vjp import REGISTRY


def partial_assign(m, x):
    """PLKSR's partial-channel in-place convolution: y[:, :2] = f(x[:, :2])."""
    y = x.clone()
    y[:, :2] = torch.tanh(m.conv(x[:, :2])) * 2
    return y * x


def grid_from_image(mode: str, padding: str, align: bool):
    """DySample-like: the sampling grid is computed from the image (reaching past [-1, 1])."""
    def f(m, x):
        grid = torch.tanh(m.conv(x)).permute(0, 2, 3, 1) * 1.3
        return F.grid_sample(torch.sin(x), grid, mode=mode, padding_mode=padding, align_corners=align)
    return fn(f, conv=lambda: nn.Conv2d(3, 2, 3, padding=1))


def grid_upsample_offsets(m, x):
    """DySample proper: a base grid for a x2 upsample plus offsets from the image."""
    n, _, h, w = x.shape
    offsets = torch.tanh(F.pixel_shuffle(m.conv(x), 2)).permute(0, 2, 3, 1) * 0.1
    return F.grid_sample(x, m.base + offsets, mode="bilinear", padding_mode="border", align_corners=False)


def base_grid(h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack([xs, ys], -1)[None]


# bilinear: every padding with both align_corners; nearest and bicubic: every padding, alternating
GRID = [case(f"GridSample-{mode}-{padding}-{'align' if align else 'noalign'}", "GridSample",
             grid_from_image(mode, padding, align))
        for mode in ("bilinear", "nearest", "bicubic")
        for i, padding in enumerate(("zeros", "border", "reflection"))
        for align in ((False, True) if mode == "bilinear" else ((i + (mode == "bicubic")) % 2 == 1,))]


def fold_case(kernel, stride, padding=0, dilation=1, size=(8, 8)):
    """IPT's patch merge: unfold, a per-position gain, fold back (overlapping blocks add up)."""
    def f(m, x):
        cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
        return F.fold(torch.tanh(cols) * m.w, size, kernel, dilation=dilation, padding=padding, stride=stride)
    blocks = [(s + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for s in size]
    return fn(f, w=lambda: rand(1, 3 * kernel * kernel, blocks[0] * blocks[1]))


# Col2Im exists from opset 18 (TorchScript exporter)
FOLD: list[Case] = [
    case("Col2Im-tiles", "Col2Im", fold_case(2, 2), opset=18),
    case("Col2Im-overlap-padded", "Col2Im", fold_case(3, 1, padding=1), opset=18),
    case("Col2Im-stride2-dilation2", "Col2Im", fold_case(3, 2, padding=2, dilation=2), opset=18),
]


EXPORTED: list[Case] = [
    case("ScatterND-partial-channels", "ScatterND",
         fn(partial_assign, conv=lambda: nn.Conv2d(2, 2, 3, padding=1))),
    # indices computed from the image (codebook lookups), so they follow the batch
    case("ScatterElements-data-and-src", "ScatterElements",
         fn(lambda m, x: x.scatter(1, x.argmax(1, keepdim=True), torch.sin(x[:, :1])) * x)),
    case("ScatterElements-add-repeated", "ScatterElements",
         fn(lambda m, x: x.scatter_add(3, (x.argmax(3, keepdim=True) + m.shift) % 8, torch.sin(x)) * x,
            shift=lambda: torch.randint(0, 3, (1, 1, 1, 8)))),
    case("GatherElements-repeated", "GatherElements",
         fn(lambda m, x: torch.gather(x, 3, (x.argmax(3, keepdim=True) + m.shift) % 8) * x,
            shift=lambda: torch.randint(0, 3, (1, 1, 1, 8)))),
    case("TopK-channels", "TopK", fn(lambda m, x: torch.topk(m.conv(x), 3, dim=1).values,
                                     conv=lambda: nn.Conv2d(3, 6, 3, padding=1))),
    case("TopK-smallest-width", "TopK", fn(lambda m, x: torch.topk(x, 5, dim=3, largest=False).values * 2)),
    *GRID,
    *FOLD,
    case("GridSample-linear-opset20", "GridSample", grid_from_image("bilinear", "reflection", False), opset=20),
    case("GridSample-nearest-opset20", "GridSample", grid_from_image("nearest", "border", True), opset=20),
    case("GridSample-cubic-opset20", "GridSample", grid_from_image("bicubic", "reflection", False), opset=20),
    case("GridSample-dysample-x2", "GridSample",
         fn(grid_upsample_offsets, conv=lambda: nn.Conv2d(3, 8, 3, padding=1), base=lambda: base_grid(16, 16))),
    # registered rules no other test reaches
    case("Sin-Cos", ("Sin", "Cos"), fn(lambda m, x: torch.sin(x) * torch.cos(2 * x))),
    case("Atan-Tan", ("Atan", "Tan"), fn(lambda m, x: torch.atan(2 * x) * torch.tan(0.5 * x))),
    case("Asin-Acos", ("Asin", "Acos"),
         fn(lambda m, x: torch.asin(0.5 * torch.tanh(x)) * torch.acos(0.4 * torch.sin(x)))),
    case("Selu", "Selu", fn(lambda m, x: F.selu(x))),
    case("Celu", "Celu", fn(lambda m, x: F.celu(x, 0.7))),
    case("LogSoftmax", "LogSoftmax", fn(lambda m, x: F.log_softmax(2 * x, 1))),
    case("ReduceMax-ReduceMin", ("ReduceMax", "ReduceMin"),
         fn(lambda m, x: x * x.amax(1, keepdim=True) + x.amin(3, keepdim=True))),
    case("GlobalMaxPool", "GlobalMaxPool", fn(lambda m, x: x * m.pool(x), pool=lambda: nn.AdaptiveMaxPool2d(1))),
    case("ReduceL1", "ReduceL1", fn(lambda m, x: x * torch.norm(x, p=1, dim=1, keepdim=True))),
    case("ReduceLogSumExp", "ReduceLogSumExp", fn(lambda m, x: x * torch.logsumexp(x, 2, keepdim=True))),
    # weights and bias computed from the image (a sum over it)
    case("Conv-image-weights", "Conv",
         fn(lambda m, x: F.conv2d(x, m.w * torch.tanh(x.sum((0, 2, 3)))[None, :, None, None],
                                  torch.sin(x.sum((0, 2, 3))).repeat(2), padding=1),
            w=lambda: rand(6, 3, 3, 3))),
    case("Conv-image-weights-grouped-strided", "Conv",
         fn(lambda m, x: F.conv2d(x, m.w * torch.tanh(x.sum(0)[None, :2, :3, :3]), stride=2,
                                  padding=(1, 2), dilation=(1, 2), groups=2),
            w=lambda: rand(6, 2, 3, 3)), (4, 9, 10)),
    case("ConvTranspose-image-weights", "ConvTranspose",
         fn(lambda m, x: F.conv_transpose2d(x, m.w * torch.tanh(x.sum(0)[:, None, :3, :3]),
                                            torch.sin(x.sum((0, 2, 3))), stride=2, padding=1,
                                            output_padding=1, groups=2),
            w=lambda: rand(4, 2, 3, 3)), (4, 5, 5)),
]
BY_ID = {c.id: c for c in EXPORTED}


def spectral_filter(m, x):
    """FFTformer's frequency-domain filter: rfft2, a learned complex gain, irfft2."""
    spectrum = torch.fft.rfft2(x)
    return torch.fft.irfft2(spectrum * torch.complex(m.re, m.im), s=x.shape[-2:])


# torch's TorchScript exporter cannot export torch.fft: these go through the dynamo exporter only
SPECTRAL: list[Case] = [
    case("DFT-rfft2-irfft2", "DFT", fn(spectral_filter, re=lambda: rand(3, 8, 5), im=lambda: rand(3, 8, 5))),
    case("DFT-rfft2-irfft2-odd", "DFT", fn(spectral_filter, re=lambda: rand(3, 7, 4), im=lambda: rand(3, 7, 4)),
         (3, 7, 7)),
    case("DFT-fft2-ifft2-real", "DFT",
         fn(lambda m, x: torch.fft.ifft2(torch.fft.fft2(x) * m.w).real, w=lambda: rand(3, 8, 8) + 1j * rand(3, 8, 8))),
    case("DFT-rfft-ortho-abs", "DFT",
         fn(lambda m, x: torch.fft.irfft(torch.fft.rfft(x, norm="ortho").abs() * m.w, n=8, norm="ortho"),
            w=lambda: rand(3, 8, 5))),
    case("DFT-rfft-padded-truncated", "DFT",
         fn(lambda m, x: torch.fft.irfft(torch.fft.rfft(x, n=11, dim=2) * m.w, n=6, dim=2)[..., :6] * x[:, :, :6, :6],
            w=lambda: rand(3, 6, 8))),
]
DYNAMO = ["Col2Im-overlap-padded", "ScatterND-partial-channels", "ScatterElements-add-repeated", "TopK-channels",
          "GridSample-bilinear-zeros-noalign", "GridSample-bilinear-reflection-align"]
# TorchScript folds a shape read at batch 1 into these graphs (ScatterND's indices, scatter_add's
# Slice of src), so their forward part runs one image at a time until the batch rewrite follows it;
# the rule is checked at batch 1 here and at batch 2 through the dynamo export above.
# Graphs whose constants were traced for one image, or that mix the batch (a sum over it feeding the
# weights): lam-trt runs every path image as if alone (the build-time batch check keeps such graphs at
# one image per run), so they are compared with autograd one image at a time.
ONE_IMAGE = {"ScatterND-partial-channels", "ScatterElements-add-repeated", "Conv-image-weights",
             "Conv-image-weights-grouped-strided", "ConvTranspose-image-weights", "ScatterElements-mul-into-image"}
# weights sliced from the image have a static shape only when the image has one
STATIC_HW = {"Conv-image-weights-grouped-strided", "ConvTranspose-image-weights"}


class ModulatedConv(nn.Module):
    """GFPGAN / StyleGAN2's modulated, demodulated convolution: per-image weights from a style,
    run as one grouped Conv with group = batch (exported at batch 1, so it runs one image at a time)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.style = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        style = self.style(x.mean((2, 3)))
        weight = self.weight[None] * style[:, None, :, None, None]
        weight = weight * torch.rsqrt((weight ** 2).sum((2, 3, 4)) + 1e-8)[..., None, None, None]
        out = F.conv2d(x.reshape(1, n * c, h, w), weight.reshape(n * 4, c, 3, 3), padding=1, groups=n)
        return out.reshape(n, 4, h, w)


def exported(c: Case, tmp_path, **export_kwargs):
    torch.manual_seed(0)
    module = c.make()
    return module, export_onnx(module, c.shape, tmp_path / f"{c.id}.onnx", **export_kwargs)


@pytest.mark.parametrize("c", EXPORTED, ids=lambda c: c.id)
def test_exported_op(c: Case, tmp_path, check_attribution):
    module, source = exported(c, tmp_path, opset=c.opset, dynamic_hw=c.id not in STATIC_HW)
    check_attribution(source, module, c.shape, c.ops, n=1 if c.id in ONE_IMAGE else 2)


@pytest.mark.parametrize("c", SPECTRAL, ids=lambda c: c.id)
def test_spectral_dynamo(c: Case, tmp_path, check_attribution):
    module, source = exported(c, tmp_path, dynamo=True)
    check_attribution(source, module, c.shape, c.ops)


# ---- hand-built: what torch never emits -----------------------------------------------------------
def dft_opset20_full(rng):
    """Opset 20 (axis as an input): forward DFT of a real input, a per-component gain, inverse DFT."""
    gain = rng.standard_normal((8, 8, 2)).astype(np.float32)
    nodes = [helper.make_node("Unsqueeze", ["input", "last"], ["x1"]),
             helper.make_node("DFT", ["x1", "", "axis"], ["spec"], inverse=0),
             helper.make_node("Mul", ["spec", "gain"], ["filtered"]),
             helper.make_node("DFT", ["filtered", "", "axis"], ["back"], inverse=1),
             helper.make_node("Gather", ["back", "zero"], ["re"], axis=4),
             helper.make_node("Mul", ["re", "input"], ["output"])]
    inits = {"last": np.array([4], np.int64), "axis": np.array(2, np.int64), "gain": gain,
             "zero": np.array(0, np.int64)}

    def ref(x):
        spec = torch.view_as_real(torch.fft.fft(x.to(torch.complex128), dim=2)) * t(gain, x)
        return torch.fft.ifft(torch.view_as_complex(spec), dim=2).real * x
    return nodes, inits, ref


def dft_inverse_of_real(rng):
    """Inverse DFT of a real input (opset 18), with a dft_length that zero-pads, imaginary part kept."""
    nodes = [helper.make_node("Unsqueeze", ["input", "last"], ["x1"]),
             helper.make_node("DFT", ["x1", "n"], ["spec"], inverse=1, axis=3),
             helper.make_node("Gather", ["spec", "one"], ["im"], axis=4),
             helper.make_node("Slice", ["im", "starts", "ends", "axes"], ["im8"]),
             helper.make_node("Mul", ["im8", "input"], ["output"])]
    inits = {"last": np.array([4], np.int64), "n": np.array(11, np.int64), "one": np.array(1, np.int64),
             "starts": np.array([0], np.int64), "ends": np.array([8], np.int64), "axes": np.array([3], np.int64)}
    return nodes, inits, lambda x: torch.fft.ifft(x.to(torch.complex128), n=11, dim=3).imag[..., :8] * x


def softsign(rng):
    return [helper.make_node("Softsign", ["input"], ["output"])], {}, F.softsign


def reduce_sum_square(rng):
    nodes = [helper.make_node("ReduceSumSquare", ["input", "axes"], ["ss"], keepdims=1),
             helper.make_node("Mul", ["ss", "input"], ["output"])]
    return nodes, {"axes": np.array([1], np.int64)}, lambda x: (x * x).sum(1, keepdim=True) * x


def scatter_nd_channels(rows: list[int], reduction: str):
    """ScatterND on the channel axis (moved first, as the dynamo exporter does), updates computed
    from the image: y[rows[i]] (op)= sin(x[i])."""
    def build(rng):
        nodes = [helper.make_node("Transpose", ["input"], ["chw"], perm=[1, 0, 2, 3]),
                 helper.make_node("Gather", ["chw", "first_rows"], ["first"], axis=0),
                 helper.make_node("Sin", ["first"], ["updates"]),
                 helper.make_node("ScatterND", ["chw", "rows", "updates"], ["scattered"], reduction=reduction),
                 helper.make_node("Transpose", ["scattered"], ["nchw"], perm=[1, 0, 2, 3]),
                 helper.make_node("Mul", ["nchw", "input"], ["output"])]
        inits = {"first_rows": np.arange(len(rows), dtype=np.int64), "rows": np.array(rows, np.int64)[:, None]}

        def ref(x):
            y = [x[:, c] for c in range(3)]
            for i, r in enumerate(rows):
                u = torch.sin(x[:, i])
                y[r] = u if reduction == "none" else y[r] + u if reduction == "add" else y[r] * u
            return torch.stack(y, 1) * x
        return nodes, inits, ref
    return build


def scatter_elements_mul_into_image(rng):
    """Constant updates multiplied into the image at constant indices (repeats included; indices of
    batch 1 write into the first item, in torch as in ONNX): only the data gradient is needed."""
    idx = rng.integers(0, 8, (1, 3, 8, 5)).astype(np.int64)
    upd = rng.standard_normal((1, 3, 8, 5)).astype(np.float32)
    nodes = [helper.make_node("ScatterElements", ["input", "idx", "upd"], ["s"], axis=3, reduction="mul"),
             helper.make_node("Mul", ["s", "input"], ["output"])]
    return nodes, {"idx": idx, "upd": upd}, lambda x: x.scatter_reduce(3, torch.from_numpy(idx), t(upd, x), "prod") * x


HAND_BUILT: list[HandCase] = [
    HandCase("ScatterND-none-distinct", "ScatterND", scatter_nd_channels([2, 0], "none")),
    HandCase("ScatterND-add-repeated", "ScatterND", scatter_nd_channels([1, 1, 0], "add")),
    HandCase("ScatterND-mul-distinct", "ScatterND", scatter_nd_channels([2, 0], "mul")),
    HandCase("ScatterElements-mul-into-image", "ScatterElements", scatter_elements_mul_into_image),
    HandCase("Softsign", "Softsign", softsign),
    HandCase("ReduceSumSquare", "ReduceSumSquare", reduce_sum_square, opset=18),
    HandCase("DFT-opset20-axis-input", "DFT", dft_opset20_full, opset=20),
    HandCase("DFT-inverse-of-real-padded", "DFT", dft_inverse_of_real, opset=18),
]


@pytest.mark.parametrize("c", HAND_BUILT, ids=lambda c: c.id)
def test_hand_built_op(c: HandCase, harness, check_attribution):
    nodes, inits, ref = c.build(np.random.default_rng(0))
    check_attribution(harness.hand_model(nodes, c.shape, c.opset, inits, c.checkable), ref, c.shape, c.op,
                      n=1 if c.id in ONE_IMAGE else 2)


# ---- one list of what is differentiable: the pre-check and the builder agree -----------------------
def codebook_lookup(m, x):
    """RestoreFormer's vector quantiser without .detach() (as torch exports it): argmin over a
    codebook, a one-hot by ScatterElements, the codeword by MatMul. The ArgMin cuts the gradient,
    so the ScatterElements needs no rule and the map is x's direct path alone."""
    flat = x.permute(0, 2, 3, 1)
    distance = ((flat[..., None, :] - m.codebook) ** 2).sum(-1)
    one_hot = torch.zeros_like(distance).scatter(-1, distance.argmin(-1, keepdim=True), 1.0)
    return (one_hot @ m.codebook).permute(0, 3, 1, 2) * x + 0.5 * x


def test_selection_behind_argmin_is_accepted(tmp_path, check_attribution):
    """The pre-check used to refuse this ScatterElements, which the builder builds and runs exactly.
    (One image: zeros_like's shape is folded at batch 1 until the batch rewrite follows it.)"""
    torch.manual_seed(0)
    module = Fn(codebook_lookup, codebook=torch.randn(5, 3))
    source = export_onnx(module, (3, 8, 8), tmp_path / "vq.onnx")
    assert "ScatterElements" in {n.op_type for n in onnx.load(str(source)).graph.node}
    check_attribution(source, module, (3, 8, 8), ("ArgMin", "MatMul"), n=1)


def gated(*nodes: onnx.NodeProto) -> list[onnx.NodeProto]:
    """nodes map "input" to "gate" (same shape); output = input * gate."""
    return [*nodes, helper.make_node("Mul", ["input", "gate"], ["output"])]


REFUSALS = {
    "no-rule-Det": (gated(helper.make_node("Det", ["input"], ["det"], name="the_det"),
                          helper.make_node("Unsqueeze", ["det", "axes23"], ["gate"])), {("Det", "the_det")}),
    "no-rule-behind-ArgMax-is-cut": (gated(
        helper.make_node("ArgMax", ["input"], ["idx"], axis=1, keepdims=1),
        helper.make_node("Cast", ["idx"], ["idx_f"], to=1),
        helper.make_node("Hardmax", ["idx_f"], ["gate"], name="the_hardmax", axis=-1)), set()),
    "ScatterElements-min": (gated(
        helper.make_node("ArgMax", ["input"], ["idx"], axis=1, keepdims=1),
        helper.make_node("Slice", ["input", "zero", "one", "one"], ["first"]),
        helper.make_node("ScatterElements", ["input", "idx", "first"], ["gate"], name="the_scatter", axis=1,
                         reduction="min")), {("ScatterElements", "the_scatter")}),
    "ScatterND-max": (gated(
        helper.make_node("Slice", ["input", "zero", "two", "one"], ["upd"]),
        helper.make_node("Transpose", ["input"], ["chw"], perm=[1, 0, 2, 3]),
        helper.make_node("Transpose", ["upd"], ["upd_t"], perm=[1, 0, 2, 3]),
        helper.make_node("ScatterND", ["chw", "rows", "upd_t"], ["scattered"], name="the_scatter", reduction="max"),
        helper.make_node("Transpose", ["scattered"], ["gate"], perm=[1, 0, 2, 3])), {("ScatterND", "the_scatter")}),
}
REFUSAL_INITS = {"axes23": np.array([2, 3], np.int64), "zero": np.array([0], np.int64),
                 "two": np.array([2], np.int64), "one": np.array([1], np.int64),
                 "rows": np.array([[2], [0]], np.int64)}


@pytest.mark.parametrize("name", REFUSALS)
def test_precheck_and_builder_agree(name, harness):
    """Both name the same nodes (with the reason where a rule refuses a configuration), or both accept."""
    nodes, expected = REFUSALS[name]
    source = harness.hand_model(nodes, (3, 8, 8), 18, REFUSAL_INITS)
    found = unsupported_nodes(source)
    assert {(op, node) for op, node, _ in found} == expected
    if not expected:
        harness.build_graph(source, (3, 8, 8))
        return
    with pytest.raises(UnsupportedOpError) as info:
        harness.build_graph(source, (3, 8, 8))
    assert set(info.value.nodes) == expected
    assert all(why in str(info.value) for _, _, why in found)
    with pytest.raises(UnsupportedOpError) as early:
        check_differentiable(source)
    assert str(early.value) == str(info.value) and "\n" not in str(early.value)


def test_repeated_scatter_indices_refused_when_built(harness):
    """Which of two writes to one position wins is undefined in ONNX: refused, naming the node,
    when the graph is built (constant indices are only known then), still before anything runs."""
    nodes = gated(helper.make_node("Transpose", ["input"], ["chw"], perm=[1, 0, 2, 3]),
                  helper.make_node("Slice", ["chw", "zero", "two", "zero"], ["upd"]),
                  helper.make_node("ScatterND", ["chw", "rows", "upd"], ["scattered"], name="the_scatter"),
                  helper.make_node("Transpose", ["scattered"], ["gate"], perm=[1, 0, 2, 3]))
    inits = {**REFUSAL_INITS, "rows": np.array([[1], [1]], np.int64)}
    with pytest.raises(UnsupportedOpError, match="the_scatter.*writes one position twice"):
        harness.build_graph(harness.hand_model(nodes, (3, 8, 8), 18, inits), (3, 8, 8))


def test_every_registered_rule_is_checked_against_autograd():
    """Each rule in the registry is on the data path of some case here or in test_vjp_rules.py (which
    check_attribution asserts), so each is exact against autograd and accepted by the pre-check."""
    import test_vjp_rules as first
    covered = {op for c in first.EXPORTED + EXPORTED + SPECTRAL for op in c.ops}
    covered |= {c.op for c in first.HAND_BUILT + HAND_BUILT}
    assert set(REGISTRY) - covered == set()


def test_modulated_conv_one_image(tmp_path, check_attribution):
    torch.manual_seed(0)
    module = mod(ModulatedConv)()
    source = export_onnx(module, (3, 8, 8), tmp_path / "modulated.onnx", dynamic_hw=False, dynamic_batch=False)
    check_attribution(source, module, (3, 8, 8), "Conv", n=1)


@pytest.mark.parametrize("case_id", DYNAMO)
def test_dynamo_exporter(case_id: str, tmp_path, check_attribution):
    c = BY_ID[case_id]
    module, source = exported(c, tmp_path, dynamo=True)
    check_attribution(source, module, c.shape, c.ops)



def test_gather_nd_with_indices_from_the_image(harness, check_attribution):
    """GatherND whose indices are computed from the image (HVICIDNet): the channel of largest mean,
    picked and multiplied back in; its adjoint scatters with ScatterND's add."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("ArgMax", ["m"], ["j"], axis=1, keepdims=1),
             helper.make_node("Concat", ["zero", "j"], ["idx"], axis=1),
             helper.make_node("GatherND", ["input", "idx"], ["picked"]),
             helper.make_node("Unsqueeze", ["picked", "one"], ["p"]),
             helper.make_node("Mul", ["p", "input"], ["output"])]
    inits = {"zero": np.zeros((1, 1), np.int64), "one": np.ones(1, np.int64)}
    ref = lambda x: x[:, x.mean((2, 3)).argmax(1)[0]][:, None] * x  # noqa: E731 - one image
    check_attribution(harness.hand_model(nodes, (3, 6, 6), 17, inits), ref, (3, 6, 6), "GatherND", n=1)
