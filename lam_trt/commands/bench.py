"""``lam-trt bench``: attributions per second, path images per second, latency and memory of one model."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lam_trt.commands._common import (BatchSize, Crop, JsonOut, LrSize, ModelArg, Provider, ProviderOption, Rule,
                                     RuleOption, Size, Steps, Threads, check_batch_size, out_console, print_json,
                                     stage)


def bench_command(
    model: ModelArg,
    lr_size: LrSize = None,
    image: Optional[Path] = typer.Option(None, "--image", help="Attribute this LR image instead of a "
                                         "synthetic one."),
    steps: Steps = 100,
    provider: ProviderOption = Provider("auto"),
    repeats: int = typer.Option(5, help="Timed attributions (the statistics are over these)."),
    warmup: int = typer.Option(1, help="Untimed attributions first (graph, session, allocations)."),
    threads: Threads = None,
    batch_size: BatchSize = None,
    size: Size = 16,
    rule: RuleOption = Rule("right"),
    crop: Crop = True,
    json_out: JsonOut = False,
) -> None:
    """Measure how fast lam-trt attributes MODEL: one centred window, the same image, many times."""
    from lam_trt.bench import parse_size, run_benchmark
    from lam_trt.errors import InputError

    check_batch_size(batch_size)
    if lr_size is not None and image is not None:
        raise InputError("give --lr-size or --image, not both")
    hw = parse_size(lr_size) if lr_size is not None else None

    with stage(f"attributions ({warmup} warm-up, {repeats} timed)", warmup + repeats) as advance:
        report = run_benchmark(model, size=hw, image=image, steps=steps, provider=provider.value, repeats=repeats,
                               warmup=warmup, threads=threads, batch_size=batch_size, window_size=size,
                               rule=rule.value, crop="auto" if crop else False, on_run=lambda _i, _s: advance(1))
    summary = report.to_dict()
    if json_out:
        print_json(summary)
    else:
        print_table(summary)


def print_table(summary: dict) -> None:
    from rich.table import Table

    lat = summary["latency_seconds"]
    crop = summary["crop"]
    table = Table(title=f"lam-trt bench: {Path(summary['model']).name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("provider", f"{summary['provider']} ({', '.join(summary['providers_used'])})"),
        ("input -> output", f"{'x'.join(map(str, summary['input_shape']))} -> "
                            f"{'x'.join(map(str, summary['output_shape']))}"),
        ("window", "x={x} y={y} size={size}".format(**summary["window"])),
        ("path", f"{summary['path_points']} images ({summary['rule']}, {summary['steps']} steps), "
                 f"batch {summary['batch_size']}, threads {summary['threads'] or 'default'}"),
        ("crop", "applied" if crop.get("applied") else f"off ({crop.get('reason', '')})"),
        ("attributions / s", f"{summary['attributions_per_second']:.3f}"),
        ("path images / s", f"{summary['path_images_per_second']:.1f}"),
        ("latency p50 / p90 / p99", f"{lat['p50']:.3f} / {lat['p90']:.3f} / {lat['p99']:.3f} s "
                                    f"(min {lat['min']:.3f}, {summary['repeats']} runs)"),
        ("cold start", "n/a" if summary["cold_start_seconds"] is None else f"{summary['cold_start_seconds']:.2f} s"),
        ("peak memory", "n/a" if summary["peak_rss_mib"] is None else
         f"{summary['peak_rss_mib']:.0f} MiB RSS ({summary['peak_memory_source']})"),
        ("completeness gap", "n/a" if summary["completeness_gap_relative"] is None else
         f"{100 * summary['completeness_gap_relative']:.2f}%"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out_console.print(table)
