"""`lam-trt export`: checkpoint -> ONNX -> attribution, for spandrel architectures and the zoo."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lam_trt.cli import app
from lam_trt.export.zoo import build

spandrel = pytest.importorskip("spandrel")
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402
from spandrel.architectures.SPAN import SPAN  # noqa: E402
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402

runner = CliRunner()
SIZE = 16

# Small x2 members of architectures spandrel detects, built with spandrel's own code.
SPANDREL: dict[str, Callable[[], torch.nn.Module]] = {
    "ESRGAN": lambda: ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2),
    "Compact": lambda: Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2),
    "SPAN": lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2),
    "SwinIR": lambda: SwinIR(img_size=SIZE, embed_dim=12, depths=[2], num_heads=[2], window_size=4, upscale=2,
                             upsampler="pixelshuffledirect"),
}


def random_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def save_checkpoint(state: dict, path: Path) -> Path:
    """Each suffix in the form its tools write it: safetensors flat, .pth/.ckpt wrapped."""
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"params_ema": state} if path.suffix == ".pth" else {"state_dict": state, "epoch": 3}, path)
    return path


def export(*args: str):
    result = runner.invoke(app, ["export", *args])
    return result, (json.loads(result.stdout) if result.exit_code == 0 and "--json" in args else None)


@pytest.mark.parametrize("arch, suffix", [
    ("ESRGAN", ".pth"), ("Compact", ".safetensors"), ("SPAN", ".ckpt"), ("SwinIR", ".pth"),
])
def test_spandrel_checkpoint_exports_and_attributes(arch: str, suffix: str, tmp_path: Path, harness) -> None:
    model = random_weights(SPANDREL[arch]())
    ckpt = save_checkpoint(model.state_dict(), tmp_path / f"weights{suffix}")
    onnx_path, graph_path = tmp_path / "model.onnx", tmp_path / "graph.onnx"
    result, report = export(str(ckpt), "-o", str(onnx_path), "--lr-size", f"{SIZE}x{SIZE}",
                            "--attribution-graph", str(graph_path), "--json")
    assert result.exit_code == 0, result.output
    assert report["architecture"] == arch and report["scale"] == 2 and report["in_channels"] == 3
    assert report["max_rel_error"] < 1e-4
    assert report["dynamic_batch"]
    assert report["dynamic_hw"] == (arch != "SwinIR")  # window attention fixes H and W, and says so
    assert bool(report["warnings"]) == (arch == "SwinIR")
    # spandrel's padding/clamping wrapper is not exported: out-of-range values pass through
    x = np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32) * 3
    got = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x).clone()).numpy(), rtol=1e-4, atol=1e-4)
    # ... and the attribution graph agrees with autograd through spandrel's own module
    path, weights = harness.random_batch(2, (3, SIZE, SIZE), seed=0)
    window = harness.default_window((2 * SIZE, 2 * SIZE))
    run = harness.run_graph(harness.make_session(graph_path), path, weights, window)
    harness.assert_matches(run, harness.reference(model, path, weights, window), rtol=1e-4)


def test_exported_checkpoint_runs_through_lam_trt_attribute(tmp_path: Path) -> None:
    model = random_weights(SPANDREL["Compact"]())
    ckpt = save_checkpoint(model.state_dict(), tmp_path / "compact.pth")
    onnx_path = tmp_path / "compact.onnx"
    assert export(str(ckpt), "-o", str(onnx_path), "--lr-size", "16x16")[0].exit_code == 0
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(tmp_path / "lr.png")
    result = runner.invoke(app, ["attribute", str(onnx_path), str(tmp_path / "lr.png"), "--window", "8", "8",
                                 "--size", "8", "--steps", "4", "--out", str(tmp_path / "lam"), "--json"])
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "lam").iterdir())


def test_zoo_random_init_and_zoo_checkpoint(tmp_path: Path) -> None:
    result, report = export("--arch", "edsr", "--random-init", "--width", "8", "--depth", "2", "--scale", "2",
                            "--lr-size", "16x12", "-o", str(tmp_path / "random.onnx"), "--json")
    assert result.exit_code == 0, result.output
    assert report["architecture"] == "edsr" and report["source"] == "random-init"
    assert report["dynamic_batch"] and report["dynamic_hw"] and report["warnings"] == []
    assert [c["shape"] for c in report["checks"]] == [[1, 3, 16, 12], [2, 3, 20, 20], [3, 3, 16, 12]]

    torch.manual_seed(3)
    model = random_weights(build("edsr", scale=2, width=8, depth=3))
    ckpt = tmp_path / "edsr.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    onnx_path = tmp_path / "edsr.onnx"
    # width and depth are read off the checkpoint; the scale must be given
    result, report = export(str(ckpt), "--arch", "edsr", "--scale", "2", "-o", str(onnx_path), "--json")
    assert result.exit_code == 0, result.output
    assert report["parameters"] == sum(p.numel() for p in model.parameters())
    x = np.random.default_rng(2).random((1, 3, 10, 14), dtype=np.float32)
    got = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_human_output(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "--arch", "fsrcnn", "--random-init", "--width", "8", "--depth", "1",
                                 "--lr-size", "16", "-o", str(tmp_path / "f.onnx")])
    assert result.exit_code == 0, result.output
    assert "exported fsrcnn x4" in result.stdout and "dynamic batch, height and width" in result.stdout
    assert "onnxruntime vs PyTorch: max abs error" in result.stdout


def test_mismatch_above_tolerance_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", "--arch", "edsr", "--random-init", "--width", "8", "--depth", "1",
                                 "--lr-size", "16x16", "-o", str(out), "--tolerance", "1e-15"])
    assert result.exit_code == 1, result.output
    assert "differs from PyTorch" in result.output and out.exists()


def _unknown_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(4, 3, 3, 3), "decoder.weight": torch.zeros(3, 4, 3, 3)}, path)
    return path


def _edsr_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "edsr_small.pth"
    torch.save(build("edsr", scale=2, width=16, depth=1).state_dict(), path)
    return path


@pytest.mark.parametrize("args, message", [
    (lambda t: ["--arch", "edsr"], "--random-init"),
    (lambda t: [], "give a checkpoint"),
    (lambda t: [str(_edsr_checkpoint(t)), "--random-init"], "not both"),
    (lambda t: [str(t / "missing.pth")], "not found"),
    (lambda t: [str(t / "x.txt"), "--arch", "edsr"], "not found"),
    (lambda t: ["--arch", "edsr", "--random-init", "--lr-size", "16by16"], "HxW"),
    (lambda t: ["--arch", "vdsr", "--random-init"], "unknown architecture"),
    (lambda t: [str(_unknown_checkpoint(t))], "name it with --arch"),
    (lambda t: [str(_edsr_checkpoint(t)), "--arch", "rcan", "--scale", "2"], "does not fit rcan"),
    (lambda t: [str(_edsr_checkpoint(t)), "--arch", "edsr", "--scale", "4"], "does not fit edsr"),
])
def test_bad_input_is_one_line_and_exit_2(args: Callable[[Path], list[str]], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", *args(tmp_path), "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.onnx").exists()


def test_unreadable_and_mismatched_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["export", str(tmp_path / "junk.pth"), "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code == 2 and "cannot read" in result.output
    ckpt = save_checkpoint(random_weights(SPANDREL["Compact"]()).state_dict(), tmp_path / "c.safetensors")
    result = runner.invoke(app, ["export", str(ckpt), "--scale", "4", "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code == 2 and "x2 model" in result.output
    result = runner.invoke(app, ["export", str(ckpt), "--width", "8", "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code == 2 and "--arch" in result.output


def test_missing_torch_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lam_trt.commands.export import _import_torch
    from lam_trt.errors import InputError

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    result = runner.invoke(app, ["export", "--arch", "edsr", "--random-init", "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code == 2 and "needs PyTorch: pip install" in result.output
    with pytest.raises(InputError, match=r"lam-trt\[export\]"):
        _import_torch()


def test_cli_and_commands_import_without_torch() -> None:
    code = ("import sys, lam_trt.cli, lam_trt.commands.export, lam_trt.commands.inspect, lam_trt.export.model_report; "
            "sys.exit(int(any(m in sys.modules for m in ('torch', 'spandrel'))))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, "torch was imported"


class _FrozenSize(torch.nn.Module):
    """Python ints taken from the input's shape: tracing freezes them into the ONNX graph."""

    def __init__(self, freeze: str):
        super().__init__()
        self.freeze = freeze
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.freeze == "hw":
            size = (2 * int(x.shape[2]), 2 * int(x.shape[3]))
            return torch.nn.functional.interpolate(y[:, :3], size=size, mode="nearest")
        b = int(x.shape[0])
        return torch.nn.functional.pixel_shuffle(y.reshape(b, 12, -1).reshape(b, 12, x.shape[2], x.shape[3]), 2)


# TorchScript freezes the Python ints; dynamo keeps H and W symbolic, but its batch-1 trace fixes the
# batch in a Reshape (the file fails at batch 2 and 3): both are found and fixed at the traced size.
@pytest.mark.parametrize("freeze, exporter, dynamic_batch, dynamic_hw", [
    ("hw", "torchscript", True, False), ("batch", "torchscript", False, True),
    ("hw", "dynamo", True, True), ("batch", "dynamo", False, True),
])
def test_export_fixes_what_the_trace_froze(freeze: str, exporter: str, dynamic_batch: bool, dynamic_hw: bool,
                                           tmp_path: Path) -> None:
    from lam_trt.export.torch_export import export_onnx

    report = export_onnx(_FrozenSize(freeze).eval(), tmp_path / "m.onnx", in_channels=3, size=(8, 8),
                         exporter=exporter)
    assert (report.dynamic_batch, report.dynamic_hw) == (dynamic_batch, dynamic_hw)
    assert len(report.warnings) == (not (dynamic_batch and dynamic_hw))
    assert all("fixed" in w for w in report.warnings)
    if not dynamic_batch:
        assert "fails in onnxruntime at batch 2 and 3" in report.warnings[0]
    assert report.max_rel_error < 1e-5
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    dims = session.get_inputs()[0].shape
    assert (dims[0] == 1) != dynamic_batch and (dims[2:] == [8, 8]) != dynamic_hw


class _BatchIndexed(torch.nn.Module):
    """Scales image i by 1 + i: both exporters trace ``arange(batch)`` at batch 1 as the constant [0], so
    the dynamic-batch file is right image by image and silently wrong for all but a batch's first image."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * (1 + torch.arange(int(x.shape[0]), dtype=y.dtype).view(-1, 1, 1, 1))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_batch_check_names_the_batch_sizes_that_disagree(exporter: str, tmp_path: Path) -> None:
    from lam_trt.export.torch_export import export_onnx

    model = _BatchIndexed().eval()
    report = export_onnx(model, tmp_path / "m.onnx", in_channels=3, size=(8, 8), exporter=exporter)
    [note] = report.warnings
    assert note.startswith("batch fixed at 1: the traced graph disagrees with PyTorch at batch 2 (")
    assert "and batch 3 (" in note and "agrees image by image" in note
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert not report.dynamic_batch and session.get_inputs()[0].shape[0] == 1
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():  # the file written is right at batch 1, the batch lam-trt runs it at
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_dynamo_exporter_from_the_cli(tmp_path: Path) -> None:
    from lam_trt.export.checkpoint import load_checkpoint

    out = tmp_path / "d.onnx"
    result, report = export("--arch", "edsr", "--random-init", "--width", "8", "--depth", "1", "--scale", "2",
                            "--lr-size", "16x12", "--exporter", "dynamo", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert report["opset"] >= 18 and report["dynamic_batch"] and report["dynamic_hw"] and report["warnings"] == []
    assert [c["shape"] for c in report["checks"]] == [[1, 3, 16, 12], [2, 3, 20, 20], [3, 3, 16, 12]]
    torch.manual_seed(0)  # what --random-init does
    model = load_checkpoint(None, arch="edsr", scale=2, width=8, depth=1).module.eval()
    x = np.random.default_rng(4).random((3, 3, 10, 14), dtype=np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    result = runner.invoke(app, ["export", "--arch", "edsr", "--random-init", "--exporter", "onnxscript",
                                 "-o", str(tmp_path / "n.onnx")])
    assert result.exit_code == 2 and "Traceback" not in result.output and not (tmp_path / "n.onnx").exists()


def _nan_checkpoint(tmp_path: Path) -> Path:
    model = build("edsr", scale=2, width=8, depth=1)
    state = model.state_dict()
    next(v for k, v in state.items() if k.endswith("weight")).view(-1)[0] = float("nan")
    path = tmp_path / "diverged.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("args, message", [
    (lambda t: ["--arch", "edsr", "--random-init", "--scale", "0"], "--scale must be a positive integer"),
    (lambda t: ["--arch", "edsr", "--random-init", "--tolerance", "nan"], "--tolerance must be a finite number"),
    (lambda t: ["--arch", "edsr", "--random-init", "--tolerance", "-1e-3"], "--tolerance must be a finite number"),
    (lambda t: [str(_nan_checkpoint(t)), "--arch", "edsr", "--scale", "2", "--json"], "NaN or infinite weights"),
])
def test_numbers_a_model_cannot_be_built_or_checked_with(args: Callable[[Path], list[str]], message: str,
                                                        tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", *args(tmp_path), "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stdout == "" and "Traceback" not in result.output
    assert not (tmp_path / "out.onnx").exists()


def test_output_folder_gets_the_checkpoint_stem(tmp_path: Path) -> None:
    ckpt = tmp_path / "my_edsr.pth"
    torch.save(build("edsr", scale=2, width=8, depth=1).state_dict(), ckpt)
    folder = tmp_path / "models"
    folder.mkdir()
    result, report = export(str(ckpt), "--arch", "edsr", "--scale", "2", "--lr-size", "16", "-o", str(folder), "--json")
    assert result.exit_code == 0, result.output
    assert report["path"] == str(folder / "my_edsr.onnx") and sorted(p.name for p in folder.iterdir()) == ["my_edsr.onnx"]


@pytest.mark.parametrize("make_out", [
    lambda t: (t / "file").write_text("x") and t / "file" / "m.onnx",   # a file's "subfolder"
    lambda t: (t / "link").symlink_to(t / "nowhere") or t / "link",    # a dangling link
])
def test_unusable_output_is_refused_before_the_export(make_out: Callable[[Path], Path], tmp_path: Path) -> None:
    out = make_out(tmp_path)
    result = runner.invoke(app, ["export", "--arch", "edsr", "--random-init", "-o", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert str(out) in result.stderr and ".lam-" not in result.stderr and len(result.stderr.splitlines()) == 1
