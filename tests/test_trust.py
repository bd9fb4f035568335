"""Numbers a QA gate can trust (issue 12): model identity with external data, the graph cache's
recovery, degenerate windows, structured warnings, the --hr scale check and result.json provenance.

Models are hand-built ONNX graphs (Conv, Relu, DepthToSpace): no torch export, a few ms each.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from lam_trt.errors import InputError
from lam_trt.attributor import Attributor
from lam_trt.cli import app

STEPS = 8


def sr_model(seed: int = 0, scale: int = 2, out_channels: int = 3, width: int = 6,
             nearest: bool = False) -> onnx.ModelProto:
    """conv 3x3 -> relu -> conv 3x3 -> DepthToSpace(scale): a tiny x``scale`` SR net, dynamic h, w.
    ``nearest``: the scale x scale sub-pixels of a block are equal, so a flat input gives a flat output."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.4, (width, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.4, (out_channels * scale * scale, width, 3, 3)).astype(np.float32)
    if nearest:
        w2 = np.repeat(w2[::scale * scale], scale * scale, axis=0)
    nodes = [helper.make_node("Conv", ["input", "w1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["o"], pads=[1, 1, 1, 1])]
    if scale > 1:
        nodes.append(helper.make_node("DepthToSpace", ["o"], ["output"], blocksize=scale, mode="CRD"))
    else:
        nodes.append(helper.make_node("Identity", ["o"], ["output"]))
    graph = helper.make_graph(
        nodes, "tiny_sr", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", out_channels, "H", "W"])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def save_external(model: onnx.ModelProto, path: Path) -> Path:
    """``path`` plus its weights in ``path.name + '.data'`` beside it."""
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=f"{path.name}.data", size_threshold=0)
    return path


def textured_image(size: int = 12, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((3, size, size)).astype(np.float32)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("LAM_TRT_CACHE", str(root))
    return root


def attribute(model, image, cache_dir, **kwargs):
    kwargs = {"window": (4, 4), "size": 8, "steps": STEPS, "rule": "trapezoid", **kwargs}
    return Attributor(model, provider="cpu", cache_dir=cache_dir).attribute(image, **kwargs)


# ------------------------------------------------------------------------- model identity

def test_changed_external_weights_are_a_new_model(tmp_path, cache):
    """The cache key and the reported sha256 cover the .data file: changed weights, new graph."""
    path = save_external(sr_model(seed=0), tmp_path / "model.onnx")
    first = attribute(path, textured_image(), cache)
    data = path.with_name("model.onnx.data")
    weights = np.frombuffer(data.read_bytes(), np.float32)
    data.write_bytes(np.random.default_rng(5).permutation(weights).tobytes())  # the .onnx is unchanged
    second = attribute(path, textured_image(), cache)
    fresh = attribute(path, textured_image(), tmp_path / "fresh-cache")
    assert second.meta["model"]["sha256"] != first.meta["model"]["sha256"]
    assert second.meta["runtime"]["graph_cache_hit"] is False
    assert second.meta["model"]["external_data"] == ["model.onnx.data"]
    np.testing.assert_allclose(second.attribution, fresh.attribution, rtol=1e-5, atol=1e-7)
    assert not np.allclose(second.attribution, first.attribution)
    assert abs(second.completeness_gap_relative) < 0.2         # the old weights' map would miss by far


def test_model_sha256_is_the_file_hash_without_external_data(tmp_path):
    from lam_trt.export.source import model_sha256

    path = tmp_path / "m.onnx"
    onnx.save(sr_model(), str(path))
    assert model_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------- degenerate windows, warnings

def codes(result) -> list[str]:
    return [w.code for w in result.warnings]


def half_flat_image(size: int = 16) -> np.ndarray:
    """Noise in the left quarter, a constant grey elsewhere."""
    img = np.full((3, size, size), 0.5, np.float32)
    img[:, :, :size // 4] = np.random.default_rng(3).random((3, size, size // 4))
    return img


@pytest.mark.parametrize("image,window", [
    (np.full((3, 12, 12), 0.5, np.float32), (4, 4)),      # a flat image: D(F(I)) = D(F(I')) = 0
    (half_flat_image(), (18, 18)),                         # a flat window in a textured image
])
def test_degenerate_windows_have_no_di(tmp_path, cache, image, window):
    model = tmp_path / "m.onnx"
    onnx.save(sr_model(nearest=True), str(model))
    result = attribute(model, image, cache, window=window)
    assert result.diffusion_index is None and result.gini is None
    assert "degenerate-window" in codes(result) and result.undefined_reason
    saved = result.to_dict()
    assert saved["diffusion_index"] is None and saved["gini"] is None and saved["undefined_reason"]


def test_a_textured_window_is_not_degenerate(tmp_path, cache):
    model = tmp_path / "m.onnx"
    onnx.save(sr_model(nearest=True), str(model))
    result = attribute(model, half_flat_image(), cache, window=(1, 10))
    assert result.diffusion_index is not None and 0 < result.diffusion_index < 100
    assert "degenerate-window" not in codes(result)


def test_zero_map_is_degenerate():
    from lam_trt import metrics

    assert "zero" in metrics.degenerate_reason(np.zeros((3, 4, 4), np.float32), 1.0, 4, 0.01)
    assert "zero" in metrics.degenerate_reason(np.full((3, 4, 4), 1e-9, np.float32), 1.0, 4, 0.01)
    assert metrics.degenerate_reason(np.ones((3, 4, 4), np.float32), 1.0, 4, 0.01) is None
    assert "featureless" in metrics.degenerate_reason(np.ones((3, 4, 4), np.float32), 1e-6, 4, 0.01)


def test_grad_has_no_gap_and_no_path_plot(tmp_path, cache):
    model = tmp_path / "m.onnx"
    onnx.save(sr_model(), str(model))
    for method in ("grad", "grad-x-input"):
        result = attribute(model, textured_image(), cache, method=method)
        assert result.completeness_gap is None and result.completeness_gap_relative is None
        assert codes(result) == ["no-path-integral"] and not result.path_integral
    saved = result.save(tmp_path / "out")
    assert saved["completeness_gap"] is None and not (tmp_path / "out" / "path.png").exists()
    assert (tmp_path / "out" / "lam.png").exists()


def test_completeness_gap_warning_threshold(tmp_path, cache):
    model = tmp_path / "m.onnx"
    onnx.save(sr_model(), str(model))
    coarse = attribute(model, textured_image(), cache, steps=1, rule="right")
    assert abs(coarse.completeness_gap_relative) > 0.05 and "completeness-gap" in codes(coarse)
    allowed = attribute(model, textured_image(), cache, steps=1, rule="right", gap_warning=1e6)
    assert "completeness-gap" not in codes(allowed)


def test_nothing_to_attribute_when_the_baseline_is_the_input(tmp_path, cache):
    model = tmp_path / "m.onnx"
    onnx.save(sr_model(), str(model))
    img = textured_image()
    result = attribute(model, img, cache, method="ig", baselines=img)
    assert "nothing-to-attribute" in codes(result) and result.completeness_gap_relative is None


@pytest.mark.parametrize("kwargs,expected", [({"out_channels": 5}, "5x24x24"), ({"scale": 1}, "3x12x12")])
def test_output_that_is_not_an_sr_image_is_said_once(tmp_path, cache, kwargs, expected):
    model = tmp_path / "m.onnx"
    onnx.save(sr_model(**kwargs), str(model))
    result = attribute(model, textured_image(), cache, window=(2, 2))
    found = [w for w in result.warnings if w.code == "output-not-sr-image"]
    assert len(found) == 1 and expected in found[0].message
    plain = tmp_path / "plain.onnx"
    onnx.save(sr_model(), str(plain))
    assert "output-not-sr-image" not in codes(attribute(plain, textured_image(), cache))


# ------------------------------------------------------------------------------- --hr and scale

def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def x2_files(tmp_path) -> dict[str, Path]:
    model = tmp_path / "x2.onnx"
    onnx.save(sr_model(), str(model))
    rng = np.random.default_rng(0)
    hr = tmp_path / "hr.png"
    Image.fromarray((rng.random((25, 26, 3)) * 255).astype(np.uint8)).save(hr)
    grey = tmp_path / "grey.png"
    Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8), "L").save(grey)
    rgba = tmp_path / "rgba.png"
    Image.fromarray((rng.random((12, 12, 4)) * 255).astype(np.uint8), "RGBA").save(rgba)
    return {"model": model, "hr": hr, "grey": grey, "rgba": rgba}


def test_hr_scale_comes_from_the_model_and_is_recorded(x2_files, cache):
    result = attribute(x2_files["model"], x2_files["hr"], cache, hr=True)
    step = result.meta["input"]["conversions"][-1]
    assert step["step"] == "HR downscale" and step["scale"] == 2 and step["scale_from"] == "the model"
    assert step["hr_size"] == [25, 26] and step["cropped_to"] == [24, 26] and step["lr_size"] == [12, 13]
    assert result.image.shape == (3, 12, 13) and result.hr_image.shape == (3, 24, 26)
    assert result.meta["input"]["pixels_sha256"] == hashlib.sha256(result.image.tobytes()).hexdigest()
    from lam_trt.images import hr_to_lr, load_image
    np.testing.assert_array_equal(result.image, hr_to_lr(load_image(x2_files["hr"], 3), 2))


def test_hr_with_the_wrong_scale_is_refused(x2_files, cache, tmp_path):
    out = tmp_path / "out"
    run = cli("attribute", x2_files["model"], x2_files["hr"], "--window", 10, 10, "--size", 8, "--steps", 2,
              "--hr", "--scale", 4, "--out", out)   # the window fits the x2 output, not the wrong x4 one
    assert run.exit_code == 2 and "--scale 4 does not match the model" in run.output and "2x" in run.output
    assert not out.exists()


# --------------------------------------------------------------------------------- result.json

def test_result_json_records_provenance_and_keeps_arrays_last(x2_files, cache, tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["attribute", x2_files["model"], x2_files["rgba"], "--window", 4, 4, "--size", 8, "--steps", 2,
            "--out", out]
    monkeypatch.setattr("sys.argv", ["/venv/bin/lam-trt", *map(str, args)])  # as a shell starts it
    run = cli(*args)
    assert run.exit_code == 0, run.output
    saved = json.loads((out / "result.json").read_text())
    assert list(saved)[-1] == "path" and list(saved)[:2] == ["command", "created"]
    assert saved["command"].startswith(f"lam-trt attribute {x2_files['model']} ")
    assert saved["created"].endswith("+00:00")
    source = saved["input"]
    assert source["path"] == str(x2_files["rgba"])
    assert source["sha256"] == hashlib.sha256(x2_files["rgba"].read_bytes()).hexdigest()
    assert [s["step"] for s in source["conversions"]] == ["alpha dropped"]


def test_grey_input_conversion_is_recorded(x2_files, cache):
    result = attribute(x2_files["model"], x2_files["grey"], cache)
    assert [s["step"] for s in result.meta["input"]["conversions"]] == ["gray -> RGB"]
    assert result.meta["input"]["source"]["mode"] == "L"


def test_print_shows_a_summary_and_save_writes_the_files(x2_files, cache, tmp_path):
    result = attribute(x2_files["model"], x2_files["grey"], cache, steps=1, rule="right")
    text, short = str(result), repr(result)
    assert "DI" in text and "completeness gap" in text and "[completeness-gap]" in text
    assert len(text) < 1000 and len(short) < 400 and "array(" not in text + short
    saved = result.save(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == sorted(
        ["attribution.npy", "result.json", "lam.png", "path.png"])
    assert saved["warnings"][0]["code"] == "completeness-gap"


def test_cli_says_each_warning_once_on_stderr(x2_files, cache, tmp_path):
    run = cli("attribute", x2_files["model"], x2_files["grey"], "--window", 4, 4, "--size", 8, "--steps", 1,
              "--out", tmp_path / "out")
    assert run.exit_code == 0, run.output
    lines = [line for line in run.stderr.splitlines() if "completeness-gap" in line]
    assert len(lines) == 1 and lines[0].startswith("warning:")
    quiet = cli("attribute", x2_files["model"], x2_files["grey"], "--window", 4, 4, "--size", 8, "--steps", 1,
                "--warn-gap", 100, "--out", tmp_path / "out2")
    assert "completeness-gap" not in quiet.stderr


# ---------------------------------------------------------------------------------- graph cache

def cache_entries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith("."))


@pytest.fixture
def model_path(tmp_path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(sr_model(), str(path))
    return path


@pytest.mark.parametrize("damage", [lambda p: p.write_bytes(b""), lambda p: p.write_bytes(p.read_bytes()[:-100])])
def test_a_truncated_cached_graph_is_rebuilt(model_path, cache, damage):
    first = attribute(model_path, textured_image(), cache)
    (entry,) = cache_entries(cache)
    damage(entry / "graph.onnx")
    again = attribute(model_path, textured_image(), cache)
    assert again.meta["runtime"]["graph_cache_hit"] is False
    np.testing.assert_allclose(again.attribution, first.attribution, rtol=1e-6)
    assert attribute(model_path, textured_image(), cache).meta["runtime"]["graph_cache_hit"] is True


def test_a_cached_graph_onnx_runtime_rejects_is_rebuilt(model_path, cache):
    first = attribute(model_path, textured_image(), cache)
    (entry,) = cache_entries(cache)
    graph = onnx.load(str(entry / "graph.onnx"))
    graph.graph.node[0].op_type = "NoSuchOp"          # same size on disk: only ONNX Runtime can tell
    (entry / "graph.onnx").write_bytes(graph.SerializeToString())
    again = attribute(model_path, textured_image(), cache)
    assert again.meta["runtime"]["graph_cache_hit"] is False
    np.testing.assert_allclose(again.attribution, first.attribution, rtol=1e-6)


def test_a_graph_onnx_runtime_rejects_is_never_cached(model_path, cache, monkeypatch):
    import lam_trt.attributor
    from lam_trt.errors import ModelError

    def refuse(*args, **kwargs):  # what ONNX Runtime raises for a graph it cannot load
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Load model failed\nmore detail")

    monkeypatch.setattr(lam_trt.attributor, "GraphRunner", refuse)
    with pytest.raises(ModelError, match="ONNX Runtime cannot load .* Load model failed$"):
        attribute(model_path, textured_image(), cache)
    assert cache_entries(cache) == []


@pytest.mark.parametrize("break_cache", ["not a folder", "full"])
def test_an_unusable_cache_runs_uncached_with_one_warning(model_path, tmp_path, monkeypatch, break_cache):
    root = tmp_path / "cache"
    if break_cache == "not a folder":
        root.write_text("a file where the cache folder should be")
    else:
        import lam_trt.cache

        real = lam_trt.cache.write_entry

        def full(graph, folder):  # the cache's disk is full; the system's temporary folder is not
            if root in folder.parents:
                raise OSError(28, "No space left on device")
            real(graph, folder)

        monkeypatch.setattr(lam_trt.cache, "write_entry", full)
    result = attribute(model_path, textured_image(), root)
    found = [w for w in result.warnings if w.code == "graph-cache-unavailable"]
    assert len(found) == 1 and str(root) in found[0].message
    assert result.diffusion_index is not None


def test_stale_hidden_build_folders_are_removed(model_path, cache):
    cache.mkdir()
    stale, fresh = cache / ".0123456789abcdef01234567.k3j2", cache / ".0123456789abcdef01234567.x9y8"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "graph.onnx").write_bytes(b"half")
    old = os.stat(stale).st_mtime - 2 * 3600
    os.utime(stale, (old, old))
    attribute(model_path, textured_image(), cache)
    assert not stale.exists() and fresh.exists()   # a fresh one may belong to a build still running


def test_stale_staging_folders_of_an_output_are_removed(tmp_path):
    from lam_trt.io import staged_dir

    from lam_trt.io import STAGING_SUFFIX, TEMP_PREFIX

    stale = tmp_path / f"{TEMP_PREFIX}abc123{STAGING_SUFFIX}"
    stale.mkdir()
    old = os.stat(stale).st_mtime - 2 * 3600
    os.utime(stale, (old, old))
    with staged_dir(tmp_path / "out") as stage:
        (stage / "a.txt").write_text("a")
    assert not stale.exists() and (tmp_path / "out" / "a.txt").exists()


def test_exit_codes_are_documented():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "**Exit codes**" in readme and "`1` a QA gate" in readme
    for args in (["--help"], ["batch", "--help"], ["attribute", "--help"]):
        text = " ".join(cli(*args).output.split())
        assert "Exit codes: 0" in text and "2 bad input" in text, args


@pytest.mark.parametrize("kwargs", [{"sigma": 0.0}, {"kernel_size": 1}])
def test_a_zero_path_never_gives_di_100(tmp_path, cache, kwargs):
    """A baseline equal to the image is refused up front (an all-zero map has no DI)."""
    model = tmp_path / "m.onnx"
    onnx.save(sr_model(), str(model))
    with pytest.raises(InputError, match="nothing to attribute"):
        attribute(model, textured_image(), cache, **kwargs)


def test_a_warm_attributor_reports_how_the_graph_was_got_each_time(tmp_path, cache):
    """The second window on a warm Attributor neither builds nor loads a graph: its result says so
    (not the first call's build time and cache miss)."""
    model = tmp_path / "m.onnx"
    onnx.save(sr_model(), str(model))
    attributor = Attributor(model, provider="cpu", cache_dir=cache)
    first, second = (attributor.attribute(textured_image(), window=(4, 4), size=8, steps=STEPS) for _ in range(2))
    assert first.meta["runtime"]["graph_source"] == "built" and not first.meta["runtime"]["graph_cache_hit"]
    assert second.meta["runtime"]["graph_source"] == "memory" and second.meta["runtime"]["graph_cache_hit"]
    assert second.meta["timings_seconds"]["graph"] == 0.0 and first.meta["timings_seconds"]["graph"] > 0.0
    fresh = Attributor(model, provider="cpu", cache_dir=cache).attribute(textured_image(), window=(4, 4), size=8,
                                                                        steps=STEPS)
    assert fresh.meta["runtime"]["graph_source"] == "disk cache"
