#!/usr/bin/env python
"""How many path steps each quadrature rule needs to bring LAM's completeness gap under a tolerance.

The completeness gap sum(LAM) - (D(F(I)) - D(F(I'))) of LAM-SPEC.md is exactly the quadrature
error of the path integral, so it measures how good a rule is on a given network. For every zoo
network (bench configuration, random weights, the demo image, centred window) and every rule
(right = the reference, trapezoid, gauss-legendre), steps go up a doubling ladder until the relative
gap is below the tolerance at two consecutive rungs (one rung could hit a zero crossing by chance);
the first of the two is reported.

    python bench/bench_quadrature.py                       # all nets; writes a RESULTS.md section
    python bench/bench_quadrature.py --nets edsr --ladder 4 8 16 32 64
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

RULES = ("right", "trapezoid", "gauss-legendre")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default=",".join(C.CONFIGS), help="comma-separated zoo names (default: all)")
    p.add_argument("--rules", default=",".join(RULES))
    p.add_argument("--ladder", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128, 256])
    p.add_argument("--tolerance", type=float, default=0.01, help="relative gap to reach (default 1%%)")
    p.add_argument("--size", default=None, help="LR size HxW (default: the bench size, 32x32)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", type=Path, default=C.BENCH_DIR, help="folder for results_quadrature.json and RESULTS.md")
    p.add_argument("--report-only", action="store_true", help="rewrite the RESULTS.md section from results_quadrature.json")
    return p.parse_args(argv)


def steps_needed(attribute, ladder: list[int], tolerance: float) -> tuple[int | None, list[dict[str, Any]]]:
    """First rung of two consecutive rungs under the tolerance (None: not reached), and every gap seen."""
    seen: list[dict[str, Any]] = []
    for steps in sorted(ladder):
        result = attribute(steps)
        gap = result.completeness_gap_relative
        seen.append({"steps": steps, "gap_relative": None if gap is None or gap != gap else float(gap),
                     "seconds": result.meta["timings_seconds"]["total"]})
        ok = [s["gap_relative"] is not None and abs(s["gap_relative"]) < tolerance for s in seen]
        if len(ok) >= 2 and ok[-1] and ok[-2]:
            return seen[-2]["steps"], seen
    # The top rung alone under the tolerance is reported as reached there (no rung above to confirm).
    if seen and seen[-1]["gap_relative"] is not None and abs(seen[-1]["gap_relative"]) < tolerance:
        return seen[-1]["steps"], seen
    return None, seen


def measure(name: str, size: tuple[int, int], args: argparse.Namespace, rules: list[str], workdir: Path) -> dict:
    from lam_trt import Attributor

    model = C.build_model(name)
    onnx_path = C.export_model(name, model, workdir, size)
    image = C.bench_image(size)
    x, y = C.centre(size)
    attributor = Attributor(onnx_path, provider="cpu", cache_dir=workdir / "cache", threads=args.threads)
    row: dict[str, Any] = {"net": name, "config": C.CONFIGS[name].describe(), "lr_size": list(size), "rules": {}}
    for rule in rules:
        def attribute(steps: int, rule: str = rule):
            # Cropping is exact (verified against the full output by the Attributor), and cheaper.
            return attributor.attribute(image, window=(x, y), size=C.WINDOW_SIZE, steps=steps, sigma=C.SIGMA,
                                        kernel_size=C.KERNEL_SIZE, rule=rule, crop="auto")

        needed, seen = steps_needed(attribute, args.ladder, args.tolerance)
        row["rules"][rule] = {"steps_needed": needed, "ladder": seen}
        gaps = ", ".join(f"{s['steps']}: {100 * s['gap_relative']:.2f}%" for s in seen if s["gap_relative"] is not None)
        print(f"{name:8s} {rule:15s} -> {needed if needed else '>' + str(max(args.ladder))} steps   ({gaps})", flush=True)
    return row


def path_images(rule: str, steps: int) -> int:
    return steps + 1 if rule == "trapezoid" else steps


def markdown(data: dict) -> str:
    rules = data["rule_names"]
    top = max(data["ladder"])
    lines = [
        f"Measured {data['date']} by `python bench/bench_quadrature.py {' '.join(data['argv'])}` "
        f"in {data['wall_seconds'] / 60:.1f} min. Same networks, image and window as the speed table "
        f"(LR {data['size']}); the ladder was {', '.join(map(str, data['ladder']))} steps; a rule "
        f"\"needs\" m steps when the relative completeness gap is under {100 * data['tolerance']:g}% at m and at "
        f"the next rung (2m). Path images per attribution: m for right and gauss-legendre, m + 1 for trapezoid. "
        f"\"fewer images\": right's path images over the best rule's.",
        "",
        "| net | " + " | ".join(f"{r} steps" for r in rules) + " | fewer images | "
        + " | ".join(f"{r} gap at 8" for r in rules) + " |",
        "|---|" + "---:|" * (2 * len(rules) + 1),
    ]
    for row in data["rows"]:
        needed = {r: row["rules"][r]["steps_needed"] for r in rules}
        cells = [str(needed[r]) if needed[r] else f"> {top}" for r in rules]
        reached = {r: path_images(r, n) for r, n in needed.items() if n}
        if reached and "right" in needed:
            best = min(reached.values())
            saving = (f"{path_images('right', needed['right']) / best:.0f}x" if needed["right"]
                      else f"> {path_images('right', top) / best:.0f}x")
        else:
            saving = "-"
        gaps = []
        for r in rules:
            g = next((s["gap_relative"] for s in row["rules"][r]["ladder"] if s["steps"] == 8), None)
            gaps.append("-" if g is None else f"{100 * g:+.2f}%")
        lines.append(f"| {row['net']} ({row['config']}) | " + " | ".join(cells) + f" | {saving} | " + " | ".join(gaps) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        data = json.loads((args.out / "results_quadrature.json").read_text())
        C.replace_section("quadrature", markdown(data), args.out / "RESULTS.md")
        return 0
    from lam_trt.bench import parse_size

    nets = [n for n in args.nets.split(",") if n]
    rules = [r for r in args.rules.split(",") if r]
    bad = [n for n in nets if n not in C.CONFIGS] + [r for r in rules if r not in RULES]
    if bad:
        print(f"unknown nets or rules: {', '.join(bad)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lam-trt-quadrature-") as tmp:
        for name in nets:
            size = parse_size(args.size) if args.size else C.bench_size(name)
            rows.append(measure(name, size, args, rules, Path(tmp)))
    sizes = sorted({f"{r['lr_size'][0]}x{r['lr_size'][1]}" for r in rows})
    data = {"date": C.now(), "argv": sys.argv[1:] if argv is None else argv, "tolerance": args.tolerance,
            "ladder": sorted(args.ladder), "rule_names": rules, "size": " / ".join(sizes),
            "wall_seconds": time.perf_counter() - start, "versions": C.versions(), "rows": rows}
    (args.out / "results_quadrature.json").write_text(json.dumps(data, indent=1))
    C.replace_section("quadrature", markdown(data), args.out / "RESULTS.md")
    print(f"wrote {args.out / 'results_quadrature.json'} and {args.out / 'RESULTS.md'} "
          f"({data['wall_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
