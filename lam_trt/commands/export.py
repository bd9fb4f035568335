"""``lam-trt export``: a PyTorch checkpoint or zoo architecture -> a checked ONNX file.

PyTorch, spandrel and safetensors are the optional ``lam-trt[export]`` extra, imported only
when this command runs.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer

from lam_trt.commands._common import (Exporter, ExporterOption, JsonOut, LrSize, err_console, out_console, print_json,
                                     stage)
from lam_trt.errors import InputError
from lam_trt.io import check_out_file, write_bytes

DEFAULT_LR_SIZE = "64x64"


def export_command(
    checkpoint: Optional[Path] = typer.Argument(None, help="Weights to export; the architecture is detected by spandrel unless --arch names it."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Zoo architecture: fsrcnn, edsr, carn, msrn, rrdbnet, imdn, rfdn, pan, rcan, rnan, san, swinir."),
    random_init: bool = typer.Option(False, "--random-init", help="Export --arch with random weights (no checkpoint); models trained on 0..255 then take [0, 1] directly."),
    scale: Optional[int] = typer.Option(None, "--scale", help="Upscaling factor (zoo default 4; checked against a detected checkpoint)."),
    width: Optional[int] = typer.Option(None, "--width", help="Zoo: channel width (default: the published one, or read from the checkpoint)."),
    depth: Optional[int] = typer.Option(None, "--depth", help="Zoo: number of blocks or groups (default: the published one)."),
    lr_size: LrSize = DEFAULT_LR_SIZE,
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="ONNX file to write, or a folder for <checkpoint stem>.onnx (default: <checkpoint stem>.onnx here)."),
    attribution_graph: Optional[Path] = typer.Option(None, "--attribution-graph", help="Also write the attribution graph for --lr-size."),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="Largest relative onnxruntime-vs-PyTorch error accepted (exit code 1 above)."),
    json_output: JsonOut = False,
    exporter: ExporterOption = Exporter.torchscript,
) -> None:
    """Export a checkpoint or a zoo architecture to ONNX, checked against PyTorch in onnxruntime.

    Checkpoints: .pth, .pt, .ckpt, .safetensors; H and W are fixed at --lr-size where they cannot be dynamic."""
    from lam_trt.bench import parse_size

    if checkpoint is not None and random_init:
        raise InputError("give either a checkpoint or --random-init, not both")
    if checkpoint is None and not (arch and random_init):
        raise InputError("give a checkpoint, or --arch NAME --random-init")
    h, w = parse_size(lr_size or DEFAULT_LR_SIZE)
    check_numbers(scale, width, depth, tolerance)
    output = check_out_file(output_file(output, checkpoint, arch, scale))
    if attribution_graph is not None:
        check_out_file(attribution_graph, "--attribution-graph")
    torch = _import_torch()
    from lam_trt.export.checkpoint import load_checkpoint
    from lam_trt.export.torch_export import export_onnx

    torch.manual_seed(0)  # --random-init exports are reproducible
    with stage("loading the model"):
        loaded = load_checkpoint(checkpoint, arch=arch, scale=scale, width=width, depth=depth)
    check_finite_weights(loaded.module, loaded.source)
    if min(h, w) < loaded.min_size:
        raise InputError(f"{loaded.architecture} needs inputs of at least {loaded.min_size} pixels, --lr-size is {h}x{w}")
    with stage("exporting to ONNX and checking it against PyTorch"):
        report = export_onnx(loaded.module, output, in_channels=loaded.in_channels, size=(h, w), fixed_hw=loaded.fixed_size,
                             metadata=_metadata(loaded), tolerance=tolerance, exporter=exporter.value)
    notes = _size_notes(loaded, h, w)
    notes += [n for n in report.warnings if not (loaded.fixed_size and n.startswith("height and width"))]
    summary = _summary(loaded, report.to_dict(), notes)
    if attribution_graph is not None:
        with stage("building the attribution graph"):
            _write_attribution_graph(output, attribution_graph, (loaded.in_channels, h, w))
        summary["attribution_graph"] = {"path": str(attribution_graph), "input_shape": [loaded.in_channels, h, w]}
    _print(summary, json_output)


def _metadata(loaded: Any) -> dict[str, str]:
    """What the ONNX file records of its origin; inspect reports this parameter count (ONNX folds some)."""
    return {"lam_trt.architecture": loaded.architecture, "lam_trt.scale": str(loaded.scale),
            "lam_trt.source": loaded.source, "lam_trt.parameters": str(_parameters(loaded))}


def check_numbers(scale: Optional[int], width: Optional[int], depth: Optional[int], tolerance: float) -> None:
    """Options a model cannot be built or checked with, refused before anything is loaded."""
    for option, value in (("--scale", scale), ("--width", width), ("--depth", depth)):
        if value is not None and value < 1:
            raise InputError(f"{option} must be a positive integer, got {value}")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise InputError(f"--tolerance must be a finite number >= 0, got {tolerance}")


def output_file(output: Optional[Path], checkpoint: Optional[Path], arch: Optional[str], scale: Optional[int]) -> Path:
    """The ONNX file to write: ``-o FILE`` as given; ``-o FOLDER`` or no ``-o``: <stem>.onnx in it
    (here), with the checkpoint's stem, or ``<arch>-x<scale>`` for a random-init export."""
    if output is not None and not output.is_dir():
        return output
    stem = checkpoint.stem if checkpoint is not None else f"{arch}-x{scale or 4}"
    return (output or Path(".")) / f"{stem}.onnx"


def check_finite_weights(module: Any, source: str) -> None:
    """NaN or infinite weights make every output NaN: refuse them instead of exporting a broken model."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    bad = [name for name, t in tensors if t.is_floating_point() and not bool(t.isfinite().all())]
    if bad:
        raise InputError(f"{source} holds NaN or infinite weights in {len(bad)} tensor(s), e.g. {bad[0]}; "
                         "a checkpoint saved after training diverged cannot be attributed")


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise InputError("lam-trt export needs PyTorch: pip install 'lam-trt[export]'") from None
    return torch


def _size_notes(loaded: Any, h: int, w: int) -> list[str]:
    if not loaded.fixed_size:
        return []
    note = f"{loaded.architecture}: height and width fixed at {h}x{w} (window attention); attribute LR images of exactly this size"
    if loaded.size_multiple > 1 and (h % loaded.size_multiple or w % loaded.size_multiple):
        note += f"; {h}x{w} is not a multiple of the window size {loaded.size_multiple}, so the model pads it"
    return [note]


def _write_attribution_graph(model_path: Path, out: Path, input_shape: tuple[int, int, int]) -> None:
    from lam_trt.export import build_attribution_graph, save_attribution_graph

    graph = build_attribution_graph(str(model_path), input_shape)
    if graph.ByteSize() < (1 << 31) - (1 << 24):
        write_bytes(out, graph.SerializeToString())
    else:  # beyond protobuf's 2 GB: weights go to a .data file beside it (not atomic)
        save_attribution_graph(graph, out)


def _parameters(loaded: Any) -> int:
    return sum(p.numel() for p in loaded.module.parameters())


def _summary(loaded: Any, report: dict, notes: list[str]) -> dict:
    params = _parameters(loaded)
    return {
        "architecture": loaded.architecture,
        "scale": loaded.scale,
        "in_channels": loaded.in_channels,
        "parameters": params,
        "source": loaded.source,
        **report,
        "warnings": notes,
    }


def _print(summary: dict, json_output: bool) -> None:
    if json_output:
        print_json(summary)
        return
    dims = [name for name, on in (("batch", summary["dynamic_batch"]), ("height and width", summary["dynamic_hw"])) if on]
    shapes = ", ".join("x".join(map(str, c["shape"])) for c in summary["checks"])
    worst = max(summary["checks"], key=lambda c: c["max_rel_error"])
    out_console.print(
        f"exported {summary['architecture']} x{summary['scale']} ({summary['source']}, "
        f"{_count(summary['parameters'])} parameters) -> {summary['path']}",
        soft_wrap=True,
    )
    fixed = "" if dims else f" (fixed input {'x'.join(map(str, summary['checks'][0]['shape']))})"
    out_console.print(f"  opset {summary['opset']}, dynamic {', '.join(dims) if dims else 'nothing'}{fixed}", soft_wrap=True)
    out_console.print(
        f"  onnxruntime vs PyTorch: max abs error {worst['max_abs_error']:.2e}, "
        f"relative {worst['max_rel_error']:.2e} (inputs {shapes})",
        soft_wrap=True,
    )
    if "attribution_graph" in summary:
        shape = "x".join(map(str, summary["attribution_graph"]["input_shape"]))
        out_console.print(f"  attribution graph for {shape} -> {summary['attribution_graph']['path']}", soft_wrap=True)
    for note in summary["warnings"]:
        err_console.print(f"[yellow]warning:[/] {note}", soft_wrap=True)


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return str(n)
