"""One script for a GPU machine: is the GPU path right, and how fast is it? Prints a markdown table.

    source .device/on-gpu.sh install      # onnxruntime-gpu (see shared/gpu-test/README.md)
    python bench/gpu_check.py [--steps 100] [--repeats 5]

Checks, on the bundled demo model (64x64 LR, x4): the CuPy path kernel against the NumPy path
(max abs), and the map on CUDA / TensorRT (fp32, fp16) against the CPU provider (relative L2);
then times one attribution per provider (median of --repeats after a warm-up) with the share of
the integral in the total.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort

import lam_trt
from lam_trt.commands.demo import demo_files
from lam_trt.images import load_image
from lam_trt.kernels import blur_path, blur_path_cuda, cuda_available
from lam_trt.providers import available


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def check_kernel(image: np.ndarray, steps: int) -> float:
    import cupy

    points, weights = blur_path_cuda(image, 1.2, steps, 9)
    ref = blur_path(image, 1.2, steps, 9)
    return max(float(np.abs(cupy.asnumpy(points) - ref.points).max()),
               float(np.abs(cupy.asnumpy(weights) - ref.weights).max()))


def timed(attributor: lam_trt.Attributor, image, window, steps: int, repeats: int):
    attributor.attribute(image, window=window, steps=steps)  # warm-up: graph, session, engines
    runs = [attributor.attribute(image, window=window, steps=steps) for _ in range(repeats)]
    total = statistics.median(r.meta["timings_seconds"]["total"] for r in runs)
    integral = statistics.median(r.meta["timings_seconds"]["integral"] for r in runs)
    return runs[-1], total, integral


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model, image_path, info = demo_files()
    image = load_image(image_path, 3)
    window = (info["demo_window"]["x"], info["demo_window"]["y"])
    ok, why = cuda_available()
    print(f"onnxruntime {ort.__version__}: {ort.get_available_providers()}; CuPy: {why}")
    report: dict = {"providers": available(), "cupy": why}
    if ok:
        report["kernel_max_abs"] = check_kernel(image, args.steps)
    rows, reference = [], None
    variants = [("cpu", False)] + [(p, False) for p in ("cuda", "tensorrt") if p in available()]
    if "tensorrt" in available():
        variants.append(("tensorrt", True))
    for provider, fp16 in variants:
        attributor = lam_trt.Attributor(model, provider=provider, fp16=fp16)
        result, total, integral = timed(attributor, image, window, args.steps, args.repeats)
        reference = reference if reference is not None else result.attribution
        rows.append({"provider": provider + (" fp16" if fp16 else ""), "seconds": total,
                     "integral": integral, "rel_l2_vs_cpu": rel_l2(result.attribution, reference),
                     "path_images_per_s": args.steps / integral, "generator":
                     result.meta["runtime"]["path_generator"], "batch": result.meta["runtime"]["batch_size"]})
    report["rows"] = rows
    print("| provider | s / attribution | integral s | path images/s | rel L2 vs CPU | path | batch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['provider']} | {r['seconds']:.4f} | {r['integral']:.4f} | {r['path_images_per_s']:.0f} | "
              f"{r['rel_l2_vs_cpu']:.2e} | {r['generator']} | {r['batch']} |")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
