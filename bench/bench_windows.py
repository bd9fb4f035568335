#!/usr/bin/env python
"""Many windows in one run: 16 single-window calls against one 16-window call, per zoo network.

For every network at the benchmark's configuration (bench/_common.CONFIGS: LR size, x4, a 16 px
window, sigma 1.2, kernel 9, crop off so that every call does the same work), each measurement runs
in a fresh process (warmed up: graph built, session made), side by side in one run:
  single16: ``Attributor.attribute(window=w)`` for the 16 windows of ``grid:4``, one after another;
  many16:   one ``Attributor.attribute(windows=[16 windows])``;
  one:      one single-window call (the centre), with this code and, given ``--baseline-root``, with
            an older lam-trt importable from that folder (``python -c 'import lam_trt'`` works there).
Peak memory is the process's peak resident memory during the measured block (VmHWM, reset first).
Times are the process's CPU seconds (all its threads): on a machine shared with other work they
stay what the work costs, where wall time follows the load; run with ``--threads 1`` there (ONNX
Runtime's threads spin while they wait, which CPU time would count). Wall-time ratios are kept too.
Medians over ``--repeats``, interleaved so that slow drifts in machine load hit every mode alike.

    python bench/bench_windows.py                         # every network; writes bench/RESULTS.md, bench/windows.png
    python bench/bench_windows.py --nets edsr,fsrcnn --steps 10 --baseline-root /tmp/lam-main
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

WINDOWS = "grid:4"  # 16 windows
TIME = "cpu_seconds"  # the table's time: CPU seconds of the process (all threads), steady under other load


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default=",".join(C.CONFIGS), help="comma-separated zoo names (default: all)")
    p.add_argument("--steps", type=int, default=50, help="path steps (default: 50, the authors' notebook)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per mode (median reported)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--baseline-root", type=Path, default=None,
                   help="a folder from which an older lam-trt imports, to time one window with it too")
    p.add_argument("--work", type=Path, default=Path("/tmp/lam-trt-bench-windows"), help="exported models")
    p.add_argument("--out", type=Path, default=C.BENCH_DIR,
                   help="folder of results_windows.json, RESULTS.md (its section) and windows.png (default: bench/)")
    p.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md and the plot from the JSON")
    p.add_argument("--worker", nargs=2, metavar=("MODE", "NET"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- one measurement, in its own process ---------------------------------------------------------
def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def worker(mode: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time ``mode`` on network ``name`` after a warm-up; seconds and peak resident MiB."""
    import lam_trt
    from lam_trt.batch import WindowSpec

    size = C.bench_size(name)
    path = C.export_model(name, C.build_model(name), args.work, size)
    image = C.bench_image(size)
    attributor = lam_trt.Attributor(path, provider="cpu", threads=args.threads)
    output = (3, size[0] * C.SCALE, size[1] * C.SCALE)
    grid = [(x, y) for x, y, _ in WindowSpec.parse(WINDOWS).windows(output, C.WINDOW_SIZE)]
    kw = dict(size=C.WINDOW_SIZE, steps=args.steps, sigma=C.SIGMA, kernel_size=C.KERNEL_SIZE, crop=False)
    calls = {"one": lambda: attributor.attribute(image, window=C.centre(size), **kw),
             "single16": lambda: [attributor.attribute(image, window=w, **kw) for w in grid],
             "many16": lambda: attributor.attribute(image, windows=grid, **kw)}
    calls["one"]()  # warm-up: graph built or read, session made
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS: the peak of the block below
    seconds, cpu = [], []
    for _ in range(5 if mode == "one" else 1):  # one call is short: the median of five
        start, start_cpu = time.perf_counter(), time.process_time()
        calls[mode]()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"seconds": C.median(seconds), "cpu_seconds": C.median(cpu), "peak_mib": status_kib("VmHWM") / 1024}


def measure(mode: str, name: str, args: argparse.Namespace, root: Path | None = None) -> dict[str, Any]:
    """``worker`` in a fresh process (with ``root`` first on the import path, if given)."""
    env = dict(os.environ)
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--worker", mode, name, "--steps", str(args.steps), "--work", str(args.work)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{mode} {name}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_network(name: str, args: argparse.Namespace) -> dict[str, Any]:
    modes = [("one", None), ("single16", None), ("many16", None)]
    if args.baseline_root:
        modes.append(("one", args.baseline_root))
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeats):
        for mode, root in modes:
            key = mode if root is None else "one_baseline"
            runs.setdefault(key, []).append(measure(mode, name, args, root))
    row = {"net": name, "lr_size": list(C.bench_size(name)), "steps": args.steps, "windows": 16}
    for key, values in runs.items():
        row[key] = {k: C.median([v[k] for v in values]) for k in ("seconds", "cpu_seconds")}
        row[key]["peak_mib"] = max(v["peak_mib"] for v in values)
    row["ratio"] = row["many16"][TIME] / row["single16"][TIME]
    row["wall_ratio"] = row["many16"]["seconds"] / row["single16"]["seconds"]
    if "one_baseline" in row:
        row["one_vs_baseline"] = row["one"][TIME] / row["one_baseline"][TIME]
    print(f"{name}: 16 single {row['single16'][TIME]:.2f} s, one 16-window call "
          f"{row['many16'][TIME]:.2f} s (CPU), ratio {row['ratio']:.2f} (wall {row['wall_ratio']:.2f})", flush=True)
    return row


# ---- report -----------------------------------------------------------------------------------------
def markdown(data: dict[str, Any]) -> str:
    rows = data["rows"]
    baseline = any("one_baseline" in r for r in rows)
    head = ("| network | LR | 16 single calls (CPU s) | one 16-window call (CPU s) | ratio | wall-time ratio "
            "| peak MiB: single / 16-window |")
    head += " one window (CPU s) | baseline (CPU s) | one / baseline |" if baseline else ""
    threads = data.get("threads") or "all"
    lines = [f"{len(rows)} zoo networks, {rows[0]['steps'] if rows else '-'} path steps, CPU provider, {threads} thread(s), "
             f"crop off, windows `{WINDOWS}` (16 of {C.WINDOW_SIZE} px); {data['machine']['cpu']}, "
             f"{data['machine']['cores']} cores; {data['when']}; {data['load']}.", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (f"| {r['net']} | {r['lr_size'][0]}x{r['lr_size'][1]} | {C.fmt_seconds(r['single16'][TIME])} | "
                f"{C.fmt_seconds(r['many16'][TIME])} | {r['ratio']:.2f} | {r['wall_ratio']:.2f} | "
                f"{r['single16']['peak_mib']:.0f} / {r['many16']['peak_mib']:.0f} |")
        if baseline:
            line += (f" {C.fmt_seconds(r['one'][TIME])} | {C.fmt_seconds(r['one_baseline'][TIME])} | "
                     f"{r['one_vs_baseline']:.2f} |" if "one_baseline" in r else " | | |")
        lines.append(line)
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = data["rows"]
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    x = range(len(rows))
    ax.bar(x, [r["ratio"] for r in rows], color="tab:blue")
    ax.axhline(0.5, color="tab:red", linestyle="--", linewidth=1, label="target 0.5")
    ax.set_xticks(list(x), [r["net"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel("one 16-window call /\n16 single-window calls")
    ax.set_title("16 windows in one run (CPU, lower is faster)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=130)


def report(data: dict[str, Any], out: Path) -> None:
    C.replace_section("windows", "## Many windows in one run\n\n" + markdown(data) + "\n\n![](windows.png)",
                      out / "RESULTS.md")
    plot(data, out / "windows.png")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return 0
    result_path = args.out / "results_windows.json"
    if args.report_only:
        report(json.loads(result_path.read_text()), args.out)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    snapshots, rows = [C.load_snapshot()], []
    for name in [n for n in args.nets.split(",") if n]:  # the report grows network by network
        rows.append(measure_network(name, args))
        snapshots.append(C.load_snapshot())
        data = {"when": C.now(), "machine": C.machine(), "versions": C.versions(), "threads": args.threads,
                "load": C.describe_load(snapshots), "rows": rows}
        result_path.write_text(json.dumps(data, indent=2) + "\n")
        report(data, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
