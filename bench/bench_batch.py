#!/usr/bin/env python
"""lam-trt's path integral per path image at several chunk sizes (``internal_batch_size``), per network.

The runner feeds the path in chunks; this shows which chunk size is fastest on this machine, the
number behind the runner's default. Only the path integral is timed (GraphRunner.run through
Attributor.attribute's timings), crop off, on the bench configurations of bench_networks.py.

    python bench/bench_batch.py --nets edsr,swinir --batches 1 4 8 16 32 --steps 32
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default="fsrcnn,edsr,rrdbnet,swinir")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", type=Path, default=C.BENCH_DIR)
    args = p.parse_args(argv)
    from lam_trt import Attributor

    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lam-trt-batch-") as tmp:
        for name in [n for n in args.nets.split(",") if n]:
            size = C.bench_size(name)
            onnx_path = C.export_model(name, C.build_model(name), Path(tmp), size)
            attributor = Attributor(onnx_path, provider="cpu", cache_dir=Path(tmp) / "cache", threads=args.threads)
            image, (x, y) = C.bench_image(size), C.centre(size)
            default = attributor.runner((3, *size))[0].batch_size

            def integral(batch: int) -> float:
                r = attributor.attribute(image, window=(x, y), size=C.WINDOW_SIZE, steps=args.steps,
                                         sigma=C.SIGMA, kernel_size=C.KERNEL_SIZE, crop=False,
                                         internal_batch_size=batch)
                return r.meta["timings_seconds"]["integral"]

            for b in args.batches:
                integral(b)  # warm-up: ORT plans memory for a new batch shape on first sight
            times: dict[int, list[float]] = {b: [] for b in args.batches}
            with C.LoadWatch() as watch:
                for _ in range(args.repeats):  # interleaved, so load drifts hit every size alike
                    for b in args.batches:
                        times[b].append(integral(b))
            per_image = {b: 1e3 * C.median(v) / args.steps for b, v in times.items()}
            best = min(per_image, key=per_image.get)
            rows.append({"net": name, "config": C.CONFIGS[name].describe(), "lr_size": list(size),
                         "default_batch": default, "ms_per_image": per_image, "best": best,
                         "other_busy_processes": watch.seen})
            print(f"{name:8s} default {default:3d}: " + "  ".join(f"{b}: {v:.1f} ms" for b, v in per_image.items())
                  + f"  -> best {best}" + (f"  [disturbed by: {watch.seen}]" if watch.seen else ""), flush=True)
    data = {"date": C.now(), "argv": sys.argv[1:] if argv is None else argv, "steps": args.steps,
            "threads": args.threads, "repeats": args.repeats, "rows": rows,
            "wall_seconds": time.perf_counter() - start, "load": [C.load_snapshot()]}
    (args.out / "results_batch.json").write_text(json.dumps(data, indent=1))
    lines = [f"Measured {data['date']} by `python bench/bench_batch.py {' '.join(data['argv'])}`: lam-trt path "
             f"integral (CPU, {args.threads} threads, crop off, {args.steps} steps), milliseconds per path image, "
             f"median of {args.repeats} interleaved runs. Load: {C.describe_load(data['load'])}.", "",
             "| net | default batch | " + " | ".join(f"batch {b}" for b in args.batches) + " | fastest |",
             "|---|---:|" + "---:|" * len(args.batches) + "---:|"]
    for r in rows:
        mark = " (!)" if r.get("other_busy_processes") else ""
        lines.append(f"| {r['net']}{mark} ({r['config']}, {r['lr_size'][0]}x{r['lr_size'][1]}) | {r['default_batch']} | "
                     + " | ".join(f"{r['ms_per_image'][b]:.1f}" for b in args.batches) + f" | {r['best']} |")
    disturbed = [f"{r['net']} ({', '.join(f'{k} {v}%' for k, v in r['other_busy_processes'].items())})"
                 for r in rows if r.get("other_busy_processes")]
    if disturbed:
        lines += ["", "(!) other processes took more than 25% of a core during: " + "; ".join(disturbed) + "."]
    C.replace_section("batch", "\n".join(lines), args.out / "RESULTS.md")
    print(f"wrote {args.out / 'results_batch.json'} ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
