#!/usr/bin/env python
"""Coverage of spandrel's architecture zoo: every image-to-image architecture of spandrel and
spandrel-extra-arches (small configs, random weights: tests/spandrel_cases.py), exported by both
torch exporters, through lam-trt, against PyTorch autograd.

Per (architecture, exporter): does torch export it; the ops on the image's path; does the exported
file agree with torch at batch 1 and batch 3; graph build seconds; relative L2 of the attribution
against float64 torch autograd of the LAM gradient detector at batch 1 and batch 3; seconds per
path image in ONNX Runtime and in torch autograd (float32, same threads); status and reason.

    python bench/coverage.py                       # everything (an hour on 2 loaded cores), then COVERAGE.md
    python bench/coverage.py --cases SwinIR,HAT --exporters dynamo
    python bench/coverage.py --render              # only rewrite COVERAGE.md from the results file

Results accumulate in bench/coverage.jsonl (one line per pair, the latest wins), so an
interrupted run resumes where it stopped (--fresh starts over).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

RESULTS = BENCH / "coverage.jsonl"
REPORT = BENCH / "COVERAGE.md"
GOOD = 1e-4  # relative L2 of the attribution against autograd
REFUSALS = ("ModelError:", "UnsupportedOpError:")  # lam-trt's one-line refusals, raised before any work


class CaseTimeout(BaseException):  # not an Exception: the per-step handlers must not swallow it
    pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    p.add_argument("--exporters", default="torchscript,dynamo")
    p.add_argument("--timeout", type=int, default=600, help="seconds per (case, exporter)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true", help="forget earlier results")
    p.add_argument("--redo", action="store_true", help="measure again pairs already in the results file")
    p.add_argument("--render", action="store_true", help="only write COVERAGE.md from the results file")
    p.add_argument("--checkpoints", action="store_true",
                   help="instead: `lam-trt export CHECKPOINT` (spandrel detection + checked export) per architecture")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--report", type=Path, default=REPORT)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.checkpoints:
        run_checkpoints(args)
    elif not args.render:
        run(args)
    render(load(args.results), args.report, load_checkpoints())


def run(args: argparse.Namespace) -> None:
    import torch

    from spandrel_cases import CASES, EXPORTERS

    torch.set_num_threads(args.threads)
    names = [n for n in args.cases.split(",") if n] or [c.name for c in CASES]
    exporters = [e for e in args.exporters.split(",") if e in EXPORTERS]
    if args.fresh and args.results.exists():
        args.results.unlink()
    done = {} if args.redo else load(args.results)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for exporter in exporters:
                if (name, exporter) in done:
                    continue
                row = measure_with_timeout(name, exporter, Path(tmp), args.timeout, args.threads)
                with args.results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{name:20s} {exporter:11s} {row['status']}: {row.get('reason', '')[:100]}", flush=True)


CHECKPOINTS = BENCH / "coverage_checkpoints.jsonl"


def run_checkpoints(args: argparse.Namespace) -> None:
    """Each case's random weights saved as a safetensors state dict, then what `lam-trt export
    CHECKPOINT --size S` does: spandrel detects the architecture, torch exports, the file is
    checked against torch at a second size and at batch 2."""
    import torch

    from spandrel_cases import CASES

    torch.set_num_threads(args.threads)
    names = [n for n in args.cases.split(",") if n] or [c.name for c in CASES]
    done = {} if args.redo else load_checkpoints()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name in done:
                continue
            row: dict[str, Any] = {"case": name}
            signal.signal(signal.SIGALRM, expire)
            signal.alarm(args.timeout)
            try:
                export_checkpoint(row, Path(tmp))
            except CaseTimeout:
                row.update(status="timeout", reason=f"more than {args.timeout} s")
            except Exception as e:
                row.update(status="fails", reason=f"{type(e).__name__}: {first_line(e)}")
            finally:
                signal.alarm(0)
            with CHECKPOINTS.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{name:20s} checkpoint {row['status']}: {row.get('reason', '')[:100]}", flush=True)


def export_checkpoint(row: dict, tmp: Path) -> None:
    from safetensors.torch import save_file

    from lam_trt.errors import LamTrtError
    from lam_trt.export.checkpoint import load_checkpoint
    from lam_trt.export.torch_export import export_onnx
    from spandrel_cases import CASES_BY_NAME, build_network

    case = CASES_BY_NAME[row["case"]]
    checkpoint = tmp / f"{case.name}.safetensors"
    save_file({k: v.detach().contiguous().clone() for k, v in build_network(case).state_dict().items()}, str(checkpoint))
    try:
        loaded = load_checkpoint(checkpoint)
    except LamTrtError as e:
        row.update(status="not detected", reason=first_line(e))
        return
    row["detected"] = loaded.architecture
    try:
        report = export_onnx(loaded.module, tmp / f"{case.name}.onnx", in_channels=loaded.in_channels,
                             size=(case.size, case.size), fixed_hw=loaded.fixed_size)
    except LamTrtError as e:
        cannot = "torch cannot export" in str(e)
        row.update(status="torch cannot export" if cannot else "fails", reason=first_line(e))
        return
    row.update(status="exported", reason="; ".join(report.warnings), dynamic_batch=report.dynamic_batch,
               dynamic_hw=report.dynamic_hw, max_rel_error=report.max_rel_error)


def load_checkpoints() -> dict[str, dict]:
    rows: dict[str, dict] = {}
    if CHECKPOINTS.exists():
        for line in CHECKPOINTS.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["case"]] = row
    return rows


def load(path: Path) -> dict[tuple[str, str], dict]:
    rows: dict[tuple[str, str], dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(row["case"], row["exporter"])] = row
    return rows


def expire(*_: Any) -> None:
    raise CaseTimeout


def measure_with_timeout(name: str, exporter: str, tmp: Path, timeout: int, threads: int) -> dict:
    row: dict[str, Any] = {"case": name, "exporter": exporter}
    signal.signal(signal.SIGALRM, expire)
    signal.alarm(timeout)
    try:
        measure(row, tmp, threads)
    except CaseTimeout:
        row.update(status="timeout", reason=f"more than {timeout} s on this machine")
    except Exception as e:  # one architecture's failure must not end the sweep
        row.update(status="error", reason=f"{type(e).__name__}: {first_line(e)}")
    finally:
        signal.alarm(0)
    return row


def stage(row: dict, name: str) -> None:
    """Say on stderr which step a pair is in: a process killed for memory leaves no row, only this."""
    print(f"{row['case']} {row['exporter']}: {name}", file=sys.stderr, flush=True)


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def measure(row: dict, tmp: Path, threads: int) -> None:
    """Fill ``row`` for one (case, exporter); sets status and reason."""
    import numpy as np
    import onnx
    import torch
    from conftest import data_path_ops, default_window, random_batch, reference, rel_l2, run_graph

    from lam_trt.export import build_attribution_graph
    from lam_trt.export.options import GraphOptions, export_warnings
    from spandrel_cases import CASES_BY_NAME, TORCH_CRASHES, build_model, export_apart, export_case, reference_function

    case = CASES_BY_NAME[row["case"]]
    model = build_model(case)
    shape = (case.in_channels, case.size, case.size)
    row["input"] = list(shape)
    path = tmp / f"{case.name}-{row['exporter']}.onnx"
    start = time.perf_counter()
    try:
        if (case.name, row["exporter"]) in TORCH_CRASHES:  # in a child process: a crash must not end the sweep
            row["export_note"] = export_apart(case.name, str(path), row["exporter"])
        else:
            row["export_note"] = export_case(model, torch.rand(1, *shape), str(path), row["exporter"])
    except Exception as e:
        row.update(status="torch cannot export", reason=f"{type(e).__name__}: {first_line(e)}")
        return
    row["export_s"] = round(time.perf_counter() - start, 2)
    row["ops"] = sorted(data_path_ops(onnx.load(str(path))))
    images, weights = random_batch(3, shape, 0)
    images = np.clip(0.5 + 0.2 * images, 0, 1).astype(np.float32)
    fn, row["torch_batch"] = reference_function(model, images)
    expected = fn(torch.from_numpy(images)).detach().numpy()
    stage(row, "the export in onnxruntime")
    session = ort_session(path, threads)
    try:
        row["onnx_vs_torch"] = onnx_vs_torch(session, images, expected)
    except Exception as e:
        row.update(status="export fails in onnxruntime",
                   reason=f"the exported file itself does not run in onnxruntime: {first_line(e)}")
        return
    start = time.perf_counter()
    try:
        stage(row, "graph build")
        graph = build_attribution_graph(str(path), shape)
    except Exception as e:
        row["build_s"] = round(time.perf_counter() - start, 2)
        row.update(status="graph build fails", reason=f"{type(e).__name__}: {first_line(e)}")
        return
    row["build_s"] = round(time.perf_counter() - start, 2)
    row["warnings"] = export_warnings(graph)
    source = onnx.load(str(path))
    random_nodes = bool(RANDOM_OPS & {n.op_type for n in source.graph.node})
    noise = zero_noise(random_nodes)
    if random_nodes:  # lam-trt's seeded draw cannot be matched in torch: zeros on both sides
        graph = build_attribution_graph(str(path), shape, options=GraphOptions(random_ops="zeros"))
        row["warnings"] = export_warnings(graph)
    window = default_window(expected.shape[2:])
    attribution = ort_session(graph, threads)
    errors: dict[str, Any] = {}
    for n in (1, 3):
        try:
            start = time.perf_counter()
            stage(row, f"graph run at batch {n}")
            got = run_graph(attribution, images[:n], weights[:n], window)
            seconds = (time.perf_counter() - start) / n
            stage(row, f"autograd reference at batch {n}")
            expected_map, row["reference_dtype"] = reference_map(fn, images[:n], weights[:n], window, noise)
            errors[f"b{n}"] = rel_l2(got.attribution, expected_map)
            if n == 3:
                row["ort_s_per_image"] = round(seconds, 4)
        except Exception as e:
            errors[f"b{n}"] = f"{type(e).__name__}: {first_line(e)}"
    row["rel_l2"] = errors
    with noise(torch.float32):
        row["torch_s_per_image"] = torch_seconds(fn, images, window)
    row.update(classify(errors, row["warnings"]))
    if row.get("reference_dtype") == "float32":
        row["reason"] = "autograd reference in float32 (the network makes float32 tensors itself); " + row["reason"]


RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"}


def zero_noise(random_nodes: bool) -> Any:
    """``noise(dtype)``: for a model with random nodes (AuraSR's noise and style draws), a context in
    which torch's draws are zeros of ``dtype`` (the precision the reference runs in), to compare with
    a graph built with random ops "zeros"; for any other model, a context that changes nothing."""
    import torch

    if not random_nodes:
        return lambda dtype: contextlib.nullcontext()

    @contextlib.contextmanager
    def zeros(dtype):
        saved = torch.randn, torch.randn_like, torch.get_default_dtype()
        torch.randn = lambda *size, **kw: torch.zeros(*size, dtype=kw.get("dtype"), device=kw.get("device"))
        torch.randn_like = lambda x, **kw: torch.zeros_like(x, dtype=kw.get("dtype"))
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.randn, torch.randn_like = saved[:2]
            torch.set_default_dtype(saved[2])
    return zeros


def reference_map(fn, images, weights, window, noise) -> tuple[Any, str]:
    """Autograd's map in float64, or in float32 where the network makes float32 tensors itself
    (CodeFormer), and the precision used."""
    import torch
    from conftest import reference
    from reference_lam import weighted_gradients

    try:
        with noise(torch.float64):
            return reference(fn, images, weights, window).attribution, "float64"
    except RuntimeError as e:
        if "dtype" not in str(e):
            raise
    with noise(torch.float32):
        g = weighted_gradients(fn, torch.from_numpy(images), torch.from_numpy(weights), window[0], window[1], window[2:])
    return g[1].detach().numpy(), "float32"


def ort_session(model, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.intra_op_num_threads = threads
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def onnx_vs_torch(session, images, expected) -> dict[str, Any]:
    """Max relative error of the exported file against torch, at batch 1 and batch 3."""
    import numpy as np

    name = session.get_inputs()[0].name
    scale = max(float(np.abs(expected).max()), 1e-12)
    out: dict[str, Any] = {"b1": float(np.abs(session.run(None, {name: images[:1]})[0] - expected[:1]).max() / scale)}
    try:
        out["b3"] = float(np.abs(session.run(None, {name: images})[0] - expected).max() / scale)
    except Exception as e:
        out["b3"] = f"fails: {first_line(e)[:120]}"
    return out


def torch_seconds(fn, images, window) -> float | None:
    """Seconds per path image of torch autograd (float32) for the same detector gradient."""
    import torch
    from reference_lam import detector

    x = torch.from_numpy(images).requires_grad_(True)
    start = time.perf_counter()
    try:
        detector(fn(x), window[0], window[1], window[2:]).sum().backward()
    except RuntimeError:  # e.g. out of memory: the timing column stays empty, the row does not fail
        return None
    return round((time.perf_counter() - start) / len(images), 4)


def classify(errors: dict[str, Any], warnings_: list[str]) -> dict[str, str]:
    ok = {k: isinstance(v, float) and v < GOOD for k, v in errors.items()}
    if all(ok.values()):
        return {"status": "exact", "reason": "; ".join(warnings_)}
    if ok.get("b1"):
        return {"status": "batch 1 only", "reason": f"exact at batch 1; batch 3: {str(errors['b3'])[:300]}"}
    detail = "; ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in errors.items())
    silent = all(isinstance(v, float) for v in errors.values())
    return {"status": "differs" if silent else "runtime error",
            "reason": detail + (f" (warned: {'; '.join(warnings_)})" if warnings_ else " (no warning)")}


# ---- COVERAGE.md -------------------------------------------------------------------------------
def render(rows: dict[tuple[str, str], dict], report: Path, checkpoints: dict[str, dict]) -> None:
    commit = git("rev-parse", "--short", "HEAD")
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    lines = [
        "# lam-trt on spandrel's architecture zoo",
        "",
        f"Written by `bench/coverage.py` at commit {commit} (branch {branch}); the rows accumulate in "
        "bench/coverage.jsonl, each measured at the branch's state when its run reached it (a full pass takes "
        "over an hour on the shared 2-core machine; `--redo --cases A,B` re-measures some, `--fresh` all). The "
        "suite's matrix (tests/test_spandrel_zoo.py) checks the same pairs on every change, except the few too "
        "slow for it, which it names.",
        "",
        "Small configurations with random weights (tests/spandrel_cases.py); relative L2 of the attribution against "
        "float64 torch autograd (float32 where the network makes float32 tensors itself, said in the row) of the LAM gradient detector (autograd of the function the ONNX file computes: "
        "`.detach()` counts as the identity, as in every ONNX export; where that differs from torch's training-time "
        "gradient, lam-trt's warning is in the reason column, and `--straight-through` gives torch's map for lost "
        "straight-through estimators), at batch 1 and at batch 3 (three path images in one "
        "run); seconds per path image on one thread, lam-trt in ONNX Runtime against torch autograd (float32). "
        "`ONNX vs torch` is the exported file's own max relative error at batch 1 / batch 3: where it fails or "
        "differs at batch 3 but lam-trt is exact, the export traced shapes or masks for batch 1.",
        "",
        summary(rows),
        "",
        "| architecture | exporter | status | rel L2 b1 | rel L2 b3 | build s | lam-trt s/img | torch s/img | ONNX vs torch b1 / b3 | reason | ops |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (case, exporter), row in sorted(rows.items(), key=lambda kv: (kv[0][0].lower(), kv[0][1])):
        errs = row.get("rel_l2") or {}
        check = row.get("onnx_vs_torch") or {}
        lines.append("| " + " | ".join([
            case, exporter, status(row), num(errs.get("b1")), num(errs.get("b3")), num(row.get("build_s")),
            num(row.get("ort_s_per_image")), num(row.get("torch_s_per_image")),
            f"{num(check.get('b1'))} / {num(check.get('b3'))}" if check else "",
            cell(" ".join(filter(None, [row.get("reason", ""), row.get("export_note", ""),
                                        row.get("torch_batch", "")]))),
            cell(" ".join(row.get("ops", []))),
        ]) + " |")
    if checkpoints:
        lines += ["", "## `lam-trt export CHECKPOINT` per architecture", "",
                  "The same random weights saved as a safetensors state dict; spandrel detects the architecture "
                  "(pickles are never executed), torch exports it (TorchScript, opset 17, dynamic batch and, where the "
                  "trace allows, height and width), and the file is checked against torch at a second size and at "
                  "batch 2 (`python bench/coverage.py --checkpoints`). \"not detected\": spandrel cannot read these tiny "
                  "configurations back from their weights (its detection assumes published hyperparameters such as "
                  "GroupNorm widths, patch sizes or block counts); that is the test configuration, not the model.", "",
                  "| architecture | status | detected as | dynamic batch | dynamic H/W | max rel error | notes |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in sorted(checkpoints.items(), key=lambda kv: kv[0].lower()):
            lines.append("| " + " | ".join([name, row["status"], row.get("detected", ""), str(row.get("dynamic_batch", "")),
                                             str(row.get("dynamic_hw", "")), num(row.get("max_rel_error")),
                                             cell(row.get("reason", ""))]) + " |")
    tmp = report.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, report)


def summary(rows: dict[tuple[str, str], dict]) -> str:
    counts: dict[str, int] = {}
    for row in rows.values():
        counts[status(row)] = counts.get(status(row), 0) + 1
    exportable = sum(1 for r in rows.values() if r["status"] != "torch cannot export")
    parts = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (f"{len(rows)} (architecture, exporter) pairs; torch exports {exportable}; of those, exact at batch 1 and 3: "
            f"{counts.get('exact', 0)}. By status: {parts}.")


def status(row: dict) -> str:
    """A graph build that lam-trt's own checks stop (one line naming op, node and why) is a refusal."""
    refused = row["status"] == "graph build fails" and row.get("reason", "").startswith(REFUSALS)
    return "refused" if refused else row["status"]


def num(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.2g}" if v < 0.01 or v >= 1000 else f"{v:.3g}"
    return cell(str(v))


def cell(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m?", "", text)  # torch's exporter colours its messages
    return text.replace("|", "\\|").replace("\n", " ")[:400]


def git(*args: str) -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()
    return "?"


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    main()
