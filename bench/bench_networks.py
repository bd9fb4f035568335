#!/usr/bin/env python
"""lam-trt against the reference LAM algorithm and batched PyTorch autograd, per zoo network.

For every network, side by side in one run with the same threads and the same path:
  (a) the authors' algorithm: one path image at a time, backward() with parameters requiring grad,
      blur per step on the CPU (bench/reference_lam.py:lam_authors);
  (b) batched PyTorch autograd on the input only, in chunks (reference_lam.py:lam_batched);
  (c) lam-trt (Attributor.attribute, crop off so the work is equal) on every ONNX Runtime provider
      present;
  plus the forward passes alone over the same path, in ONNX Runtime and in PyTorch.
Each is warmed up once, then timed ``--repeats`` times, interleaved (a, b, c, forward, a, b, ...),
so slow drifts in machine load hit every method alike; we report medians. The warm-up maps of
(a), (b) and (c) are compared (relative L2) to show the work is the same.

A second table compares receptive-field cropping on and off on a 256x256 LR image (--crop-nets).

    python bench/bench_networks.py                       # everything; writes bench/RESULTS.md and bench/speedups.png
    python bench/bench_networks.py --nets edsr,fsrcnn --steps 50 --repeats 5
    python bench/bench_networks.py --quick                # a minute-long smoke run, results in a temp folder
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import reference_lam as peers  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default=",".join(C.CONFIGS), help="comma-separated zoo names (default: all)")
    p.add_argument("--steps", type=int, nargs="+", default=[50, 100], help="path steps (default: 50 100)")
    p.add_argument("--steps-100-nets", default="fsrcnn,edsr,swinir",
                   help="comma-separated nets measured at the largest --steps value too; the others only at the "
                        "smaller ones, to fit the CPU budget ('all' for every net; default: fsrcnn,edsr,swinir)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per method (median reported)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for PyTorch and ONNX Runtime")
    p.add_argument("--batch-size", type=int, default=None,
                   help="path images per chunk for (b), (c) and the forward passes (default: lam-trt's choice)")
    p.add_argument("--size", default=None, help="LR size HxW for every net (default: per net, see _common.CONFIGS)")
    p.add_argument("--providers", default=None, help="lam-trt providers (default: every one available)")
    p.add_argument("--crop-nets", default="fsrcnn,edsr", help="nets for the crop on/off table ('' to skip)")
    p.add_argument("--crop-size", default="256x256", help="LR size of the crop comparison")
    p.add_argument("--crop-steps", type=int, default=20, help="steps of the crop comparison")
    p.add_argument("--skip-authors", action="store_true", help="leave out (a) (the slowest)")
    p.add_argument("--torch-device", default="cpu", choices=["cpu", "cuda"],
                   help="where (a), (b) and the PyTorch forward run; with cuda, the speed-ups compare them "
                        "with lam-trt's best GPU provider")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of an earlier results.json in --out and replace only those measured now "
                        "(to re-measure a network that other load disturbed)")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: rewrite the RESULTS.md section and the plot from --out/results.json")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: fsrcnn and edsr, 32x32, 8 steps, 2 repeats; writes to a temp folder")
    p.add_argument("--out", type=Path, default=None, help="folder for results.json, RESULTS.md and the plot "
                   "(default: bench/, or a temp folder with --quick)")
    args = p.parse_args(argv)
    if args.quick:
        args.nets = "fsrcnn,edsr" if args.nets == p.get_default("nets") else args.nets
        args.steps, args.repeats, args.size = [8], 2, args.size or "32x32"
        args.crop_size, args.crop_steps = "64x64", 4
        args.out = args.out or Path(tempfile.mkdtemp(prefix="lam-trt-bench-quick-"))
    args.out = args.out or C.BENCH_DIR
    if args.repeats < 1 or args.threads < 1 or min(args.steps) < 1:
        p.error("--repeats, --threads and --steps must be >= 1")
    return args


def size_of(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    from lam_trt.bench import parse_size

    return parse_size(text) if text else default


class Timer:
    """Runs named methods, interleaved, and keeps every time."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        self.times.setdefault(name, []).append(time.perf_counter() - t)
        return out


def ort_forward(onnx_path: Path, threads: int, provider: str):
    import onnxruntime as ort

    from lam_trt.providers import resolve, session_options, session_providers

    # the same session options as lam-trt's own sessions, so the floor is measured like (c)
    session = ort.InferenceSession(str(onnx_path), session_options(threads),
                                   providers=session_providers(resolve(provider)))
    name = session.get_inputs()[0].name

    def forward(points: np.ndarray, batch: int) -> None:
        for lo in range(0, len(points), batch):
            session.run(None, {name: np.ascontiguousarray(points[lo:lo + batch])})

    return forward


def measure_network(name: str, size: tuple[int, int], steps_list: list[int], args: argparse.Namespace,
                    providers: list[str], workdir: Path) -> list[dict[str, Any]]:
    import torch

    from lam_trt import Attributor
    from lam_trt.kernels import make_path

    model = C.build_model(name)
    onnx_path = C.export_model(name, model, workdir, size)
    model = model.to(args.torch_device)
    image = C.bench_image(size)
    x, y = C.centre(size)
    primary = primary_provider(providers, args.torch_device)
    attributors = {p: Attributor(onnx_path, provider=p, cache_dir=workdir / "cache", threads=args.threads,
                                 internal_batch_size=args.batch_size) for p in providers}
    forwards = {p: ort_forward(onnx_path, args.threads, p) for p in providers}
    rows = []
    for steps in steps_list:
        kw = dict(size=C.WINDOW_SIZE, steps=steps, sigma=C.SIGMA)
        path = make_path("lam", image, steps=steps, sigma=C.SIGMA, kernel_size=C.KERNEL_SIZE)
        points_t = torch.from_numpy(np.asarray(path.points)).to(args.torch_device)
        lam = {p: (lambda a=a: a.attribute(image, window=(x, y), kernel_size=C.KERNEL_SIZE, crop=False, **kw))
               for p, a in attributors.items()}
        # Warm-up: builds graphs and sessions, fixes lam-trt's batch size, and checks equal work.
        first = {p: fn() for p, fn in lam.items()}
        batch = args.batch_size or first[primary].meta["runtime"]["batch_size"]
        methods: dict[str, Callable[[], Any]] = {}
        if not args.skip_authors:
            methods["a"] = lambda: peers.lam_authors(model, image, (x, y), kernel_size=C.KERNEL_SIZE, **kw)
        methods["b"] = lambda: peers.lam_batched(model, image, (x, y), kernel_size=C.KERNEL_SIZE,
                                                 batch_size=batch, **kw)
        for p in providers:
            methods[f"c_{p}"] = lam[p]
            methods[f"fwd_{p}"] = lambda p=p: forwards[p](np.asarray(path.points), batch)
        methods["fwd_torch"] = lambda: peers.forward_only(model, points_t, batch)
        agreement = {}
        warm = {}
        for key, fn in methods.items():
            warm[key] = fn()
        reference = first[primary].attribution
        for key in ("a", "b"):
            if key in warm:
                agreement[key] = C.rel_l2(warm[key].attribution, reference)
        timer = Timer()
        with C.LoadWatch() as watch:
            for _ in range(args.repeats):
                for key, fn in methods.items():
                    out = timer.run(key, fn)
                    if key.startswith("c_"):
                        for part in ("load_and_path", "endpoints", "integral"):
                            timer.times.setdefault(f"{key}_{part}", []).append(out.meta["timings_seconds"][part])
        res = first[primary]
        rows.append({
            "net": name, "config": C.CONFIGS[name].describe(), "note": C.CONFIGS[name].note,
            "parameters": int(sum(p.numel() for p in model.parameters())), "lr_size": list(size),
            "steps": steps, "batch_size": int(batch), "threads": args.threads, "providers": providers,
            "primary": primary, "torch_device": args.torch_device,
            "times": timer.times, "agreement_rel_l2": agreement,
            "completeness_gap_relative": _finite(res.completeness_gap_relative),
            "diffusion_index": _finite(res.diffusion_index),
            "attributions_per_second": {p: 1.0 / C.median(timer.times[f"c_{p}"]) for p in providers},
            "other_busy_processes": watch.seen,
        })
        print(summary_line(rows[-1]) + (f"  [disturbed by: {watch.seen}]" if watch.seen else ""), flush=True)
    return rows


def measure_crop(name: str, size: tuple[int, int], steps: int, args: argparse.Namespace, workdir: Path) -> dict:
    from lam_trt import Attributor

    model = C.build_model(name)
    onnx_path = C.export_model(name, model, workdir, size)
    image = C.bench_image(size)
    x, y = C.centre(size)
    attributor = Attributor(onnx_path, provider="cpu", cache_dir=workdir / "cache", threads=args.threads,
                            internal_batch_size=args.batch_size)

    def run(crop: bool | str):
        return attributor.attribute(image, window=(x, y), size=C.WINDOW_SIZE, steps=steps, sigma=C.SIGMA,
                                    kernel_size=C.KERNEL_SIZE, crop=crop)

    on, off = run(True), run(False)
    timer = Timer()
    repeats = max(3, min(args.repeats, 5))
    for _ in range(repeats):
        timer.run("crop", lambda: run(True))
        timer.run("full", lambda: run(False))
    row = {"net": name, "config": C.CONFIGS[name].describe(), "lr_size": list(size), "steps": steps,
           "repeats": repeats, "times": timer.times, "crop": on.meta["crop"],
           "max_abs_difference": float(np.abs(on.attribution - off.attribution).max()),
           "rel_l2_difference": C.rel_l2(on.attribution, off.attribution),
           "di": [_finite(on.diffusion_index), _finite(off.diffusion_index)]}
    print(f"crop {name} {size[0]}x{size[1]} {steps} steps: full {C.median(timer.times['full']):.2f} s, "
          f"crop {C.median(timer.times['crop']):.2f} s ({on.meta['crop']['reason']}), "
          f"rel L2 {row['rel_l2_difference']:.1e}", flush=True)
    return row


def _finite(v: float | None) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


PARTS = ("_load_and_path", "_endpoints", "_integral")


def primary_provider(providers: list[str], torch_device: str) -> str:
    """The lam-trt provider the PyTorch peers are compared with: same kind of device."""
    if torch_device == "cuda":
        gpu = [p for p in ("tensorrt", "cuda") if p in providers]
        if gpu:
            return gpu[-1]  # CUDA EP: the closest peer of PyTorch's CUDA kernels
    return "cpu" if "cpu" in providers else providers[0]


def speedups(row: dict, provider: str | None = None) -> dict[str, float]:
    provider = provider or row["primary"]
    t = {k: C.median(v) for k, v in row["times"].items()}
    c = t[f"c_{provider}"]
    return {"vs_a": t.get("a", float("nan")) / c, "vs_b": t["b"] / c, "fwd_ratio": c / t[f"fwd_{provider}"],
            "integral_fwd_ratio": t[f"c_{provider}_integral"] / t[f"fwd_{provider}"],
            "b_fwd_ratio": t["b"] / t["fwd_torch"], "ort_vs_torch_fwd": t["fwd_torch"] / t[f"fwd_{provider}"]}


def summary_line(row: dict) -> str:
    t = {k: C.median(v) for k, v in row["times"].items()}
    parts = [f"{row['net']:8s} {row['steps']:4d} steps batch {row['batch_size']:3d}:"]
    parts += [f"{k} {t[k]:.2f}s" for k in row["times"] if not k.endswith(PARTS)]
    s = speedups(row)
    parts.append(f"| c/a {s['vs_a']:.2f}x c/b {s['vs_b']:.2f}x c/fwd {s['fwd_ratio']:.2f}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Report.

def markdown(data: dict) -> str:
    rows, crop = data["rows"], data["crop_rows"]
    providers = rows[0]["providers"] if rows else ["cpu"]
    primary = rows[0]["primary"] if rows else "cpu"
    device = rows[0]["torch_device"] if rows else "cpu"
    lines = [
        f"Measured {data['date']} by `python bench/bench_networks.py {' '.join(data['argv'])}` "
        f"in {data['wall_seconds'] / 60:.1f} min."
        + "".join(f" Re-measured {r['date']} with `{' '.join(r['argv'])}` (replacing those rows)." for r in data.get("reruns", [])),
        "",
        f"- Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, "
        f"{data['machine']['memory_gib']} GiB; {data['machine']['platform']}.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + ".",
        f"- Threads: {data['threads']} for PyTorch (`torch.set_num_threads`) and ONNX Runtime (intra-op), every method.",
        f"- Load while measuring: {C.describe_load(data['load'])}.",
        "- Setting: LR image {}, x{}, {}x{} window at the centre of the SR output, sigma {}, kernel {}, right "
        "Riemann sum; random weights (seed 0). Times are medians of {} runs after one warm-up, the methods "
        "interleaved.".format(_lr_sizes(rows), C.SCALE, C.WINDOW_SIZE, C.WINDOW_SIZE, C.SIGMA, C.KERNEL_SIZE,
                              data["repeats"]),
        "",
        "Columns: (a) authors' algorithm (one image at a time, `backward()` with parameter gradients, blur per "
        f"step); (b) batched PyTorch autograd on the input only ((a) and (b) on PyTorch's {device}); (c) lam-trt "
        f"`Attributor.attribute` on the {primary} provider, whole call (path, endpoints, integral), crop off; "
        "fwd: ONNX Runtime forward passes alone "
        "over the same path and chunks. c/fwd is the whole call over fwd, integral/fwd only the path integral. "
        "equal work: relative L2 of the (a) and (b) maps against (c)'s.",
        "",
        "| net | configuration | steps | batch | (a) s | (b) s | (c) s | c vs (a) | c vs (b) | attr/s | "
        "c/fwd | integral/fwd | fwd s (ORT) | fwd s (torch) | equal work (a, b) | gap |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        t = {k: C.median(v) for k, v in row["times"].items()}
        s = speedups(row)
        p = row["primary"]
        agree = ", ".join(f"{row['agreement_rel_l2'][k]:.0e}" for k in ("a", "b") if k in row["agreement_rel_l2"])
        gap = row["completeness_gap_relative"]
        mark = " (!)" if row.get("other_busy_processes") else ""
        lines.append(
            f"| {row['net']}{mark} | {row['config']}, {row['lr_size'][0]}x{row['lr_size'][1]} | {row['steps']} | "
            f"{row['batch_size']} | {C.fmt_seconds(t.get('a', float('nan')))} | {C.fmt_seconds(t['b'])} | "
            f"{C.fmt_seconds(t[f'c_{p}'])} | {s['vs_a']:.2f}x | {s['vs_b']:.2f}x | "
            f"{row['attributions_per_second'][p]:.3f} | {s['fwd_ratio']:.2f} | {s['integral_fwd_ratio']:.2f} | "
            f"{C.fmt_seconds(t[f'fwd_{p}'])} | {C.fmt_seconds(t['fwd_torch'])} | {agree} | "
            f"{'-' if gap is None else f'{100 * gap:.1f}%'} |")
    disturbed = [f"{r['net']} {r['steps']} steps ({', '.join(f'{k} {v}%' for k, v in r['other_busy_processes'].items())})"
                 for r in rows if r.get("other_busy_processes")]
    if disturbed:
        lines += ["", "(!) other processes took more than 25% of a core while these rows were measured: "
                  + "; ".join(disturbed) + "."]
    gpu = [p for p in providers if p != primary]
    if gpu:
        lines += ["", f"Other providers (the PyTorch peers ran on PyTorch's {device}):", "",
                  "| net | steps | " + " | ".join(f"{p} s | {p} vs (b)" for p in gpu) + " |",
                  "|---|---:|" + "---:|---:|" * len(gpu)]
        for row in rows:
            t = {k: C.median(v) for k, v in row["times"].items()}
            lines.append(f"| {row['net']} | {row['steps']} | " +
                         " | ".join(f"{C.fmt_seconds(t[f'c_{p}'])} | {t['b'] / t[f'c_{p}']:.2f}x" for p in gpu) + " |")
    if rows:
        lines += ["", f"Where (c)'s time goes ({primary}, medians, seconds): path = blur path on the CPU, endpoints = "
                  "SR output, D(F(I)) and D(F(I')) (and the crop check), integral = the chunks of the path; "
                  "fwd = the forward passes alone.", "",
                  "| net | steps | whole call | path | endpoints | integral | fwd | endpoints / fwd per image |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in rows:
            t = {k: C.median(v) for k, v in row["times"].items()}
            p = row["primary"]
            per_image = t[f"fwd_{p}"] / row["steps"]
            lines.append(f"| {row['net']} | {row['steps']} | {C.fmt_seconds(t[f'c_{p}'])} | "
                         f"{C.fmt_seconds(t[f'c_{p}_load_and_path'])} | {C.fmt_seconds(t[f'c_{p}_endpoints'])} | "
                         f"{C.fmt_seconds(t[f'c_{p}_integral'])} | {C.fmt_seconds(t[f'fwd_{p}'])} | "
                         f"{t[f'c_{p}_endpoints'] / per_image:.1f} |")
        lines += ["", "Configurations (published width everywhere; depth reduced to fit the CPU budget):", ""]
        for name in dict.fromkeys(r["net"] for r in rows):
            r = next(r for r in rows if r["net"] == name)
            lines.append(f"- {name}: {r['note']} ({r['parameters'] / 1e6:.2f} M parameters).")
    if crop:
        lines += ["", f"Receptive-field cropping (lam-trt, CPU, crop on vs off; medians of {crop[0]['repeats']} runs):", "",
                  "| net | LR size | steps | full s | crop s | speed-up | cropped region (LR px) | map difference (rel L2) |",
                  "|---|---|---:|---:|---:|---:|---|---:|"]
        for r in crop:
            full, cropped = C.median(r["times"]["full"]), C.median(r["times"]["crop"])
            c = r["crop"]
            region = f"{c['height']}x{c['width']} at ({c['top']}, {c['left']})" if c["applied"] else f"not applied: {c['reason']}"
            lines.append(f"| {r['net']} ({r['config']}) | {r['lr_size'][0]}x{r['lr_size'][1]} | {r['steps']} | "
                         f"{C.fmt_seconds(full)} | {C.fmt_seconds(cropped)} | {full / cropped:.1f}x | {region} | "
                         f"{r['rel_l2_difference']:.1e} |")
    return "\n".join(lines)


def _lr_sizes(rows: list[dict]) -> str:
    sizes = sorted({f"{r['lr_size'][0]}x{r['lr_size'][1]}" for r in rows})
    return " / ".join(sizes) or "-"


def plot(data: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    steps_values = sorted({r["steps"] for r in rows})
    nets = list(dict.fromkeys(r["net"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2, 1]})
    ax = axes[0]
    width = 0.8 / (2 * len(steps_values))
    colours = {("vs_a", 0): "#1f77b4", ("vs_a", 1): "#6baed6", ("vs_b", 0): "#d62728", ("vs_b", 1): "#fc9272"}
    for i, steps in enumerate(steps_values):
        for j, key in enumerate(("vs_a", "vs_b")):
            xs, ys = [], []
            for n, net in enumerate(nets):
                row = next((r for r in rows if r["net"] == net and r["steps"] == steps), None)
                if row is None:
                    continue
                v = speedups(row)[key]
                if np.isfinite(v):
                    xs.append(n + (2 * i + j - len(steps_values) + 0.5) * width)
                    ys.append(v)
            label = f"over {'(a) authors' if key == 'vs_a' else '(b) batched autograd'}, {steps} steps"
            ax.bar(xs, ys, width, label=label, color=colours[(key, min(i, 1))])
    ax.axhline(1.5, color="#1f77b4", ls="--", lw=1)
    ax.axhline(1.0, color="#d62728", ls="--", lw=1)
    ax.set_xticks(range(len(nets)), nets, rotation=30)
    ax.set_ylabel("speed-up of lam-trt (CPU)")
    ax.yaxis.set_major_locator(matplotlib.ticker.MultipleLocator(0.5))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.text(len(nets) - 0.5, 1.5, "target over (a)", color="#1f77b4", fontsize=8, ha="right", va="bottom")
    ax.text(len(nets) - 0.5, 1.0, "parity with (b)", color="#d62728", fontsize=8, ha="right", va="bottom")
    ax.set_title("lam-trt speed-up, same threads, same path")
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax = axes[1]
    common = min(steps_values) if steps_values else 0
    sel = [r for r in rows if r["steps"] == common]
    ax.barh([r["net"] for r in sel], [speedups(r)["fwd_ratio"] for r in sel], color="#555555", label="whole call")
    ax.barh([r["net"] for r in sel], [speedups(r)["integral_fwd_ratio"] for r in sel], color="#2ca02c",
            height=0.4, label="path integral only")
    ax.axvline(2.0, color="k", ls=":", lw=1)
    ax.axvline(2.5, color="#d62728", ls="--", lw=1)
    ax.set_xlabel(f"lam-trt time / ONNX Runtime forward-only time ({common} steps)")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.45 * max([speedups(r)["fwd_ratio"] for r in sel] + [2.5]))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("cost over the forward passes (ideal ~2)")
    fig.suptitle(f"{data['machine']['cpu']}, {data['threads']} threads; {data['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge(old: dict, new: dict) -> dict:
    """``old`` with the rows (net, steps) and crop rows (net) of ``new`` replaced or added."""
    fresh = {(r["net"], r["steps"]) for r in new["rows"]}
    rows = [r for r in old["rows"] if (r["net"], r["steps"]) not in fresh] + new["rows"]
    order = list(C.CONFIGS)
    rows.sort(key=lambda r: (order.index(r["net"]) if r["net"] in order else len(order), r["steps"]))
    crop_nets = {r["net"] for r in new["crop_rows"]}
    crop = [r for r in old["crop_rows"] if r["net"] not in crop_nets] + new["crop_rows"]
    return {**new, "date": old["date"], "versions": old["versions"], "rows": rows, "crop_rows": crop,
            "load": old["load"] + new["load"],
            "wall_seconds": old["wall_seconds"] + new["wall_seconds"],
            "argv": old["argv"], "reruns": old.get("reruns", []) + [{"date": new["date"], "argv": new["argv"]}]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        data = json.loads((args.out / "results.json").read_text())
        C.replace_section("networks", markdown(data), args.out / "RESULTS.md")
        plot(data, args.out / "speedups.png")
        return 0
    import torch

    from lam_trt import providers as prov

    torch.set_num_threads(args.threads)
    providers = args.providers.split(",") if args.providers else prov.available()
    nets = [n for n in args.nets.split(",") if n]
    unknown = [n for n in nets if n not in C.CONFIGS]
    if unknown:
        print(f"unknown nets: {', '.join(unknown)}; choose from {', '.join(C.CONFIGS)}", file=sys.stderr)
        return 2
    big_nets = set(nets) if args.steps_100_nets == "all" else set(args.steps_100_nets.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    versions, date = C.versions(), C.now()  # the code measured is the code at the start
    load = [C.load_snapshot()]
    print(f"load: {C.describe_load(load)}", flush=True)
    rows, crop_rows = [], []
    with tempfile.TemporaryDirectory(prefix="lam-trt-bench-") as tmp:
        workdir = Path(tmp)
        for name in nets:
            steps = [s for s in args.steps if s < max(args.steps) or name in big_nets] or args.steps[:1]
            rows += measure_network(name, size_of(args.size, C.bench_size(name)), steps, args, providers, workdir)
            load.append(C.load_snapshot())
        for name in [n for n in args.crop_nets.split(",") if n]:
            crop_rows.append(measure_crop(name, size_of(args.crop_size, (256, 256)), args.crop_steps, args, workdir))
        load.append(C.load_snapshot())
    data = {"date": date, "argv": sys.argv[1:] if argv is None else argv, "machine": C.machine(),
            "versions": versions, "threads": args.threads, "repeats": args.repeats,
            "wall_seconds": time.perf_counter() - start, "load": load, "rows": rows, "crop_rows": crop_rows}
    if args.merge and (args.out / "results.json").exists():
        data = merge(json.loads((args.out / "results.json").read_text()), data)
    (args.out / "results.json").write_text(json.dumps(data, indent=1))
    md = args.out / "RESULTS.md"
    C.replace_section("networks", markdown(data), md)
    plot(data, args.out / "speedups.png")
    print(f"wrote {args.out / 'results.json'}, {md}, {args.out / 'speedups.png'} "
          f"({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
