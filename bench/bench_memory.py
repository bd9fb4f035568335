#!/usr/bin/env python
"""Peak memory per path image: lam-trt's attribution graph in ONNX Runtime against PyTorch autograd.

For each zoo network (bench/_common.CONFIGS, published widths) at one LR size, the same work in both:
one chunk of B path images through the network, LAM's gradient detector on the centred 16x16 window,
and the gradient with respect to the input (PyTorch: ``autograd.grad`` on the input only, parameters
frozen, as bench/reference_lam.py:lam_batched; lam-trt: one run of the attribution graph). Each
measurement runs in a fresh process: the model, session and inputs are made first, then the peak
resident memory is reset (Linux ``/proc/self/clear_refs``), the chunk runs RUNS times in a row (as
an attribution runs chunk after chunk: what a first run leaves cached counts), and the peak minus
the memory before the runs is what the chunks needed. Per path image = (peak(B=4) - peak(B=1)) / 3.
lam-trt's own estimate (runner.GraphRunner.item_bytes, which sizes the chunks and refuses an image
that cannot fit) is listed beside the measurements.

    python bench/bench_memory.py                       # writes the "memory" section of bench/RESULTS.md
    python bench/bench_memory.py --nets fsrcnn,edsr --size 32x32 --no-write
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

BATCHES = (1, 4)
RUNS = 3  # chunks in a row: ONNX Runtime plans a memory pattern after its first run of a shape
DEFAULT_NETS = "fsrcnn,edsr,rrdbnet,swinir"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default=DEFAULT_NETS, help=f"comma-separated zoo names (default: {DEFAULT_NETS})")
    p.add_argument("--size", default="64x64", help="LR size HxW (default: 64x64, the paper's)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ in the child

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure(run) -> int:
    """Bytes the call ``run()`` added to the peak resident memory of this process."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current VmRSS
    before = _status_kib("VmRSS")
    run()
    return (_status_kib("VmHWM") - before) * 1024


def _path_chunk(size: tuple[int, int], batch: int) -> tuple[np.ndarray, np.ndarray]:
    points = np.stack([C.bench_image(size)] * batch).astype(np.float32)
    return points, np.full_like(points, 1e-2)


def child_ort(graph: str, batch: int, size: tuple[int, int], threads: int) -> dict:
    import onnxruntime as ort

    from lam_trt.providers import session_options

    session = ort.InferenceSession(graph, session_options(threads), providers=["CPUExecutionProvider"])
    points, weights = _path_chunk(size, batch)
    x, y = C.centre(size)
    feeds = {"path": points, "weights": weights, "windows": np.array([[y, x, C.WINDOW_SIZE, C.WINDOW_SIZE]], np.int64)}
    outputs = ["detector", "attribution", "contribution"]
    return {"bytes": _measure(lambda: [session.run(outputs, feeds) for _ in range(RUNS)])}


def child_torch(name: str, batch: int, size: tuple[int, int], threads: int) -> dict:
    import torch

    from reference_lam import detector_window

    torch.set_num_threads(threads)
    model = C.build_model(name)
    for p in model.parameters():
        p.requires_grad_(False)
    points, weights = _path_chunk(size, batch)
    chunk = torch.from_numpy(points).requires_grad_(True)
    x, y = C.centre(size)

    def run() -> None:
        for _ in range(RUNS):
            d = detector_window(model(chunk), y, x, C.WINDOW_SIZE)
            (grad,) = torch.autograd.grad(d.sum(), chunk)
            (grad * torch.from_numpy(weights)).sum(0)

    return {"bytes": _measure(run)}


# ----------------------------------------------------------------------------- in the parent

def _child(*args: object) -> int:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], check=True,
                         capture_output=True, text=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["bytes"])


def measure(name: str, size: tuple[int, int], threads: int, folder: Path) -> dict:
    from lam_trt.export import build_attribution_graph, save_attribution_graph
    from lam_trt.runner import graph_metadata

    onnx_path = C.export_model(name, C.build_model(name), folder, size)
    graph = folder / f"{name}-graph.onnx"
    save_attribution_graph(build_attribution_graph(str(onnx_path), (3, *size)), graph)
    estimate = 2 * int(graph_metadata(graph)["lam_trt.activation_bytes_per_item"])
    hw = f"{size[0]}x{size[1]}"
    row: dict = {"net": name, "config": C.CONFIGS[name].describe(), "size": hw, "estimate": estimate}
    for tool in ("ort", "torch"):
        peaks = {b: _child(tool, graph if tool == "ort" else name, b, hw, threads) for b in BATCHES}
        row[tool] = {"peaks": peaks, "per_image": (peaks[BATCHES[1]] - peaks[BATCHES[0]]) / (BATCHES[1] - BATCHES[0])}
    print(json.dumps(row), flush=True)
    return row


def mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f}"


def markdown(rows: list[dict], threads: int) -> str:
    lines = [
        "## Memory per path image",
        "",
        f"Measured by `python bench/bench_memory.py` on {C.now()} ({threads} threads, CPU, x{C.SCALE}; "
        f"each number is the peak resident memory that {RUNS} chunks of path images in a row added in a fresh "
        "process). "
        "lam-trt runs its attribution graph in ONNX Runtime; PyTorch runs the same network with "
        "`autograd.grad` on the input only (parameters frozen). Per image: the slope between chunks of "
        f"{BATCHES[0]} and {BATCHES[1]} images. Estimate: what lam-trt assumes per image to size chunks "
        "and to refuse an image that cannot fit (twice the forward activations).",
        "",
        "| network | LR | lam-trt per image (MiB) | PyTorch per image (MiB) | lam-trt / PyTorch | "
        "lam-trt 1 image | PyTorch 1 image | lam-trt estimate |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        o, t = r["ort"], r["torch"]
        lines.append(f"| {r['net']} ({r['config']}) | {r['size']} | {mib(o['per_image'])} | {mib(t['per_image'])} | "
                     f"{o['per_image'] / t['per_image']:.2f} | {mib(o['peaks'][1])} | {mib(t['peaks'][1])} | "
                     f"{mib(r['estimate'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        tool, target, batch, hw, threads = args.child
        size = tuple(int(v) for v in hw.split("x"))
        run = child_ort if tool == "ort" else child_torch
        print(json.dumps(run(target, int(batch), size, int(threads))))
        return 0
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(name, size, args.threads, Path(tmp)) for name in args.nets.split(",")]
    text = markdown(rows, args.threads)
    print(text)
    if not args.no_write:
        C.replace_section("memory", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
