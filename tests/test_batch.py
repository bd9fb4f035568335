"""lam-trt batch: inputs, windows, rows, bad images, resume after an interruption, gates, the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch import nn
from typer.testing import CliRunner

from lam_trt.attributor import Attributor, check_window
from lam_trt.batch import (COLUMNS, BatchParams, Gates, ResultsLog, WindowSpec, expand_inputs, plan_batch,
                           read_windows_csv, run_batch)
from lam_trt.cli import app
from lam_trt.errors import InputError

STEPS = 5
CROPS = {"a.png": (100, 180, 16), "b.png": (200, 200, 20), "c.png": (40, 300, 24)}  # row, col, side


def export_tiny(path: Path, scale: int = 2, width: int = 8, seed: int = 0) -> Path:
    """Conv, ReLU, conv, PixelShuffle: a tiny SR net, exported with dynamic spatial axes."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(width, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)).eval()
    axes = {"input": {0: "N", 2: "h", 3: "w"}, "output": {0: "N", 2: "H", 3: "W"}}
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, torch.rand(1, 3, 16, 16), str(path), input_names=["input"],
                          output_names=["output"], dynamic_axes=axes, dynamo=False)
    return path


def write_images(folder: Path, crops: dict[str, tuple[int, int, int]] = CROPS, bad: bool = True) -> Path:
    """Small crops of skimage's astronaut as PNG files, and (with ``bad``) a file that is no image."""
    folder.mkdir(parents=True, exist_ok=True)
    picture = data.astronaut()
    for name, (y, x, side) in crops.items():
        Image.fromarray(picture[y:y + side, x:x + side]).save(folder / name)
    if bad:
        (folder / "broken.png").write_bytes(b"this is not a PNG")
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny x2 model, three images and a broken one, and a graph cache shared by the module."""
    root = tmp_path_factory.mktemp("batch")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAM_TRT_CACHE", str(root / "cache"))
        yield type("Env", (), {"root": root, "model": export_tiny(root / "tiny.onnx"),
                               "images": write_images(root / "images")})


def run(env, out: Path, inputs=None, windows: str = "grid:2", fmt: str = "csv", gates: Gates = Gates(),
        on_row=None, steps: int = STEPS):
    params = BatchParams(WindowSpec.parse(windows), size=16, steps=steps)
    plan = plan_batch(env.model, inputs or [str(env.images)], out, params, fmt=fmt, gates=gates)
    return run_batch(plan, on_row=on_row)


def keys(rows):
    return [(r["image"], r["window_x"], r["window_y"], r["window_size"]) for r in rows]


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------- inputs

def test_inputs_expand_files_folders_and_globs(tmp_path):
    folder = write_images(tmp_path / "imgs", bad=False)
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    files = sorted(str(folder / n) for n in CROPS)
    assert expand_inputs([str(folder)]) == files                    # images only, sorted, not recursive
    assert expand_inputs([str(folder / "b.png"), str(folder)]) == [files[1], files[0], files[2]]  # once each
    assert expand_inputs([str(folder / "[ab].png")]) == files[:2]
    assert expand_inputs([str(tmp_path / "missing.png")]) == [str(tmp_path / "missing.png")]  # an error row
    with pytest.raises(InputError, match="no files match"):
        expand_inputs([str(tmp_path / "*.jpg")])
    with pytest.raises(InputError, match="no images"):
        expand_inputs([str(folder / "sub")])


# ------------------------------------------------------------------------------------ windows

@pytest.mark.parametrize("height,width,size", [(32, 32, 16), (48, 40, 16), (17, 17, 16), (64, 48, 8)])
def test_center_and_grid_windows_are_valid_and_spread(height, width, size):
    shape = (3, height, width)
    (x, y, s), = WindowSpec.parse("center").windows(shape, size)
    check_window(x, y, s, shape)
    assert abs((x + size / 2) - width / 2) <= 1 and abs((y + size / 2) - height / 2) <= 1
    grid = WindowSpec.parse("grid:3").windows(shape, size)
    for gx, gy, gs in grid:
        check_window(gx, gy, gs, shape)
    xs, ys = sorted({w[0] for w in grid}), sorted({w[1] for w in grid})
    assert len(grid) == len(xs) * len(ys) == len(set(grid))
    assert xs[0] == 0 and xs[-1] == width - 1 - size and ys[-1] == height - 1 - size
    steps = np.diff(xs)
    assert steps.size == 0 or steps.max() - steps.min() <= 1        # evenly spaced
    assert WindowSpec.parse("grid:1").windows(shape, size) == WindowSpec.parse("center").windows(shape, size)


def test_window_spec_errors(tmp_path):
    for bad in ("grid:0", "grid:x", "middle", str(tmp_path / "none.csv")):
        with pytest.raises(InputError, match="--windows"):
            WindowSpec.parse(bad)
    with pytest.raises(InputError, match="no room"):
        WindowSpec.parse("center").windows((3, 16, 16), 16)


def test_window_csv_with_and_without_header(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("3,4\n5, 6, 8\n\n")
    assert read_windows_csv(plain) == [(3, 4, None), (5, 6, 8)]
    headed = tmp_path / "headed.csv"
    headed.write_text("size,y,x\n8,1,2\n")
    assert read_windows_csv(headed) == [(2, 1, 8)]
    assert WindowSpec.parse(str(plain)).windows((3, 40, 40), 16) == [(3, 4, 16), (5, 6, 8)]
    for text, message in (("x,y\n1,a\n", "integers"), ("a,b\n1,2\n", "header"), ("-1,2\n", ">= 0"),
                          ("", "no windows")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(InputError, match=message):
            read_windows_csv(bad)


# --------------------------------------------------------------------------------------- rows

def test_rows_summary_and_run_json(env, tmp_path):
    out = tmp_path / "out"
    outcome = run(env, out)
    rows = ResultsLog(out, "csv").read()
    images = sorted(str(env.images / n) for n in [*CROPS, "broken.png"])
    assert sorted({r["image"] for r in rows}) == images
    assert len(rows) == 1 + 4 * 3 and outcome.new_rows == 13 and outcome.skipped_rows == 0
    assert len(set(keys(rows))) == len(rows)
    broken = [r for r in rows if r["image"].endswith("broken.png")]
    assert len(broken) == 1 and "not an image" in broken[0]["error"] and broken[0]["window_x"] is None
    good = [r for r in rows if not r["error"]]
    assert len(good) == 12 and all(0 < r["diffusion_index"] < 100 and r["scale"] == 2 for r in good)

    # every row is what a single attribution of that window gives
    row = next(r for r in good if r["image"].endswith("b.png") and r["window_x"] > 0)
    direct = Attributor(env.model).attribute(row["image"], window=(row["window_x"], row["window_y"]),
                                             size=16, steps=STEPS)
    assert row["diffusion_index"] == pytest.approx(direct.diffusion_index, rel=1e-6)
    assert row["completeness_gap"] == pytest.approx(direct.completeness_gap, rel=1e-4, abs=1e-7)
    assert row["model_sha256"] == direct.meta["model"]["sha256"] and row["steps"] == STEPS

    di = np.array([r["diffusion_index"] for r in good])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 13 and summary["errors"] == 1 and summary["ok"] == 12
    assert summary["diffusion_index"]["mean"] == pytest.approx(di.mean())
    assert summary["diffusion_index"]["median"] == pytest.approx(np.median(di))
    assert summary["diffusion_index"]["p5"] == pytest.approx(np.percentile(di, 5))
    assert summary["diffusion_index"]["p95"] == pytest.approx(np.percentile(di, 95))
    info = json.loads((out / "run.json").read_text())
    assert info["model"]["sha256"] == direct.meta["model"]["sha256"]
    assert info["parameters"]["steps"] == STEPS and info["parameters"]["windows"] == "grid:2"


def test_bad_windows_from_a_file_are_rows(env, tmp_path):
    listed = tmp_path / "windows.csv"
    listed.write_text("x,y,size\n2,3,16\n30,0,16\n0,0,4\n")  # the second is outside a 32x32 output
    out = tmp_path / "out"
    run(env, out, inputs=[str(env.images / "a.png")], windows=str(listed))
    rows = ResultsLog(out, "csv").read()
    listed_windows = [(2, 3, 16), (30, 0, 16), (0, 0, 4)]
    assert keys(rows) == [(str(env.images / "a.png"), *w) for w in listed_windows]
    assert [bool(r["error"]) for r in rows] == [False, True, False]
    assert "outside the SR output" in rows[1]["error"]
    assert json.loads((out / "run.json").read_text())["parameters"]["windows"] == [list(w) for w in listed_windows]


def test_all_windows_of_an_image_run_in_one_call(env, tmp_path, monkeypatch):
    """One attribution call per image (one forward pass per path image for all its windows), and
    each window's row is what a call for that window alone gives."""
    calls = []
    attribute = Attributor.attribute

    def counted(self, image, *args, **kwargs):
        calls.append(kwargs.get("windows"))
        return attribute(self, image, *args, **kwargs)

    monkeypatch.setattr(Attributor, "attribute", counted)
    out = tmp_path / "out"
    run(env, out, inputs=[str(env.images / "b.png")], windows="grid:2")
    rows = ResultsLog(out, "csv").read()
    assert len(calls) == 1 and len(calls[0]) == 4 == len(rows)
    alone = attribute(Attributor(env.model), rows[3]["image"], window=(rows[3]["window_x"], rows[3]["window_y"]),
                      size=16, steps=STEPS)
    assert rows[3]["diffusion_index"] == pytest.approx(alone.diffusion_index, rel=1e-5)


def test_jsonl_rows_match_csv_rows(env, tmp_path):
    run(env, tmp_path / "csv")
    run(env, tmp_path / "jsonl", fmt="jsonl")
    csv_rows = ResultsLog(tmp_path / "csv", "csv").read()
    json_rows = ResultsLog(tmp_path / "jsonl", "jsonl").read()
    assert keys(csv_rows) == keys(json_rows)
    for a, b in zip(csv_rows, json_rows):
        assert set(b) == set(COLUMNS)
        assert a["diffusion_index"] == b["diffusion_index"]  # CSV keeps every digit
        assert a["error"] == b["error"]


# ------------------------------------------------------------------------------------- resume

class Interrupt(KeyboardInterrupt):
    pass


def stop_after(k: int):
    count = [0]

    def on_row(_row):
        count[0] += 1
        if count[0] == k:
            raise Interrupt

    return on_row


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_after_interruption_gives_every_row_once(env, tmp_path, fmt):
    full = tmp_path / "full"
    run(env, full, fmt=fmt)
    out = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        run(env, out, fmt=fmt, on_row=stop_after(5))
    assert len(ResultsLog(out, fmt).read()) == 5
    outcome = run(env, out, fmt=fmt)
    assert outcome.skipped_rows == 5 and outcome.new_rows == 8
    rows, expected = ResultsLog(out, fmt).read(), ResultsLog(full, fmt).read()
    assert keys(rows) == keys(expected)                            # same rows, same order, none twice
    for a, b in zip(rows, expected):
        assert a["error"] == b["error"]
        if b["diffusion_index"] is not None:
            assert a["diffusion_index"] == pytest.approx(b["diffusion_index"], rel=1e-9)
    assert run(env, out, fmt=fmt).new_rows == 0                    # a finished batch stays as it is


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_torn_last_line_is_dropped_and_redone(env, tmp_path, fmt):
    out = tmp_path / "out"
    with pytest.raises(Interrupt):
        run(env, out, fmt=fmt, on_row=stop_after(3))
    log = ResultsLog(out, fmt)
    with open(log.path, "ab") as f:                                  # a writer killed mid-row
        f.write(log.serialise(log.read()[-1])[:25])
    run(env, out, fmt=fmt)
    rows = log.read()
    assert len(rows) == 13 and len(set(keys(rows))) == 13
    assert log.path.read_bytes().endswith(b"\n")


def test_other_parameters_are_refused(env, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Interrupt):
        run(env, out, on_row=stop_after(2))
    before = (out / "results.csv").read_bytes()
    with pytest.raises(InputError, match="steps: 5 before, 6 now"):
        run(env, out, steps=6)
    with pytest.raises(InputError, match="format"):
        run(env, out, fmt="jsonl")
    result = cli("batch", env.model, env.images, "--windows", "grid:3", "--steps", STEPS, "--out", out)
    assert result.exit_code == 2 and "windows: 'grid:2' before, 'grid:3' now" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert (out / "results.csv").read_bytes() == before


def test_a_second_writer_is_refused(env, tmp_path):
    out = tmp_path / "out"
    run(env, out, inputs=[str(env.images / "a.png")])
    log = ResultsLog(out, "csv")
    with log.appending():
        with pytest.raises(InputError, match="another lam-trt batch"):
            run(env, out, inputs=[str(env.images / "a.png")])


def test_cli_killed_mid_batch_resumes_without_duplicates(env, tmp_path):
    """SIGKILL the real command after some rows (a torn row is possible), run it again."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lam_trt.cli", "batch", str(env.model), str(env.images), "--windows",
               "grid:4", "--steps", str(STEPS), "--out", str(out)]
    results = out / "results.csv"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if results.exists() and results.read_bytes().count(b"\n") >= 6:  # header and 5 rows
                break
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    written = len(ResultsLog(out, "csv").read())
    total = 1 + 16 * 3
    assert 5 <= written < total, "the batch finished before it could be interrupted"
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 1 and "error: not an image" in rerun.stderr     # broken.png fails the run
    assert f"{total} rows" in rerun.stdout and f"{total - written} new" in rerun.stdout
    rows = ResultsLog(out, "csv").read()
    assert len(rows) == total and len(set(keys(rows))) == total


# -------------------------------------------------------------------------------------- gates

def test_gates_on_rows():
    ok = {"image": "a", "window_x": 0, "window_y": 0, "error": None, "diffusion_index": 5.0,
          "completeness_gap": 0.1, "completeness_gap_relative": 0.2}
    flat = {**ok, "completeness_gap": 0.0, "completeness_gap_relative": None, "warnings": "nothing-to-attribute"}
    degenerate = {**ok, "diffusion_index": None, "completeness_gap_relative": None,
                  "warnings": "degenerate-window;nothing-to-attribute"}
    broken = {**ok, "error": "not an image", "diffusion_index": None}
    reasons = lambda gates, rows: [v["reasons"] for v in gates.violations(rows)]
    assert reasons(Gates(), [ok, flat, degenerate]) == []                   # no metric gate: reported only
    assert reasons(Gates(), [broken]) == [["error: not an image"]]          # errors fail by default
    assert reasons(Gates(allow_errors=True), [ok, broken]) == []
    assert reasons(Gates(min_di=4), [ok]) == [] and reasons(Gates(min_di=6), [ok]) == [["DI 5 < 6"]]
    assert reasons(Gates(min_di=4), [ok, degenerate]) == [["degenerate window (DI undefined)"]]
    assert reasons(Gates(min_di=4, allow_degenerate=True), [ok, degenerate]) == []
    assert len(Gates(max_gap=0.5).violations([ok, flat])) == 1             # no ratio: nothing measured
    assert reasons(Gates(max_gap=0.1), [ok]) == [["|relative gap| 0.2 > 0.1"]]
    assert reasons(Gates(fail_on_warnings=("nothing-to-attribute",)), [ok, flat]) == [
        ["warning nothing-to-attribute"]]
    assert len(Gates(fail_on_warnings=("all",)).violations([ok, flat, degenerate])) == 2
    for gates in (Gates(min_di=0.5), Gates(max_gap=1.0)):                  # a gate over nothing fails
        assert "no row was measured" in reasons(gates, [broken])[-1][0]
        assert "no row was measured" in reasons(gates, [])[0][0]
        assert "no row was measured" in reasons(replace(gates, allow_errors=True, allow_degenerate=True),
                                                [broken, degenerate])[-1][0]
    with pytest.raises(InputError):
        Gates(max_gap=-1).check()
    with pytest.raises(InputError, match="no completeness gap"):
        Gates(max_gap=0.1).check("grad")


def test_cli_gates_and_exit_codes(env, tmp_path):
    out = tmp_path / "out"
    args = ["batch", env.model, env.images, "--steps", STEPS, "--out", out]
    passed = cli(*args, "--min-di", 0.5, "--max-gap", 100, "--allow-errors", "--allow-degenerate")
    assert passed.exit_code == 0, passed.output
    assert "4 rows (" in passed.output and "1 errors" in passed.output and "QA gates: passed" in passed.output
    assert "DI mean" in passed.output and "p95" in passed.output
    rows = ResultsLog(out, "csv").read()
    lowest = min(r["diffusion_index"] for r in rows if not r["error"])
    failed = cli(*args, "--min-di", lowest + 1e-6, "--allow-errors", "--json")  # same folder: adds nothing
    assert failed.exit_code == 1
    summary = json.loads(failed.stdout)
    assert summary["new_rows"] == 0 and summary["gates"]["violations"] >= 1 and not summary["gates"]["passed"]
    assert "fail" in failed.stderr and "QA gates" in failed.stderr
    assert cli(*args, "--max-gap", 1e-9, "--allow-errors").exit_code == 1
    assert cli(*args).exit_code == 1                                 # the broken image's row fails the run
    assert cli(*args, "--allow-errors").exit_code == 0
    assert cli(*args, "--fail-on-error").exit_code == 1              # the old flag still works
    assert len(ResultsLog(out, "csv").read()) == 4


def test_cli_gates_over_no_measured_row_fail(env, tmp_path):
    """The issue's case: a folder that does not exist, with gates, must not pass."""
    run = cli("batch", env.model, tmp_path / "nosuchdir", "--min-di", 0.5, "--max-gap", 0.05,
              "--out", tmp_path / "out")
    assert run.exit_code == 1 and "QA gates: passed" not in run.output
    assert "no row was measured" in run.stderr or "error" in run.stderr
    allowed = cli("batch", env.model, tmp_path / "nosuchdir", "--min-di", 0.5, "--allow-errors",
                  "--out", tmp_path / "out")
    assert allowed.exit_code == 1 and "no row was measured" in allowed.stderr


@pytest.mark.parametrize("extra,message", [
    (["--windows", "grid:0"], "grid:K"), (["--steps", "0"], "steps"), (["--kernel-size", "4"], "kernel size"),
    (["--format", "xml"], "--format"), (["--method", "magic"], "method"), (["--provider", "tpu"], "provider"),
    (["--max-gap", "-1"], "--max-gap"), (["--size", "0"], "window size")])
def test_cli_bad_arguments_exit_2_and_write_nothing(env, tmp_path, extra, message):
    out = tmp_path / "out"
    result = cli("batch", env.model, env.images, "--out", out, *extra)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_cli_missing_model_and_unmatched_glob(env, tmp_path):
    for args in ([tmp_path / "none.onnx", env.images], [env.model, tmp_path / "*.png"]):
        result = cli("batch", *args, "--out", tmp_path / "out")
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- resume keys (issue 12)

def test_one_folder_named_three_ways_gives_its_rows_once(env, tmp_path, monkeypatch):
    monkeypatch.chdir(env.images.parent)
    name = env.images.name
    out = tmp_path / "out"
    first = run(env, out, inputs=[name], windows="center")
    for alias in (str(env.images.resolve()), f"{name}/../{name}"):
        again = run(env, out, inputs=[alias], windows="center")
        assert again.new_rows == 0 and again.skipped_rows == first.new_rows
    assert len(ResultsLog(out, "csv").read()) == first.new_rows == 4


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_odd_file_names_survive_a_resume(env, tmp_path, fmt):
    folder = tmp_path / "odd"
    folder.mkdir()
    names = ["two  spaces.png", " lead.png", "tab\there.png", os.fsdecode(b"latin1-\xe9.png")]
    for name in names:
        (folder / name).write_bytes((env.images / "a.png").read_bytes())
    out = tmp_path / "out"
    first = run(env, out, inputs=[str(folder)], windows="center", fmt=fmt)
    rows = ResultsLog(out, fmt).read()
    assert sorted(Path(r["image"]).name for r in rows) == sorted(names) and not any(r["error"] for r in rows)
    again = run(env, out, inputs=[str(folder)], windows="center", fmt=fmt)
    assert first.new_rows == 4 and again.new_rows == 0 and len(ResultsLog(out, fmt).read()) == 4


def test_cli_prints_a_non_utf8_name(env, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / os.fsdecode(b"bad-\xff.png")).write_bytes(b"not a png")
    run_ = cli("batch", env.model, folder, "--steps", STEPS, "--out", tmp_path / "out")
    assert run_.exit_code == 1 and "bad-\\xff.png" in run_.stderr and "Traceback" not in run_.output


def test_a_changed_image_is_computed_again(env, tmp_path):
    image = tmp_path / "img.png"
    image.write_bytes((env.images / "a.png").read_bytes())
    out = tmp_path / "out"
    before = ResultsLog(out, "csv")
    run(env, out, inputs=[str(image)], windows="center")
    image.write_bytes((env.images / "b.png").read_bytes())
    again = run(env, out, inputs=[str(image)], windows="center")
    assert again.new_rows == 1 and again.summary["count"] == 1      # the old row no longer stands
    rows = before.read()
    assert len(rows) == 2 and rows[0]["image_sha256"] != rows[1]["image_sha256"]


def test_environment_failures_are_retried_on_resume(env, tmp_path, monkeypatch):
    import lam_trt.attributor

    real = lam_trt.attributor.Attributor.attribute

    def no_memory(self, *args, **kwargs):
        raise MemoryError("Unable to allocate 73.2 GiB")

    from lam_trt.batch.rows import error_kind
    from lam_trt.errors import ProviderError, ResourceError
    assert [error_kind(e) for e in (ResourceError("disk full"), ProviderError("no GPU"), OSError(28, "full"),
                                    InputError("not an image"))] == ["environment"] * 3 + ["input"]

    monkeypatch.setattr(lam_trt.attributor.Attributor, "attribute", no_memory)
    out = tmp_path / "out"
    image = str(env.images / "a.png")
    failed = run(env, out, inputs=[image], windows="center")
    (row,) = ResultsLog(out, "csv").read()
    assert row["error_kind"] == "environment" and "MemoryError" in row["error"] and failed.violations
    monkeypatch.setattr(lam_trt.attributor.Attributor, "attribute", real)
    retried = run(env, out, inputs=[image], windows="center")
    assert retried.new_rows == 1 and retried.summary["errors"] == 0 and not retried.violations
    bad = tmp_path / "w.csv"
    bad.write_text("x,y\n999,999\n")                                 # an input error is kept, not retried
    run(env, tmp_path / "kept", inputs=[image], windows=str(bad))
    assert run(env, tmp_path / "kept", inputs=[image], windows=str(bad)).new_rows == 0


def test_a_damaged_csv_row_is_one_line(env, tmp_path):
    out = tmp_path / "out"
    run(env, out, inputs=[str(env.images / "a.png")], windows="center")
    with open(out / "results.csv", "a") as f:
        f.write("a.png,only,three\n")
    result = cli("batch", env.model, env.images / "a.png", "--steps", STEPS, "--out", out)
    assert result.exit_code == 2 and "row 3" in result.stderr and "damaged" in result.stderr
