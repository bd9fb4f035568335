#!/usr/bin/env python
"""Which form of a stride-1 Conv's input gradient ONNX Runtime's CPU runs faster, per layer shape.

The adjoint of Conv(W) is both the Conv with W's kernels flipped and channels swapped, and the
ConvTranspose with W itself; export/vjp/conv.py picks one by the adjoint's output channels
(``NCHWC_BLOCK``). This times both on the layer shapes of the zoo (first layers, 1x1 shrinks,
square layers, upsamplers) and writes the table to bench/RESULTS.md.

    python bench/conv_adjoints.py --batch 16 --size 32
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

# (forward input channels, forward output channels, kernel): the adjoint maps out -> in channels
SHAPES = [(3, 64, 3), (3, 56, 5), (3, 60, 3), (12, 56, 1), (16, 64, 3), (12, 12, 3), (56, 12, 1),
          (48, 16, 3), (64, 3, 3), (40, 40, 3), (50, 50, 3), (56, 56, 3), (60, 60, 3), (64, 64, 3),
          (64, 256, 3)]


def session(op: str, weights: np.ndarray, pad: int, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from lam_trt.providers import session_options

    node = helper.make_node(op, ["g", "w"], ["x"], pads=[pad] * 4)
    graph = helper.make_graph([node], "adjoint", [helper.make_tensor_value_info("g", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                providers=["CPUExecutionProvider"])


def best_ms(sess, feed: dict, repeats: int) -> tuple[float, np.ndarray]:
    out = sess.run(None, feed)[0]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return 1e3 * min(times), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=32, help="spatial size of the gradient (square)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", type=Path, default=C.RESULTS_MD)
    args = p.parse_args(argv)
    from lam_trt.export.vjp.conv import NCHWC_BLOCK

    rng = np.random.default_rng(0)
    rows, loads = [], [C.load_snapshot()]
    for cin, cout, k in SHAPES:
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
        flipped = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
        feed = {"g": rng.standard_normal((args.batch, cout, args.size, args.size)).astype(np.float32)}
        conv_ms, a = best_ms(session("Conv", flipped, k // 2, args.threads), feed, args.repeats)
        ct_ms, b = best_ms(session("ConvTranspose", w, k // 2, args.threads), feed, args.repeats)
        agree = float(np.abs(a - b).max() / np.abs(a).max())
        chosen = "ConvTranspose" if cin < NCHWC_BLOCK else "Conv"
        rows.append(f"| {cin} -> {cout}, {k}x{k} | {cin} | {conv_ms:.2f} | {ct_ms:.2f} | {conv_ms / ct_ms:.2f} | "
                    f"{chosen} | {agree:.0e} |")
        print(rows[-1])
    loads.append(C.load_snapshot())
    text = "\n".join([
        f"Measured {C.now()} by `python bench/conv_adjoints.py {' '.join(argv or sys.argv[1:])}`: the input "
        f"gradient of a stride-1 Conv on a [{args.batch}, C_out, {args.size}, {args.size}] gradient, both "
        f"forms, ms, best of {args.repeats} (CPU, {args.threads} threads). lam-trt uses ConvTranspose when "
        f"the adjoint has fewer than {NCHWC_BLOCK} output channels (ONNX Runtime's blocked kernels need "
        f"at least one block), the flipped Conv otherwise. Load: {C.describe_load(loads)}.",
        "",
        "| forward layer | adjoint out channels | flipped Conv ms | ConvTranspose ms | Conv / ConvTranspose | "
        "lam-trt uses | max rel diff |",
        "|---|---:|---:|---:|---:|---|---:|",
        *rows])
    C.replace_section("conv-adjoints", text, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
