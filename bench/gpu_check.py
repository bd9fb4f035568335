"""One script for a GPU machine: is lam-trt's GPU path right, and how fast is it on that card?

    source .device/on-gpu.sh install      # onnxruntime-gpu (see shared/gpu-test/README.md)
    python bench/gpu_check.py --out DIR [--steps 100] [--repeats 3] [--nets demo,edsr,rrdbnet,swinir]

Five parts, each saved to DIR/gpu.json and DIR/gpu.md as soon as it is done (a run cut short keeps
what it measured), TF32 off in PyTorch and ONNX Runtime throughout:
  1. environment: card, driver, versions, the providers ONNX Runtime lists;
  2. kernel: the CuPy path kernel against the NumPy path (max abs), both rules, 64x64 and 256x256;
  3. providers: the demo map on CUDA (and TensorRT fp32/fp16 where listed) against the CPU provider
     (relative L2), at the paper's setting (64x64 LR, x4, 100 steps); TensorRT runs last, because
     building its engines can take minutes;
  4. ragged chunks: one CUDA session of the EDSR graph at alternating and at equal batches;
  5. networks, per net and LR size (64x64 and 256x256), on the same card in the same run:
     (a) the authors' algorithm and (b) batched PyTorch autograd (bench/reference_lam.py) on CUDA,
     (c) lam-trt on the CUDA provider with crop off (the same work as (a) and (b)), and lam-trt as
     users run it (crop auto); seconds per attribution, path images per second, where (c)'s time
     goes (path kernel, ONNX Runtime, host) and the share of the card's fp32 FLOP rate it reaches.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import reference_lam as peers  # noqa: E402

Report = dict[str, Any]


def median_time(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> tuple[float, Any]:
    """Median wall seconds of ``repeats`` calls after one warm-up (synchronised), and the last result."""
    out = fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


# ---------------------------------------------------------------------------------------------
# 1. Environment.

def environment() -> Report:
    import cupy
    import onnxruntime as ort
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # the card's fp32, as the CPU computes it
    torch.backends.cudnn.allow_tf32 = False
    props = torch.cuda.get_device_properties(0)
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,memory.total",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout.strip()
    name, driver, max_mhz, memory = [s.strip() for s in smi.split(",")] if smi.count(",") == 3 else [props.name, "?", "0", "?"]
    fp32_lanes = 128 if props.major >= 8 and (props.major, props.minor) != (8, 0) else 64  # per SM
    peak = props.multi_processor_count * fp32_lanes * 2 * float(max_mhz) * 1e6
    return {"card": name, "driver": driver, "memory_mib": memory, "sms": props.multi_processor_count,
            "compute_capability": f"{props.major}.{props.minor}", "max_sm_clock_mhz": float(max_mhz),
            "fp32_peak_tflops": round(peak / 1e12, 1), "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "versions": {**C.versions(), "cupy": cupy.__version__},
            "ort_providers": ort.get_available_providers(), "tf32": False, "cpu": C.machine()}


# ---------------------------------------------------------------------------------------------
# 2. The CuPy path kernel against the NumPy path.

def kernel_check(steps: int) -> Report:
    import cupy

    from lam_trt.kernels import blur_path, blur_path_cuda

    rows = []
    for size in (64, 256):
        image = C.bench_image((size, size))
        for rule in ("right", "trapezoid"):
            points, weights = blur_path_cuda(image, C.SIGMA, steps, C.KERNEL_SIZE, rule=rule)
            ref = blur_path(image, C.SIGMA, steps, C.KERNEL_SIZE, rule)
            err = max(float(np.abs(cupy.asnumpy(points) - ref.points).max()),
                      float(np.abs(cupy.asnumpy(weights) - ref.weights).max()))
            seconds = kernel_seconds(image, steps, rule)
            rows.append({"lr_size": size, "rule": rule, "steps": steps, "max_abs": err, "kernel_ms": 1e3 * seconds,
                         "path_gb_per_s": 2 * points.nbytes / seconds / 1e9})
    return {"rows": rows}


def kernel_seconds(image: np.ndarray, steps: int, rule: str = "right", repeats: int = 10) -> float:
    """Median device time of one launch writing every point and weight (CUDA events)."""
    import cupy

    from lam_trt.kernels import blur_path_cuda

    device_image = cupy.asarray(image)
    out = blur_path_cuda(device_image, C.SIGMA, steps, C.KERNEL_SIZE, rule=rule)  # compiles, allocates
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        blur_path_cuda(device_image, C.SIGMA, steps, C.KERNEL_SIZE, rule=rule, out=out)
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------
# 3. Providers against the CPU provider on the demo model.

def provider_check(steps: int, repeats: int, providers: tuple[str, ...]) -> Report:
    import lam_trt
    from lam_trt.commands.demo import demo_files
    from lam_trt.images import load_image
    from lam_trt.providers import available

    model, image_path, info = demo_files()
    image = load_image(image_path, 3)
    window = (info["demo_window"]["x"], info["demo_window"]["y"])
    variants = [("cpu", False)] + [(p, fp16) for p in providers if p in available() for fp16 in
                                   ((False, True) if p == "tensorrt" else (False,))]
    rows, reference = [], None
    for provider, fp16 in variants:
        label = provider + (" fp16" if fp16 else "")
        try:
            attributor = lam_trt.Attributor(model, provider=provider, fp16=fp16)
            seconds, result = median_time(lambda: attributor.attribute(image, window=window, steps=steps),
                                          repeats, lambda: None)
        except Exception as exc:  # a provider that fails is a finding to record, not the end of the run
            rows.append({"provider": label, "error": one_line(exc)})
            continue
        reference = result.attribution if reference is None else reference
        runtime = result.meta["runtime"]
        rows.append({"provider": label, "seconds": seconds, "rel_l2_vs_cpu": C.rel_l2(result.attribution, reference),
                     "providers_used": runtime["providers_used"],
                     "generator": runtime["path_generator"], "batch": runtime["batch_size"],
                     "timings": result.meta["timings_seconds"]})
    return {"model": "demo_x4.onnx", "steps": steps, "window": list(window), "rows": rows}


# ---------------------------------------------------------------------------------------------
# 4. Networks: lam-trt on CUDA against the authors' algorithm and batched autograd on the same card.

def torch_and_onnx(name: str, size: tuple[int, int], workdir: Path):
    """The PyTorch network (on the GPU) and its ONNX file; ``demo`` is the bundled model, rebuilt in
    PyTorch from its own initializers."""
    import onnx
    import torch
    from onnx import numpy_helper

    if name == "demo":
        from lam_trt.commands.demo import demo_files
        from lam_trt.export.train_demo import DemoSR

        path = demo_files()[0]
        state = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(path).graph.initializer}
        model = DemoSR()
        model.load_state_dict(state)
        return model.eval().cuda(), Path(path)
    model = C.build_model(name)
    path = C.export_model(name, model, workdir, size)  # on the CPU, before the model moves
    return model.cuda(), path


def network_row(name: str, lr: int, steps: int, repeats: int, workdir: Path, peak_flops: float) -> Report:
    import torch

    import lam_trt
    from lam_trt.export.model_report import inspect_model

    size = (lr, lr)
    model, onnx_path = torch_and_onnx(name, size, workdir)
    image = C.bench_image(size)
    window = C.centre(size)
    kw = dict(size=C.WINDOW_SIZE, steps=steps, sigma=C.SIGMA, kernel_size=C.KERNEL_SIZE)
    attributor = lam_trt.Attributor(onnx_path, provider="cuda", cache_dir=workdir / "cache")
    sync = torch.cuda.synchronize
    methods = {
        "a": lambda: peers.lam_authors(model, image, window, **kw),
        "b": lambda: peers.lam_batched(model, image, window, batch_size=16, **kw),
        "c": lambda: attributor.attribute(image, window=window, crop=False, **kw),
        "c_auto": lambda: attributor.attribute(image, window=window, **kw),
    }
    seconds, results = {}, {}
    for key, fn in methods.items():
        seconds[key], results[key] = median_time(fn, repeats, sync)
    c = results["c"]
    timings, runtime = c.meta["timings_seconds"], c.meta["runtime"]
    kernel = kernel_seconds(image, steps)
    ort_s = timings["endpoints"] + timings["integral"] - kernel
    flops = 2 * inspect_model(onnx_path, size)["gflops_per_lr_pixel"] * 1e9 * lr * lr  # forward + input VJP
    return {
        "net": name, "lr_size": lr, "steps": steps, "repeats": repeats,
        "config": "bundled demo (70.8 k parameters)" if name == "demo" else C.CONFIGS[name].note,
        "seconds": seconds, "speedup_vs_a": seconds["a"] / seconds["c"], "speedup_vs_b": seconds["b"] / seconds["c"],
        "path_images_per_s": steps / seconds["c"],
        "equal_work_rel_l2": {k: C.rel_l2(results[k].attribution, c.attribution) for k in ("a", "b")},
        "crop_auto": {"applied": results["c_auto"].meta["crop"]["applied"],
                      "rel_l2_vs_full": C.rel_l2(results["c_auto"].attribution, c.attribution)},
        "shares": {"path_kernel": kernel / timings["total"], "onnx_runtime": ort_s / timings["total"],
                   "host": max(0.0, 1 - (timings["endpoints"] + timings["integral"]) / timings["total"])},
        "timings": timings, "kernel_seconds": kernel, "batch": runtime["batch_size"], "chunks": runtime["chunks"],
        "generator": runtime["path_generator"], "providers_used": runtime["providers_used"],
        "gflop_per_path_image": flops / 1e9,
        "fp32_peak_fraction": {"c": flops * steps / timings["integral"] / peak_flops if peak_flops else None,
                               "b": flops * steps / seconds["b"] / peak_flops if peak_flops else None},
        "warnings": [w.code for w in c.warnings],
    }


def ragged_check(name: str, lr: int, batches: tuple[int, int], workdir: Path, repeats: int = 3) -> Report:
    """One CUDA session of ``name``'s attribution graph, fed from the host: ms per pass over the path
    in runs of alternating batches (``batches``, as a ragged last chunk gives) and of one batch (their
    mean), to isolate what a batch change costs ONNX Runtime."""
    import onnxruntime as ort

    from lam_trt.export import build_attribution_graph
    from lam_trt.kernels import make_path
    from lam_trt.providers import session_options, session_providers

    size = (lr, lr)
    _, onnx_path = torch_and_onnx(name, size, workdir)
    graph = build_attribution_graph(str(onnx_path), (3, *size))
    session = ort.InferenceSession(graph.SerializeToString(), session_options(),
                                   providers=session_providers("cuda"))
    path = make_path("lam", C.bench_image(size), steps=sum(batches), sigma=C.SIGMA, kernel_size=C.KERNEL_SIZE)
    x, y = C.centre(size)
    windows = np.asarray([[y, x, C.WINDOW_SIZE, C.WINDOW_SIZE]], np.int64)

    def one_pass(chunks: tuple[int, ...]) -> None:
        lo = 0
        for n in chunks:
            session.run(["attribution"], {"path": path.points[lo:lo + n], "weights": path.weights[lo:lo + n],
                                          "windows": windows})
            lo += n

    even = (sum(batches) // 2,) * 2
    ms = {}
    for label, chunks in (("alternating", batches), ("equal", even)):
        seconds, _ = median_time(lambda: one_pass(chunks), repeats, lambda: None)
        ms[label] = 1e3 * seconds
    return {"net": name, "lr_size": lr, "alternating": list(batches), "equal": list(even), "ms": ms}


# ---------------------------------------------------------------------------------------------
# Report.

def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def markdown(report: Report) -> str:
    env = report.get("environment", {})
    lines = [f"GPU check {report['date']} (`python bench/gpu_check.py {' '.join(report['argv'])}`), "
             f"{report.get('wall_seconds', 0):.0f} s."]
    if env:
        v = env["versions"]
        lines += ["", f"- Card: {env['card']}, {env['sms']} SMs, {env['memory_mib']} MiB, driver {env['driver']}, "
                  f"CUDA runtime {env['cuda_runtime']}; fp32 peak {env['fp32_peak_tflops']} TFLOP/s "
                  f"(SMs x 128 lanes x 2 x {env['max_sm_clock_mhz']:.0f} MHz); TF32 off.",
                  "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
                  f"- ONNX Runtime providers: {', '.join(env['ort_providers'])}.",
                  f"- Host: {env['cpu']['cpu']}, {env['cpu']['cores']} cores."]
    if "kernel" in report:
        lines += ["", "| path kernel | rule | steps | max abs vs NumPy | kernel ms | GB/s written |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['lr_size']}x{r['lr_size']} | {r['rule']} | {r['steps']} | {r['max_abs']:.1e} | "
                  f"{r['kernel_ms']:.3f} | {r['path_gb_per_s']:.0f} |" for r in report["kernel"]["rows"]]
    if "providers" in report:
        lines += ["", "| demo, 64x64, x4, 100 steps | s / attribution | rel L2 vs CPU | path | batch | providers used |",
                  "|---|---:|---:|---|---:|---|"]
        for r in report["providers"]["rows"]:
            if "error" in r:
                lines.append(f"| {r['provider']} | error: {r['error']} | | | | |")
            else:
                lines.append(f"| {r['provider']} | {r['seconds']:.3f} | {r['rel_l2_vs_cpu']:.1e} | {r['generator']} | "
                             f"{r['batch']} | {', '.join(p.replace('ExecutionProvider', '') for p in r['providers_used'])} |")
    rows = report.get("networks", [])
    if rows:
        lines += ["", "| net | LR | (a) authors s | (b) batched autograd s | (c) lam-trt s | c vs a | c vs b | "
                  "path img/s | crop auto s | shares kernel / ORT / host | fp32 peak (c, b) | equal work (a, b) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['net']} | {r['lr_size']} | error: {r['error']} |" + " |" * 9)
                continue
            s, sh, fp = r["seconds"], r["shares"], r["fp32_peak_fraction"]
            lines.append(
                f"| {r['net']} | {r['lr_size']}x{r['lr_size']} | {s['a']:.3f} | {s['b']:.3f} | {s['c']:.3f} | "
                f"{r['speedup_vs_a']:.1f}x | {r['speedup_vs_b']:.2f}x | {r['path_images_per_s']:.0f} | "
                f"{s['c_auto']:.3f} | {100 * sh['path_kernel']:.1f}% / {100 * sh['onnx_runtime']:.0f}% / "
                f"{100 * sh['host']:.0f}% | {100 * fp['c']:.1f}%, {100 * fp['b']:.1f}% | "
                f"{r['equal_work_rel_l2']['a']:.0e}, {r['equal_work_rel_l2']['b']:.0e} |")
    if "ragged" in report:
        r = report["ragged"]
        lines += ["", f"Ragged chunks ({r['net']} {r['lr_size']}x{r['lr_size']}, one CUDA session, host feeds): "
                  f"runs of {r['alternating']} {r['ms']['alternating']:.0f} ms per pass, of {r['equal']} "
                  f"{r['ms']['equal']:.0f} ms."]
    for err in report.get("errors", []):
        lines.append(f"\n- {err}")
    return "\n".join(lines)


def save(report: Report, out: Path, start: float) -> None:
    report["wall_seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu.md").write_text(markdown(report) + "\n")


def guarded(report: Report, key: str, fn: Callable[[], Any]) -> None:
    """Run one part; a failure is recorded with its traceback and the next part still runs."""
    try:
        report[key] = fn()
    except Exception as exc:
        report.setdefault("errors", []).append(f"{key}: {one_line(exc)}")
        print(traceback.format_exc(), file=sys.stderr, flush=True)


def network_rows(report: Report, args: argparse.Namespace, workdir: Path, start: float) -> None:
    """Part 4, one row per net and size, saved as each is done; none starts after the budget."""
    peak = report.get("environment", {}).get("fp32_peak_tflops", 0) * 1e12
    report["networks"] = []
    for lr in map(int, args.sizes.split(",")):
        for name in args.nets.split(","):
            if time.perf_counter() - start > args.budget:
                report.setdefault("errors", []).append(f"{name} {lr}: not run (over the {args.budget:.0f} s budget)")
                continue
            try:
                row = network_row(name, lr, args.steps, args.repeats, workdir, peak)
            except Exception as exc:
                print(traceback.format_exc(), file=sys.stderr, flush=True)
                row = {"net": name, "lr_size": lr, "error": one_line(exc)}
            report["networks"].append(row)
            save(report, args.out, start)
            print(markdown(report).splitlines()[-1], flush=True)


def tensorrt_rows(report: Report, args: argparse.Namespace) -> None:
    """TensorRT last, because building its engines can take minutes; its rows join the providers table."""
    from lam_trt.providers import available, tensorrt_unusable

    if "tensorrt" not in available():
        why = tensorrt_unusable() or "ONNX Runtime does not list TensorrtExecutionProvider"
        report.setdefault("errors", []).append(f"tensorrt: not available ({why})")
        return
    guarded(report, "tensorrt", lambda: provider_check(args.steps, args.repeats, ("tensorrt",)))
    report.get("providers", {}).get("rows", []).extend(r for r in report.pop("tensorrt", {}).get("rows", [])
                                                       if r["provider"] != "cpu")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.json and gpu.md")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method after a warm-up (median)")
    parser.add_argument("--nets", default="demo,edsr,rrdbnet,swinir")
    parser.add_argument("--sizes", default="64,256", help="LR sizes (square) of the network table")
    parser.add_argument("--budget", type=float, default=300, help="seconds after which no new network row starts")
    args = parser.parse_args()
    start = time.perf_counter()
    report: Report = {"date": C.now(), "argv": sys.argv[1:]}
    guarded(report, "environment", environment)
    print(json.dumps(report.get("environment"), default=str), flush=True)
    with tempfile.TemporaryDirectory(prefix="lam-trt-gpu-") as tmp:
        workdir = Path(tmp)
        for key, fn in (("kernel", lambda: kernel_check(args.steps)),
                        ("ragged", lambda: ragged_check("edsr", 64, (66, 34), workdir)),
                        ("providers", lambda: provider_check(args.steps, args.repeats, ("cuda",)))):
            guarded(report, key, fn)
            save(report, args.out, start)
            print(markdown({**report, "networks": []}).split("\n\n")[-1], flush=True)
        network_rows(report, args, workdir, start)
    tensorrt_rows(report, args)
    save(report, args.out, start)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
