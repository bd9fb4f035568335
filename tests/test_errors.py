"""Every mistake one line on stderr and exit 2, said before any work: output paths, wrong files,
hostile models, memory, and the CLI's error boundary itself."""
from __future__ import annotations

import errno
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from lam_trt.cli import app
from lam_trt.errors import InputError, user_message

runner = CliRunner()
LR = 12  # LR image size; the x2 model gives 24x24


@pytest.fixture(autouse=True)
def graph_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "graph-cache"
    monkeypatch.setenv("LAM_TRT_CACHE", str(cache))
    monkeypatch.delenv("LAM_TRT_MEMORY", raising=False)
    return cache


def sr_model(extra: list[onnx.NodeProto] | None = None, out: str = "y", fixed: bool = False) -> onnx.ModelProto:
    """input -> Conv(3 -> 12) -> DepthToSpace(2): a x2 SR network (``extra`` nodes after the conv)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((0.2 * rng.standard_normal((12, 3, 3, 3))).astype(np.float32), "w")
    hw = [LR, LR] if fixed else ["H", "W"]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), *(extra or []),
             helper.make_node("DepthToSpace", [out if extra else "c"], ["y"], blocksize=2)]
    graph = helper.make_graph(nodes, "sr", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "in"
    d.mkdir()
    onnx.save(sr_model(), str(d / "model.onnx"))
    onnx.save(sr_model(), str(d / "model2.onnx"))
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((LR, LR, 3)) * 255).astype(np.uint8)).save(d / "lr.png")
    return {"model": d / "model.onnx", "model2": d / "model2.onnx", "lr": d / "lr.png"}


def invoke(*args: object, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def assert_one_line(result, *fragments: str, code: int = 2) -> str:
    """Exit ``code``, one ``error:`` line on stderr with no colour codes, no traceback, no temp names."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith("lam-trt: ")]  # stages done
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for bad in ("Traceback", "\x1b[", ".staging", ".lam-"):
        assert bad not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------- --out, -o

def commands(files: dict[str, Path]) -> dict[str, list[object]]:
    """Each command that writes an output folder, without its --out."""
    window = ["--window", 4, 4, "--size", 8, "--steps", 2]
    return {
        "attribute": ["attribute", files["model"], files["lr"], *window],
        "demo": ["demo", "--steps", 2],
        "batch": ["batch", files["model"], files["lr"], "--size", 8, "--steps", 2],
        "compare": ["compare", files["model"], files["model2"], files["lr"], *window],
    }


def _file(t: Path) -> Path:
    (t / "taken").write_text("mine")
    return t / "taken"


def _link_to_file(t: Path) -> Path:
    (t / "link").symlink_to(_file(t))
    return t / "link"


def _dangling(t: Path) -> Path:
    (t / "dangling").symlink_to(t / "nowhere")
    return t / "dangling"


BAD_OUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "existing file": (_file, "is a file, not a folder"),
    "link to a file": (_link_to_file, "is a symbolic link to a file"),
    "dangling link": (_dangling, "is a symbolic link to nothing"),
    "file's subfolder": (lambda t: _file(t) / "sub", "is a file, not a folder"),
    "name too long": (lambda t: t / ("n" * 300), "longer than the file system allows"),
}


@pytest.mark.parametrize("kind", BAD_OUTS)
@pytest.mark.parametrize("command", ["attribute", "demo", "batch", "compare"])
def test_unusable_out_is_one_line_before_any_work(command: str, kind: str, files, tmp_path: Path,
                                                  graph_cache: Path) -> None:
    make, said = BAD_OUTS[kind]
    out = make(tmp_path)
    result = invoke(*commands(files)[command], "--out", out)
    assert_one_line(result, "--out", said)
    assert not graph_cache.exists(), "work was done before the output was checked"
    if kind in ("existing file", "link to a file"):
        assert _file.__name__ and (tmp_path / "taken").read_text() == "mine"


def test_read_only_file_system_is_one_line(files) -> None:
    if os.access("/sys", os.W_OK) and not os.statvfs("/sys").f_flag & os.ST_RDONLY:
        try:
            os.mkdir("/sys/lam-trt-probe")
        except OSError:
            pass
        else:
            os.rmdir("/sys/lam-trt-probe")
            pytest.skip("/sys is writable here")
    assert_one_line(invoke(*commands(files)["attribute"], "--out", "/sys/lam-out"), "cannot write in /sys")


def test_a_250_character_out_name_works(files, tmp_path: Path) -> None:
    out = tmp_path / ("o" * 250)
    result = invoke(*commands(files)["attribute"], "--out", out)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} >= {"attribution.npy", "result.json", "lam.png"}


def test_full_disk_is_said_before_the_work(files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           graph_cache: Path) -> None:
    import shutil

    monkeypatch.setattr("lam_trt.io.shutil.disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 0))
    assert_one_line(invoke(*commands(files)["attribute"], "--out", tmp_path / "o"), "no space left")
    assert not graph_cache.exists()


def test_a_write_that_fails_names_the_out_folder_and_leaves_nothing(files, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("lam_trt.io.np.save", full)
    out = tmp_path / "o"
    line = assert_one_line(invoke(*commands(files)["attribute"], "--out", out))
    assert line == f"error: cannot write {out}: No space left on device"
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_export_output_checked_before_torch_runs(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = _file(tmp_path) / "m.onnx"
    assert_one_line(invoke("export", "--arch", "edsr", "--random-init", "-o", out), "is a file, not a folder")


# ------------------------------------------------------------------------- wrong model files

def _checkpoint_zip(t: Path) -> Path:
    torch = pytest.importorskip("torch")
    torch.save({"params": {"w": torch.zeros(2)}}, t / "net.pth")
    return t / "net.pth"


def _checkpoint_pickle(t: Path) -> Path:
    (t / "old.pt").write_bytes(pickle.dumps({"w": [0.0] * 4}, protocol=2))
    return t / "old.pt"


def _safetensors(t: Path) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (t / "net.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    return t / "net.safetensors"


def _external(t: Path, how: str) -> Path:
    folder = t / "ext"
    folder.mkdir()
    path = folder / "m.onnx"
    onnx.save(sr_model(), str(path), save_as_external_data=True, location="m.data", size_threshold=0)
    if how == "missing":
        (folder / "m.data").unlink()
    elif how == "outside":
        (folder / "m.data").rename(t / "m.data")
        model = onnx.load(str(path), load_external_data=False)
        for entry in model.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = "../m.data"
        onnx.save(model, str(path))
    elif how == "symlink":
        (folder / "m.data").rename(t / "m.data")
        (folder / "m.data").symlink_to(t / "m.data")
    return path


WRONG_MODELS: dict[str, tuple[Callable[[Path, dict], Path], str]] = {
    "zip checkpoint": (lambda t, f: _checkpoint_zip(t), "is a PyTorch checkpoint (zip archive), not an ONNX model: "
                                                        "convert it with `lam-trt export"),
    "pickled checkpoint": (lambda t, f: _checkpoint_pickle(t), "is a pickled PyTorch checkpoint, not an ONNX model"),
    "safetensors": (lambda t, f: _safetensors(t), "is a safetensors checkpoint, not an ONNX model"),
    "image first": (lambda t, f: f["lr"], "is a PNG image, not an ONNX model: MODEL comes first"),
    "folder": (lambda t, f: t, "is a folder, not a file"),
    "device": (lambda t, f: Path("/dev/zero"), "is not a regular file"),
    "missing .data": (lambda t, f: _external(t, "missing"), "external weight data cannot be used"),
    ".data outside": (lambda t, f: _external(t, "outside"), "external weight data cannot be used"),
    "symlinked .data": (lambda t, f: _external(t, "symlink"), "external weight data cannot be used"),
}


@pytest.mark.parametrize("kind", WRONG_MODELS)
@pytest.mark.parametrize("command", ["attribute", "inspect"])
def test_wrong_model_file_says_what_it_is(command: str, kind: str, files, tmp_path: Path) -> None:
    make, said = WRONG_MODELS[kind]
    model = make(tmp_path, files)
    args = [model, files["model"], "--window", 4, 4, "--out", tmp_path / "o"] if command == "attribute" else [model]
    assert_one_line(invoke(command, *args), said)


def test_classifier_is_refused_alike_by_inspect_and_attribute(files, tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])],
                              "cls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    path = tmp_path / "classifier.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    inspected = assert_one_line(invoke("inspect", path), "not an image-to-image model")
    attributed = assert_one_line(invoke("attribute", path, files["lr"], "--window", 0, 0, "--out", tmp_path / "o"))
    assert inspected == attributed


def _if_model() -> onnx.ModelProto:
    branch = lambda op, name: helper.make_graph([helper.make_node(op, ["c"], [name])], name, [],  # noqa: E731
                                                [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)])
    return sr_model([helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True))),
                     helper.make_node("If", ["cond"], ["o"], then_branch=branch("Relu", "t"),
                                      else_branch=branch("Neg", "e"))], out="o")


def _fp16_model() -> onnx.ModelProto:
    return sr_model([helper.make_node("Cast", ["c"], ["h"], to=TensorProto.FLOAT16),
                     helper.make_node("Relu", ["h"], ["r"]),
                     helper.make_node("Cast", ["r"], ["o"], to=TensorProto.FLOAT)], out="o")


@pytest.mark.parametrize("make, missing", [
    (_if_model, "If"),
    (_fp16_model, "Cast"),
])
def test_inspect_names_what_attribute_refuses(make, missing: str, files, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(make(), str(path))
    report = json.loads(invoke("inspect", path, "--json").stdout)
    assert missing in report["unsupported_ops"]
    assert_one_line(invoke("attribute", path, files["lr"], "--window", 4, 4, "--size", 8, "--steps", 2,
                           "--out", tmp_path / "o"), "no gradient rule", missing)


# ------------------------------------------------------------------- sizes, windows, paths

def test_fixed_size_model_says_the_size_it_takes(tmp_path: Path) -> None:
    path = tmp_path / "fixed.onnx"
    onnx.save(sr_model(fixed=True), str(path))
    image = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 11, 3), np.uint8) + 90).save(image)
    assert_one_line(invoke("attribute", path, image, "--window", 2, 2, "--size", 4, "--out", tmp_path / "o"),
                    f"takes only {LR}x{LR} images", "the image is 10x11", "lam-trt export CHECKPOINT --lr-size 10x11")


def test_window_larger_than_the_output(files, tmp_path: Path) -> None:
    line = assert_one_line(invoke("attribute", files["model"], files["lr"], "--window", 0, 0, "--size", 30,
                                  "--out", tmp_path / "o"), "window size 30 is larger than the SR output 24x24")
    assert "<= -" not in line


def test_zero_blur_is_refused(files, tmp_path: Path) -> None:
    for option in (["--sigma", 0], ["--kernel-size", 1]):
        assert_one_line(invoke(*commands(files)["attribute"], *option, "--out", tmp_path / "o"),
                        "the blurred baseline is the image itself")


def test_float_window_coordinates_are_refused(files) -> None:
    from lam_trt.attributor import Attributor

    attributor = Attributor(files["model"], provider="cpu")
    for window, size in (((4.5, 4), 8), ((4, 4), 8.0), ((True, 4), 8)):
        with pytest.raises(InputError, match="must be integers"):
            attributor.attribute(files["lr"], window=window, size=size, steps=2)
    attributor.attribute(files["lr"], window=(np.int64(4), 4), size=8, steps=2)


# ------------------------------------------------------------------------------ memory

def _item_bytes(files: dict[str, Path]) -> int:
    from lam_trt.export import build_attribution_graph

    graph = build_attribution_graph(str(files["model"]), (3, LR, LR))
    meta = {p.key: p.value for p in graph.metadata_props}
    return 2 * int(meta["lam_trt.activation_bytes_per_item"])


def test_an_image_that_cannot_fit_is_refused_with_what_it_needs(files, tmp_path: Path) -> None:
    result = invoke(*commands(files)["attribute"], "--out", tmp_path / "o", env={"LAM_TRT_MEMORY": "1k"})
    assert_one_line(result, f"one path image of {LR}x{LR} pixels needs about", "crop the image")
    assert not (tmp_path / "o").exists()


def test_a_batch_size_beyond_memory_is_warned(files, tmp_path: Path) -> None:
    limit = 3 * _item_bytes(files)
    result = invoke(*commands(files)["attribute"], "--batch-size", 16, "--out", tmp_path / "o",
                    env={"LAM_TRT_MEMORY": str(limit)})
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: --batch-size 16 needs")]
    assert len(warned) == 1 and "leave --batch-size out" in warned[0]
    assert json.loads((tmp_path / "o" / "result.json").read_text())["runtime"]["batch_size"] == 16


def test_memory_limit_must_be_a_size(files, tmp_path: Path) -> None:
    result = invoke(*commands(files)["attribute"], "--out", tmp_path / "o", env={"LAM_TRT_MEMORY": "lots"})
    assert_one_line(result, "LAM_TRT_MEMORY='lots' is not a size")


def test_onnx_runtime_allocation_failure_is_one_line() -> None:
    import onnxruntime as ort

    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["s"], ["y"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))],
        "big", [helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
                                   .SerializeToString(), options, providers=["CPUExecutionProvider"])
    with pytest.raises(Exception) as caught:
        session.run(None, {"s": np.array([1 << 24, 1 << 24], np.int64)})  # 1 PiB
    message, code = user_message(caught.value)
    assert code == 2 and message.startswith("out of memory: ONNX Runtime could not allocate memory")


@pytest.mark.parametrize("error, said", [
    (MemoryError("Unable to allocate 73.2 GiB for an array with shape (100000, 3, 256, 256)"),
     "out of memory: Unable to allocate 73.2 GiB"),
    (OSError(errno.EROFS, "Read-only file system", "/cache/x"), "Read-only file system: /cache/x"),
])
def test_environment_errors_anywhere_are_one_line(error: BaseException, said: str, files, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("lam_trt.attributor.Attributor.attribute", fail)
    assert_one_line(invoke(*commands(files)["attribute"], "--out", tmp_path / "o"), said)


def test_a_bug_keeps_its_traceback(files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("lam_trt.attributor.Attributor.attribute", bug)
    result = invoke(*commands(files)["attribute"], "--out", tmp_path / "o")
    assert result.exit_code == 1 and isinstance(result.exception, ZeroDivisionError)


# ------------------------------------------------------------------ what stderr may hold

def test_error_lines_have_no_colour_even_when_forced(files, tmp_path: Path) -> None:
    result = invoke("attribute", files["lr"], files["model"], "--window", 0, 0,
                    env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert_one_line(result, "MODEL comes first")


def test_a_damaged_batch_results_row_is_one_line(files, tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = commands(files)["batch"]
    assert invoke(*args, "--out", out).exit_code == 0
    results = out / "results.csv"
    header, row, *rest = results.read_text().splitlines()
    cells = row.split(",")
    cells[[i for i, name in enumerate(header.split(",")) if name == "window_x"][0]] = "x?"
    results.write_text("\n".join([header, ",".join(cells), *rest]) + "\n")
    assert_one_line(invoke(*args, "--out", out), "results.csv, row 2: a number column holds text; the file is damaged")


def test_a_large_image_whose_forward_pass_cannot_fit_is_refused_first(files, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.fromarray(np.full((1024, 1100, 3), 90, np.uint8)).save(big)
    # the x2 output alone is 3 x 2048 x 2200 floats = 52 MiB
    result = invoke("attribute", files["model"], big, "--window", 4, 4, "--out", tmp_path / "o",
                    env={"LAM_TRT_MEMORY": "40M"})
    assert_one_line(result, "forward pass on a 1024x1100 image needs at least", "crop the image")


@pytest.mark.parametrize("args, said", [
    (["--window", 1, 1, "--steps", "abc"], "Invalid value for '--steps'"),
    (["--size", "big"], "Invalid value for '--size'"),
])
def test_a_bad_option_is_one_line_too(args: list[object], said: str, files) -> None:
    assert_one_line(invoke("attribute", files["model"], files["lr"], *args), said, "lam-trt attribute --help")


def test_numpy_floating_point_warnings_are_not_printed(files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0/0 inside a command (the metrics of a degenerate window) is reported by lam-trt, not by NumPy."""
    import lam_trt.metrics

    gini = lam_trt.metrics.gini

    def gini_of_nothing(saliency):
        np.float64(0.0) / np.float64(0.0)  # what a flat window's normalisation does
        return gini(saliency)

    monkeypatch.setattr("lam_trt.metrics.gini", gini_of_nothing)
    with warnings.catch_warnings(record=True) as shown:  # what Python would print on stderr
        warnings.simplefilter("always")
        result = invoke(*commands(files)["attribute"], "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert not [w for w in shown if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in shown]
