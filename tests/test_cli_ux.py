"""People's habits (issue 12, items 9-11): progress with its real total, output that survives a pipe,
``--version``, one default window, export's default file name and parameter count, the cache command."""
from __future__ import annotations

import io
import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import lam_trt
from lam_trt.attributor import Attributor
from lam_trt.batch import WindowSpec
from lam_trt.cli import app
from lam_trt.commands import _common
from lam_trt.kernels import make_path
from lam_trt.window import centre_window
from test_batch import export_tiny

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ux")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((20, 18, 3)) * 255).astype(np.uint8)).save(d / "lr.png")
    return {"model": export_tiny(d / "model.onnx"), "lr": d / "lr.png"}


@pytest.fixture(autouse=True)
def graph_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LAM_TRT_CACHE", str(tmp_path_factory.getbasetemp() / "ux-cache"))


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"lam-trt {lam_trt.__version__}"
    assert lam_trt.__version__ == version("lam-trt")


@pytest.mark.parametrize("method", ["lam", "ig", "grad", "grad-x-input"])
@pytest.mark.parametrize("rule", ["right", "trapezoid", "gauss-legendre"])
def test_progress_total_is_the_number_of_path_images(method, rule):
    image = np.random.default_rng(1).random((3, 6, 6), dtype=np.float32)
    assert _common.path_points(method, 7, rule) == len(make_path(method, image, steps=7, rule=rule))


def test_piped_progress_is_one_line_per_stage_with_the_total(files, tmp_path):
    res = invoke("attribute", files["model"], files["lr"], "--steps", 5, "--rule", "trapezoid", "--size", 8,
                 "--out", tmp_path / "o", "--json")
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("lam-trt:")]
    assert len(lines) == 1 and lines[0].startswith("lam-trt: path images 6/6 in "), res.stderr
    assert "\x1b" not in res.stderr


def test_terminal_progress_shows_the_total(monkeypatch):
    screen = io.StringIO()
    console = _common.PipeConsole(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(_common, "err_console", console)
    with _common.stage("path images", 12) as advance:
        for _ in range(3):
            advance(4)
    assert "12/12" in screen.getvalue() and "/?" not in screen.getvalue()


def test_piped_output_never_wraps(monkeypatch):
    screen = io.StringIO()
    console = _common.PipeConsole(file=screen, highlight=False)  # a file: not a terminal
    assert not console.is_terminal
    long = "model_" + "x" * 150 + ".onnx"
    console.print(f"{long}   DI 12.345   Gini 0.5000   gap 0.0001 (0.01%)")
    from rich.table import Table

    table = Table()
    table.add_column("model")
    table.add_row(long)
    console.print(table)
    lines = screen.getvalue().splitlines()
    assert lines[0].endswith("(0.01%)") and any(long in line for line in lines[1:])


def test_attribute_summary_stays_one_line_when_piped(files, tmp_path):
    res = invoke("attribute", files["model"], files["lr"], "--size", 8, "--steps", 2, "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    first, second = res.stdout.splitlines()[:2]
    assert first.startswith("DI ") and "gap" in first and len(first) > 80   # rich folded it at 80 columns
    assert second.endswith(f"-> {tmp_path / 'o'}/")


def test_one_default_window_everywhere(files, tmp_path):
    """The API, the CLI, batch's "center" and bench all put an unplaced window at the SR centre."""
    result = Attributor(files["model"], provider="cpu").attribute(files["lr"], size=8, steps=2)
    sr_hw = result.sr_output.shape[1:]
    x, y = centre_window(sr_hw, 8)
    assert (x, y) == ((36 - 8) // 2, (40 - 8) // 2) and result.window == (x, y, 8)
    assert WindowSpec.parse("center").windows(result.sr_output.shape, 8) == [(x, y, 8)]
    res = invoke("attribute", files["model"], files["lr"], "--size", 8, "--steps", 2, "--out", tmp_path / "o",
                 "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["window"] == {"x": x, "y": y, "size": 8}


def test_cache_info_and_clear_touch_only_lam_trts_entries(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("LAM_TRT_CACHE", str(root))
    entry = root / ("ab" * 12 + "-3x16x16-gradient-sum-f3")
    staging = root / (".ab" + "cd" * 11 + "ab-3x8x8-gradient-sum-f3.x1y2")
    for folder in (entry, staging, root / "trt"):
        folder.mkdir(parents=True)
        (folder / "graph.onnx").write_bytes(b"\0" * 1000)
    (root / "notes").mkdir()
    (root / "notes" / "mine.txt").write_text("not lam-trt's")
    info = json.loads(invoke("cache", "info", "--json").stdout)
    assert info == {"path": str(root), "chosen_by": "LAM_TRT_CACHE", "entries": 3, "bytes": 3000}
    cleared = invoke("cache", "clear")
    assert cleared.exit_code == 0 and "removed 3 entries" in cleared.stdout
    assert sorted(p.name for p in root.iterdir()) == ["notes"]
    assert json.loads(invoke("cache", "info", "--json").stdout)["entries"] == 0


def test_export_default_name_and_inspect_agree_on_parameters(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    res = invoke("export", "--arch", "fsrcnn", "--random-init", "--width", 8, "--depth", 1, "--lr-size", "16x16",
                 "--json")
    assert res.exit_code == 0, res.output
    exported = json.loads(res.stdout)
    assert Path(exported["path"]).resolve() == (tmp_path / "fsrcnn-x4.onnx").resolve()
    stages = [line for line in res.stderr.splitlines() if line.startswith("lam-trt:")]
    assert [s.split(" in ")[0] for s in stages] == ["lam-trt: loading the model",
                                                   "lam-trt: exporting to ONNX and checking it against PyTorch"]
    from lam_trt.export.checkpoint import load_checkpoint

    torch.manual_seed(0)
    module = load_checkpoint(None, arch="fsrcnn", width=8, depth=1).module
    expected = sum(p.numel() for p in module.parameters())
    inspected = json.loads(invoke("inspect", tmp_path / "fsrcnn-x4.onnx", "--json").stdout)
    assert exported["parameters"] == inspected["parameters"] == expected


def test_figure_options_match_the_renderer_and_are_checked_before_work(files, tmp_path):
    from lam_trt import render

    assert _common.FIGURE_FORMATS == render.FORMATS and _common.FIGURE_DPI == render.DEFAULT_DPI
    res = invoke("attribute", files["model"], files["lr"], "--size", 8, "--steps", 2, "--out", tmp_path / "o",
                 "--format", "svg", "--dpi", 72)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["attribution.npy", "lam.svg", "path.svg",
                                                                  "result.json"]
    for option, value in (("--format", "gif"), ("--dpi", 0)):
        bad = invoke("attribute", files["model"], files["lr"], "--out", tmp_path / "bad", option, value)
        assert bad.exit_code == 2 and bad.stderr.startswith("error:") and option in bad.stderr
        assert "lam-trt:" not in bad.stderr and not (tmp_path / "bad").exists()


def test_export_of_a_checkpoint_is_named_after_it(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from lam_trt.export.zoo import build

    torch.manual_seed(1)
    ckpt = tmp_path / "weights" / "my_edsr_x2.pth"
    ckpt.parent.mkdir()
    torch.save({"state_dict": build("edsr", scale=2, width=8, depth=1).state_dict()}, ckpt)
    monkeypatch.chdir(tmp_path)
    res = invoke("export", ckpt, "--arch", "edsr", "--scale", 2, "--lr-size", "16x16")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "my_edsr_x2.onnx").is_file() and "-> my_edsr_x2.onnx" in res.stdout
