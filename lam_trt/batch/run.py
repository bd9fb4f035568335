"""A batch run: check everything first (``plan_batch``), then make the pending rows, append them,
and write the summary with the gates' verdict (``run_batch``). Where the rows come from is the
caller's choice: this machine by default, a Ray cluster through ``lam_trt.scaleout``."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lam_trt.version import __version__
from lam_trt.batch.gates import Gates, summarise
from lam_trt.batch.inputs import expand_inputs
from lam_trt.batch.results_log import ResultsLog
from lam_trt.batch.rows import ENVIRONMENT, MESSAGES, BatchParams, Key, Row, current_rows, image_rows, row_key
from lam_trt.errors import InputError
from lam_trt.io import write_json


@dataclass
class BatchPlan:
    """A checked batch: nothing is written until ``run_batch`` runs it."""

    model: Path
    images: list[str]
    out_dir: Path
    params: BatchParams
    log: ResultsLog
    provider: str
    gates: Gates
    attributor: Any
    run_info: dict[str, Any]
    cache_dir: str | None = None    # handed to Ray workers; None: their own default


@dataclass
class BatchOutcome:
    summary: dict[str, Any]
    violations: list[dict[str, Any]]
    new_rows: int
    skipped_rows: int
    warning_messages: dict[str, str] = field(default_factory=dict)  # code -> the first message of this run

    @property
    def passed(self) -> bool:
        return not self.violations


def plan_batch(model: str | os.PathLike, inputs: Sequence[str], out_dir: str | os.PathLike,
               params: BatchParams, fmt: str = "csv", provider: str = "auto", gates: Gates = Gates(),
               cache_dir: str | os.PathLike | None = None, threads: int | None = None) -> BatchPlan:
    """Check every argument (and an earlier run in ``out_dir``) without writing anything."""
    from lam_trt import providers
    from lam_trt.attributor import Attributor

    params.check()
    gates.check(params.method)
    log = ResultsLog(Path(out_dir), fmt)
    images = expand_inputs(inputs)
    providers.resolve(provider)
    attributor = Attributor(model, provider=provider, cache_dir=cache_dir, threads=threads)
    run_info = {"lam_trt_version": __version__,
                "model": {"path": str(model), "sha256": attributor.sha256},
                "format": fmt, "parameters": params.to_dict(), "windows_file": params.windows.source or None}
    _check_earlier_run(Path(out_dir), log, run_info)
    cache = cache_dir if cache_dir is not None else os.environ.get("LAM_TRT_CACHE")
    return BatchPlan(Path(model), images, Path(out_dir), params, log, provider, gates, attributor, run_info,
                     str(cache) if cache is not None else None)


def _check_earlier_run(out_dir: Path, log: ResultsLog, run_info: dict[str, Any]) -> None:
    """Refuse to mix rows made another way into one folder."""
    path = out_dir / "run.json"
    if not path.exists():
        if log.path.exists() and log.path.stat().st_size:
            raise InputError(f"{log.path} exists but {path} does not; use another --out")
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise InputError(f"{path} is unreadable; use another --out") from None
    diffs = [f"{name}: {a!r} before, {b!r} now" for name, a, b in _differences(old, run_info)]
    if diffs:
        raise InputError(f"{out_dir} holds a batch made with other settings ({'; '.join(diffs)}); "
                         "use another --out, or delete the folder to start over")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    if old.get("model", {}).get("sha256") != new["model"]["sha256"]:
        yield "model sha256", old.get("model", {}).get("sha256", "?")[:12], new["model"]["sha256"][:12]
    if old.get("format") != new["format"]:
        yield "format", old.get("format"), new["format"]
    before, now = old.get("parameters", {}), new["parameters"]
    for name in sorted(set(before) | set(now)):
        if before.get(name) != now.get(name):
            yield name, before.get(name), now.get(name)


RowSource = Callable[["BatchPlan", set[Key]], Iterator[Row]]   # (plan, keys already done) -> new rows


def local_rows(plan: BatchPlan, done: set[Key]) -> Iterator[Row]:
    """The pending rows, made on this machine by the plan's Attributor."""
    for image in plan.images:
        yield from image_rows(plan.attributor, image, plan.params, done)


def run_batch(plan: BatchPlan, on_row: Callable[[Row], None] | None = None,
              rows_from: RowSource = local_rows) -> BatchOutcome:
    """Attribute every pending (image, window), appending each row as it is made; then write
    DIR/summary.json and return the summary and the gate violations over all rows. ``rows_from``
    makes the pending rows (``lam_trt.scaleout.run_batch_on_ray``: from a Ray cluster)."""
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    if not (plan.out_dir / "run.json").exists():
        write_json(plan.out_dir / "run.json", plan.run_info)
    with plan.log.appending() as (rows, append):
        done = {row_key(r) for r in current_rows(rows) if r.get("error_kind") != ENVIRONMENT}
        before, messages = len(rows), {}
        for row in rows_from(plan, done):
            messages.update({k: v for k, v in row.pop(MESSAGES, {}).items() if k not in messages})
            append(row)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    standing = current_rows(rows)
    summary = summarise(standing)
    violations = plan.gates.violations(standing)
    summary["gates"] = {**asdict(plan.gates), "violations": len(violations), "passed": not violations}
    write_json(plan.out_dir / "summary.json", {**summary, "violations": violations})
    return BatchOutcome(summary, violations, len(rows) - before, len(done), messages)
