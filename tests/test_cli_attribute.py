"""`lam-trt attribute` and `lam-trt demo` as a user runs them: files, JSON, and one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from PIL import Image
from typer.testing import CliRunner

from lam_trt.cli import app
from nets import NETS, export_onnx, seeded

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("shared_graph_cache")  # one graph cache for the session


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A small x2 model, an LR image and a gallery of broken inputs."""
    d = tmp_path_factory.mktemp("inputs")
    model = export_onnx(seeded(NETS["BicubicResidualX2"]), (3, 12, 12), d / "model.onnx")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).save(d / "lr.png")
    Image.fromarray((rng.random((12, 12, 4)) * 255).astype(np.uint8), "RGBA").save(d / "rgba.png")
    (d / "notes.txt").write_text("not an image, not a model\n")
    (d / "truncated.onnx").write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    return {"model": model, "lr": d / "lr.png", "rgba": d / "rgba.png", "text": d / "notes.txt",
            "truncated": d / "truncated.onnx", **hand_built(d)}


def hand_built(d: Path) -> dict[str, Path]:
    """ONNX models that are valid files but wrong for LAM."""
    def save(name: str, nodes, inputs, outputs, inits=()) -> Path:
        graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
        path = d / f"{name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return path

    image = lambda name, c: helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", c, "H", "W"])
    return {
        "classifier": save("classifier", [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                                          helper.make_node("Flatten", ["p"], ["y"])],
                           [image("x", 3)], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])]),
        "two_channel": save("two_channel", [helper.make_node("Identity", ["x"], ["y"])], [image("x", 2)],
                            [image("y", 2)]),
        "no_rule": save("no_rule", [helper.make_node("LpNormalization", ["x"], ["y"], axis=3)],
                        [image("x", 3)], [image("y", 3)]),
    }


def invoke(*args: str) -> "CliRunner.invoke":
    return runner.invoke(app, [str(a) for a in args])


def test_attribute_writes_every_output(files, tmp_path):
    out = tmp_path / "out"
    res = invoke("attribute", files["model"], files["lr"], "--window", 5, 6, "--size", 8, "--steps", 10,
                 "--out", out, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["attribution.npy", "lam.png", "path.png", "result.json"]
    saved = json.loads((out / "result.json").read_text())
    assert saved["diffusion_index"] == pytest.approx(summary["diffusion_index"])
    assert saved["window"] == {"x": 5, "y": 6, "size": 8}
    assert saved["parameters"]["steps"] == 10 and len(saved["path"]["detector"]) == 10
    assert saved["model"]["sha256"] and saved["versions"]["onnxruntime"]
    assert np.load(out / "attribution.npy").shape == (3, 12, 12)
    assert Image.open(out / "lam.png").size[0] > Image.open(out / "lam.png").size[1]


def test_attribute_reads_rgba_and_hr_images(files, tmp_path):
    hr = tmp_path / "hr.png"
    Image.open(files["lr"]).resize((25, 25)).save(hr)  # 25 -> cropped to 24, downscaled to 12
    res = invoke("attribute", files["model"], hr, "--hr", "--scale", 2, "--window", 3, 3, "--size", 8,
                 "--steps", 4, "--out", tmp_path / "hr-out", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["input_shape"] == [3, 12, 12]
    res = invoke("attribute", files["model"], files["rgba"], "--window", 3, 3, "--size", 8, "--steps", 4,
                 "--method", "ig", "--out", tmp_path / "rgba-out")
    assert res.exit_code == 0, res.output
    assert "DI" in res.stdout


BAD = {
    "missing model": (["{missing}.onnx", "{lr}"], [], "not found"),
    "missing image": (["{model}", "{missing}.png"], [], "not found"),
    "image is text": (["{model}", "{text}"], [], "image"),
    "model is text": (["{text}", "{lr}"], [], "ONNX"),
    "truncated model": (["{truncated}", "{lr}"], [], "ONNX"),
    "not image-to-image": (["{classifier}", "{lr}"], [], "image-to-image"),
    "two-channel model": (["{two_channel}", "{lr}"], [], "channels"),
    "window outside": (["{model}", "{lr}"], ["--window", "20", "3"], "outside"),
    "negative window": (["{model}", "{lr}"], ["--window", "-1", "3"], "outside"),
    "even kernel": (["{model}", "{lr}"], ["--kernel-size", "8"], "odd"),
    "zero kernel": (["{model}", "{lr}"], ["--kernel-size", "0"], "kernel"),
    "no steps": (["{model}", "{lr}"], ["--steps", "0"], "steps"),
    "negative sigma": (["{model}", "{lr}"], ["--sigma", "-0.5"], "sigma"),
    "size zero": (["{model}", "{lr}"], ["--size", "0"], "size"),
    "unknown method": (["{model}", "{lr}"], ["--method", "smoothgrad"], "method"),
    "unknown provider": (["{model}", "{lr}"], ["--provider", "rocm"], "provider"),
    "bad batch size": (["{model}", "{lr}"], ["--batch-size", "0"], "batch"),
    "op without rule": (["{no_rule}", "{lr}"], [], "LpNormalization"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(files, tmp_path, case):
    positional, options, needle = BAD[case]
    names = {k: str(v) for k, v in files.items()} | {"missing": str(tmp_path / "nope")}
    args = [p.format(**names) for p in positional]
    defaults = {"--window": ["2", "2"], "--size": ["8"], "--steps": ["4"]}
    for flag, value in defaults.items():
        if flag not in options:
            options = options + [flag, *value]
    out = tmp_path / "out"
    res = invoke("attribute", *args, *options, "--out", out)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir())


def test_real_process_exit_code_and_no_traceback(files, tmp_path):
    env = {**os.environ, "LAM_TRT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "lam_trt.cli", "attribute", str(files["no_rule"]),
                           str(files["lr"]), "--window", "2", "2", "--size", "8", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "LpNormalization" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_runs_on_the_bundled_model(tmp_path):
    res = invoke("demo", "--out", tmp_path / "demo", "--steps", 5, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["scale"] == 4 and summary["input_shape"] == [3, 64, 64]
    assert 0 < summary["diffusion_index"] < 100
    assert (tmp_path / "demo" / "lam.png").stat().st_size > 10_000


def test_attribute_does_not_import_torch(files, tmp_path):
    """PyTorch is an optional extra: attributing an ONNX model must not load it (nor Ray, spandrel)."""
    script = (
        "import sys\n"
        "from lam_trt.cli import app\n"
        f"try:\n    app(['attribute', {str(files['model'])!r}, {str(files['lr'])!r}, '--window', '2', '2',"
        f" '--size', '8', '--steps', '3', '--out', {str(tmp_path / 'o')!r}])\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "print(sorted(m for m in ('torch', 'spandrel', 'ray', 'cupy') if m in sys.modules))\n")
    env = {**os.environ, "LAM_TRT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
