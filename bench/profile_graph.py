#!/usr/bin/env python
"""Where an attribution graph spends its time: ONNX Runtime's profiler, summed by op type.

Runs the forward model and the attribution graph of one zoo network (bench configuration) on the
same batch of path images with ``SessionOptions.enable_profiling`` and prints, per op type, the
time in the forward graph and in the attribution graph, so a slow gradient rule stands out
(an op whose share in the attribution graph is far above twice its forward share).

    python bench/profile_graph.py edsr --size 32x32 --batch 8
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


def profile(model_path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int, outputs=None,
            level: str = "all", config: dict[str, str] | None = None, provider: str = "cpu",
            provider_options: dict[str, str] | None = None, mem_pattern: bool = False
            ) -> tuple[dict[str, float], dict[str, float], float]:
    """(ms per op type, ms per node, total ms) per run, averaged over ``runs`` after one warm-up.

    On a GPU provider an op type is named with the provider each node ran on ("Conv@CUDA"), so a
    node left to the CPU stands out; GPU nodes' times are their launch times (ONNX Runtime's
    profiler does not wait for the GPU), the total is the wall time of a run."""
    import onnxruntime as ort

    from lam_trt.providers import session_options, session_providers

    opts = session_options(threads)  # lam-trt's own; --config entries override
    opts.enable_mem_pattern = mem_pattern
    chain = session_providers(provider)
    if provider_options and not isinstance(chain[0], str):
        chain[0] = (chain[0][0], {**chain[0][1], **provider_options})
    opts.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                     "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    with tempfile.TemporaryDirectory() as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(str(model_path), opts, providers=chain)
        session.run(outputs, feeds)
        for _ in range(runs):
            session.run(outputs, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_type: dict[str, float] = collections.defaultdict(float)
    by_node: dict[str, float] = collections.defaultdict(float)
    total = 0.0
    model_runs = [e for e in events if e.get("name") == "model_run"]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            if provider != "cpu":
                op += "@" + e.get("args", {}).get("provider", "?").replace("ExecutionProvider", "")
            by_type[op] += e["dur"] / 1e3
            by_node[e["name"][: -len("_kernel_time")] + f" [{op}]"] += e["dur"] / 1e3
    # The first model_run is the warm-up; kernel events of all runs are summed, so scale by runs + 1.
    n = runs + 1
    total = sum(e["dur"] for e in model_runs[1:]) / 1e3 / max(runs, 1)
    return ({k: v / n for k, v in by_type.items()}, {k: v / n for k, v in by_node.items()}, total)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("net", choices=sorted(C.CONFIGS))
    p.add_argument("--size", default="32x32", help="LR size HxW")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--top", type=int, default=12, help="slowest nodes of the attribution graph to list")
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "tensorrt"])
    p.add_argument("--provider-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the provider, e.g. cudnn_conv_algo_search=HEURISTIC")
    p.add_argument("--mem-pattern", action="store_true", help="ONNX Runtime's memory pattern on (lam-trt: off)")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="ONNX Runtime session config entry for both sessions, e.g. session.set_denormal_as_zero=1")
    args = p.parse_args(argv)
    from lam_trt.bench import parse_size
    from lam_trt.export import build_attribution_graph
    from lam_trt.export.attribution_graph import save_attribution_graph
    from lam_trt.kernels import make_path

    size = parse_size(args.size)
    config = dict(item.split("=", 1) for item in args.config)
    run_kw = dict(config=config, provider=args.provider, mem_pattern=args.mem_pattern,
                  provider_options=dict(item.split("=", 1) for item in args.provider_option))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = C.export_model(args.net, C.build_model(args.net), Path(tmp), size)
        graph_path = Path(tmp) / "graph.onnx"
        save_attribution_graph(build_attribution_graph(str(onnx_path), (3, *size)), graph_path)
        path = make_path("lam", C.bench_image(size), steps=args.batch, sigma=C.SIGMA, kernel_size=C.KERNEL_SIZE)
        x, y = C.centre(size)
        windows = np.asarray([[y, x, C.WINDOW_SIZE, C.WINDOW_SIZE]], np.int64)
        fwd_types, _, fwd_total = profile(onnx_path, {"input": np.asarray(path.points)}, args.threads, args.runs, **run_kw)
        lam_types, lam_nodes, lam_total = profile(
            graph_path, {"path": np.asarray(path.points), "weights": np.asarray(path.weights), "windows": windows}, args.threads, args.runs,
            ["detector", "attribution", "contribution"], **run_kw)
    print(f"{args.net} ({C.CONFIGS[args.net].describe()}), {size[0]}x{size[1]}, batch {args.batch}, "
          f"{args.provider}, {args.threads} threads: forward {fwd_total:.1f} ms, attribution graph {lam_total:.1f} ms "
          f"(ratio {lam_total / fwd_total:.2f})")
    print(f"{'op type':24s} {'forward ms':>11s} {'attribution ms':>15s} {'ratio':>6s}")
    for op in sorted(set(fwd_types) | set(lam_types), key=lambda k: -lam_types.get(k, 0)):
        f, a = fwd_types.get(op, 0.0), lam_types.get(op, 0.0)
        print(f"{op:24s} {f:11.1f} {a:15.1f} {a / f if f else float('inf'):6.1f}")
    print(f"\nslowest nodes of the attribution graph:")
    for name, ms in sorted(lam_nodes.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {ms:8.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
