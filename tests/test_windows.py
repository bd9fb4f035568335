"""Many windows in one run: the attribution graph's K windows against K single-window runs.

The forward pass runs once and the reverse pass on K x N items; every window's detector,
attribution and contribution must be what the same graph gives for that window alone (relative L2
< 1e-5), and the single-window numbers what autograd gives (an independent reference).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import onnx
import torch
from onnx import helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

import lam_trt
from lam_trt.cli import app
from lam_trt.errors import InputError
from lam_trt.export import build_attribution_graph
from lam_trt.export.batch_probe import probe_session
from lam_trt.export.window_probe import windows_limit
from lam_trt.many_windows import spec_windows
from nets import NETS, ResidualCA, export_onnx, lr_image, seeded
from test_batch_rewrite import PATTERNS, SHAPE, MixesTheBatch

pytestmark = pytest.mark.usefixtures("shared_graph_cache")  # one graph cache for the session
N = 3  # path images per run


def windows_for(out_hw: tuple[int, int]) -> np.ndarray:
    """(top, left, height, width): inside, overlapping, a duplicate, another size, both corners
    (the last one reaching the output's edge, where the detector drops the last row and column)."""
    h, w = out_hw
    return np.array([[2, 3, 6, 6], [4, 5, 6, 6], [2, 3, 6, 6], [1, h // 2, 3, 5], [0, 0, 4, 4],
                     [h - 1 - 5, w - 1 - 5, 5, 5], [h - 4, w - 4, 4, 4]], np.int64)


def run_windows(session, path: np.ndarray, weights: np.ndarray, windows: np.ndarray) -> list[np.ndarray]:
    return session.run(["detector", "attribution", "contribution"],
                       {"path": path, "weights": weights, "windows": np.asarray(windows, np.int64)})


def assert_windows_match_single_runs(harness, graph, path, weights, windows) -> None:
    session = harness.make_session(graph)
    d, a, c = run_windows(session, path, weights, windows)
    assert d.shape == (len(windows), len(path)) and c.shape == d.shape, (d.shape, c.shape)
    assert a.shape == (len(windows), *path.shape[1:]), a.shape
    for k, window in enumerate(windows):
        alone = harness.run_graph(session, path, weights, tuple(window))
        assert harness.rel_l2(a[k], alone.attribution) < 1e-5, f"window {k} {window.tolist()}: attribution"
        np.testing.assert_allclose(d[k], alone.detector, rtol=1e-5, err_msg=f"window {k}: detector")
        assert harness.rel_l2(c[k], alone.contribution) < 1e-5, f"window {k}: contribution"


@pytest.mark.parametrize("name", list(NETS))
def test_windows_equal_single_window_runs(name: str, tmp_path, harness):
    net = seeded(NETS[name])
    source = export_onnx(net, (3, 10, 12), tmp_path / f"{name}.onnx")
    path, weights = harness.random_batch(N, (3, 10, 12), seed=1)
    out_hw = harness.assert_source_matches_torch(source, net, path)
    graph = harness.build_graph(source, (3, 10, 12))
    # the reverse pass reads activations through broadcasting: only the detector copies (the SR image)
    assert [n.input[0] for n in graph.graph.node if n.op_type == "Tile" and n.name.endswith("__windows")] == ["sr"]
    windows = windows_for(out_hw)
    assert_windows_match_single_runs(harness, graph, path, weights, windows)
    for window in windows[[0, 3]]:  # and one window alone is what autograd gives
        run = harness.run_graph(harness.make_session(graph), path, weights, tuple(window))
        harness.assert_matches(run, harness.reference(net, path, weights, tuple(window)), 1e-4)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_windows_on_fixed_shape_channel_attention(dynamo: bool, tmp_path, harness):
    """Whole-image ops (global pooling) and batch 1 baked into the source's shape constants."""
    net = seeded(ResidualCA, seed=2)
    source = export_onnx(net, (3, 8, 8), tmp_path / "rcan_fixed.onnx", dynamic_hw=False,
                         dynamic_batch=dynamo, dynamo=dynamo)
    path, weights = harness.random_batch(N, (3, 8, 8), seed=3)
    out_hw = harness.assert_source_matches_torch(source, net, path)
    assert_windows_match_single_runs(harness, harness.build_graph(source, (3, 8, 8)), path, weights,
                                     windows_for(out_hw))


def test_one_window_is_the_single_window_graph(tmp_path, harness):
    """K = 1 through the windows input: the reference's numbers (autograd), as before."""
    net = seeded(NETS["TinyRRDB"])
    source = export_onnx(net, (3, 9, 9), tmp_path / "rrdb.onnx")
    path, weights = harness.random_batch(2, (3, 9, 9), seed=4)
    graph = harness.build_graph(source, (3, 9, 9))
    run = harness.run_graph(harness.make_session(graph), path, weights, (3, 2, 7, 5))
    harness.assert_matches(run, harness.reference(net, path, weights, (3, 2, 7, 5)), 1e-4)


# ---- batch rewrites at K x N items, and graphs that cannot run several windows ----------------------
@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.__name__)
def test_batch_rewrite_patterns_run_many_windows(pattern, tmp_path, harness):
    """Batch merged with windows or pixels, moved by Transpose, repeated constants: the reverse
    pass's tiled activations must follow each tensor's batch axis."""
    torch.manual_seed(0)
    net = pattern().eval()
    source = export_onnx(net, SHAPE, tmp_path / "net.onnx")
    graph = build_attribution_graph(str(source), SHAPE)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert "lam_trt.max_windows" not in meta, meta.get("lam_trt.windows_limit_reason")
    path, weights = harness.random_batch(N, SHAPE, seed=5)
    out_hw = harness.assert_source_matches_torch(source, net, path)
    assert_windows_match_single_runs(harness, graph, path, weights, windows_for(out_hw)[:4])


def test_graph_that_mixes_the_batch_runs_many_windows_of_one_path_image(tmp_path, harness):
    """A sum over the batch: path images run one at a time, but the windows of one path image are
    separate items of the reverse pass (each reads its own copy of the forward pass)."""
    torch.manual_seed(0)
    net = MixesTheBatch().eval()
    source = export_onnx(net, SHAPE, tmp_path / "mixes.onnx")
    graph = build_attribution_graph(str(source), SHAPE)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["lam_trt.max_batch"] == "1" and "lam_trt.max_windows" not in meta
    path, weights = harness.random_batch(1, SHAPE, seed=6)
    assert_windows_match_single_runs(harness, graph, path, weights, windows_for((8, 8))[:4])


def with_windows_reversed(graph: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with its attribution's windows in reverse order: right for one window only."""
    broken = onnx.ModelProto()
    broken.CopyFrom(graph)
    node = next(n for n in broken.graph.node if "attribution" in n.output)
    node.output[0] = "attribution_in_order"
    constants = [numpy_helper.from_array(np.array([v], np.int64), name)
                 for name, v in (("last", -1), ("before_first", -(1 << 62)), ("back", -1))]
    broken.graph.initializer.extend(constants)
    broken.graph.node.append(helper.make_node("Slice", ["attribution_in_order", "last", "before_first", "", "back"],
                                              ["attribution"]))
    return broken


def test_probe_finds_a_graph_that_mixes_windows(tmp_path):
    torch.manual_seed(0)
    source = export_onnx(seeded(NETS["ResidualCA"]), SHAPE, tmp_path / "rcan.onnx")
    graph = build_attribution_graph(str(source), SHAPE, check_batch=False)
    assert windows_limit(probe_session(graph), SHAPE, (3, 16, 16), 2) is None
    reason = windows_limit(probe_session(with_windows_reversed(graph)), SHAPE, (3, 16, 16), 2)
    assert reason and "attribution for two windows at once differs" in reason


# ---- the Python API: attribute(image, windows=[...]) -------------------------------------------------
def assert_same_results(many, single) -> None:
    assert many.window == single.window
    assert harness_rel_l2(many.attribution, single.attribution) < 1e-5
    assert many.diffusion_index == pytest.approx(single.diffusion_index, abs=1e-5)
    assert many.gini == pytest.approx(single.gini, abs=1e-5)
    np.testing.assert_allclose(many.detector_path, single.detector_path, rtol=1e-5)
    assert many.completeness_gap == pytest.approx(single.completeness_gap, rel=1e-4, abs=1e-6)


def harness_rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.float64(a) - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("name, crop", [("ResidualCA", "global"), ("TinyAttentionSR", "global"),
                                        ("BicubicResidualX2", "applied")])
def test_attribute_many_windows_equals_one_call_per_window(name: str, crop: str, tmp_path):
    """Whole-image networks (channel attention, self-attention: no crop) and a local one (cropped
    to the union of the windows' fields), against one call per window."""
    hw = (24, 24) if crop == "applied" else (12, 12)
    source = export_onnx(seeded(NETS[name]), (3, *hw), tmp_path / "model.onnx")
    img = lr_image(*hw)
    attributor = lam_trt.Attributor(source, provider="cpu")
    windows = [(2, 3), (9, 6), (2, 3), (4, 12)] if crop == "global" else [(4, 6), (12, 10), (8, 4)]
    many = attributor.attribute(img, windows=windows, size=6, steps=8, rule="trapezoid")
    assert isinstance(many, list) and len(many) == len(windows)
    assert many[0].meta["crop"]["applied"] == (crop == "applied")
    assert many[0].meta["runtime"]["windows"] == len(windows)
    for xy, result in zip(windows, many):
        assert_same_results(result, attributor.attribute(img, window=xy, size=6, steps=8, rule="trapezoid"))
    if crop == "applied":  # the union of the fields, still smaller than the image
        c = many[0].meta["crop"]
        assert c["height"] * c["width"] < hw[0] * hw[1]


def test_windows_of_a_graph_that_cannot_run_them_together_run_one_at_a_time(tmp_path, monkeypatch):
    """A graph marked lam_trt.max_windows = 1 runs its windows one per run: same numbers, a warning."""
    source = export_onnx(seeded(NETS["TinyRRDB"]), (3, 10, 10), tmp_path / "model.onnx")
    img = lr_image(10, 10)
    attributor = lam_trt.Attributor(source, provider="cpu")
    together = attributor.attribute(img, windows=[(2, 2), (8, 6)], size=6, steps=4)
    runner, _ = attributor.runner(img.shape)
    monkeypatch.setattr(runner, "windows_limit", "a test says so")
    apart = attributor.attribute(img, windows=[(2, 2), (8, 6)], size=6, steps=4)
    for a, b in zip(together, apart):
        assert harness_rel_l2(a.attribution, b.attribution) < 1e-5
        assert "batch-fallback" in b.warning_codes() and "batch-fallback" not in a.warning_codes()
    assert apart[0].meta["runtime"]["chunks"] == 2 * together[0].meta["runtime"]["chunks"]


def test_bad_windows_are_named(tmp_path):
    source = export_onnx(seeded(NETS["TinyRRDB"]), (3, 10, 10), tmp_path / "model.onnx")
    attributor = lam_trt.Attributor(source, provider="cpu")
    img = lr_image(10, 10)
    with pytest.raises(InputError, match=r"window 2 of 3: window x=15 y=0 size=6 is outside the SR output "
                                         r"20x20: need 0 <= x <= 13 and 0 <= y <= 13"):
        attributor.attribute(img, windows=[(0, 0), (15, 0), (1, 1)], size=6, steps=2)
    with pytest.raises(InputError, match="empty"):
        attributor.attribute(img, windows=[], size=6, steps=2)
    with pytest.raises(InputError, match="not both"):
        attributor.attribute(img, window=(0, 0), windows=[(1, 1)], size=6, steps=2)
    one = attributor.attribute(img, window=(3, 4), size=6, steps=2)
    assert not isinstance(one, list) and one.window == (3, 4, 6)


def test_output_shape_is_one_forward_pass_per_input_shape_and_builds_no_graph(tmp_path, monkeypatch):
    # windows are laid out on the SR output before any attribution (spec_windows, dimap, batch)
    source = export_onnx(seeded(NETS["TinyRRDB"]), (3, 10, 10), tmp_path / "model.onnx")
    attributor = lam_trt.Attributor(source, provider="cpu")
    img = lr_image(10, 12)
    expected = attributor.forward(img[None]).shape[1:]
    calls = []
    forward = attributor.forward
    monkeypatch.setattr(attributor, "forward", lambda images: calls.append(images.shape) or forward(images))
    assert attributor.output_shape(img.shape) == expected == (3, 20, 24)
    assert attributor.output_shape(img.shape) == expected and len(calls) == 1
    assert spec_windows(attributor, img, "grid:2", 6) and len(calls) == 1
    assert attributor.output_shape((3, 8, 8)) == (3, 16, 16) and len(calls) == 2
    assert not attributor._runners  # no attribution graph was built to learn a size


# ---- the CLI: attribute --windows ---------------------------------------------------------------------
def cli_files(tmp_path) -> tuple[Path, Path]:
    model = export_onnx(seeded(NETS["TinyRRDB"]), (3, 10, 10), tmp_path / "model.onnx")
    image = tmp_path / "lr.png"
    Image.fromarray((lr_image(10, 10).transpose(1, 2, 0) * 255).astype(np.uint8)).save(image)
    return model, image


def test_cli_attribute_windows_writes_a_folder_per_window_and_a_summary(tmp_path):
    model, image = cli_files(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["attribute", str(model), str(image), "--windows", "grid:2", "--size", "6",
                                   "--steps", "4", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["windows"] == 4 and [(r["x"], r["y"]) for r in summary["rows"]] == [(0, 0), (13, 0), (0, 13), (13, 13)]
    single = lam_trt.Attributor(model, provider="cpu").attribute(image, window=(13, 0), size=6, steps=4)
    row = summary["rows"][1]
    saved = json.loads((out / row["folder"] / "result.json").read_text())
    assert saved["window"] == {"x": 13, "y": 0, "size": 6}
    assert row["diffusion_index"] == pytest.approx(single.diffusion_index, abs=1e-5)
    assert harness_rel_l2(np.load(out / row["folder"] / "attribution.npy"), single.attribution) < 1e-5
    assert (out / "summary.csv").read_text().count("\n") == 5


@pytest.mark.parametrize("rows, message", [("x,y\n0,0\n15,2\n", "window 2 of 2: window x=15 y=2 size=6 is outside"),
                                           ("x,y\n", "the list of windows is empty")])
def test_cli_bad_windows_exit_2_and_write_nothing(rows: str, message: str, tmp_path):
    model, image = cli_files(tmp_path)
    (tmp_path / "w.csv").write_text(rows)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["attribute", str(model), str(image), "--windows", str(tmp_path / "w.csv"),
                                   "--size", "6", "--steps", "2", "--out", str(out)])
    assert res.exit_code == 2 and message in res.stderr and not out.exists()
    assert len(res.stderr.strip().splitlines()) == 1


# ---- the runner: windows in groups that fit memory, chunks that shrink with K ---------------------------
def test_runner_groups_windows_and_shrinks_chunks(tmp_path, harness):
    from lam_trt.export import save_attribution_graph
    from lam_trt.runner import GraphRunner

    source = export_onnx(seeded(NETS["TinyRRDB"]), (3, 8, 8), tmp_path / "model.onnx")
    save_attribution_graph(harness.build_graph(source, (3, 8, 8)), tmp_path / "graph.onnx")
    runner = GraphRunner(tmp_path / "graph.onnx", provider="cpu", batch_size=4)
    assert [runner.chunk_size(k) for k in (1, 2, 3, 7, 16)] == [4, 2, 2, 1, 1]
    assert runner.windows_per_run() == 7  # (1 + K) x one forward's activations within 2 x 4
    path, weights = harness.random_batch(5, (3, 8, 8), seed=7)
    windows = np.array([[k % 5, (2 * k) % 7, 4, 5] for k in range(9)], np.int64)
    ticks: list[int] = []
    out = runner.run(path, weights, windows, progress=ticks.append)
    assert out.detector.shape == (9, 5) and out.attribution.shape == (9, 3, 8, 8) and sum(ticks) == 5
    session = harness.make_session(tmp_path / "graph.onnx")
    for k in (0, 6, 7, 8):  # the first and last of each group
        alone = harness.run_graph(session, path, weights, tuple(windows[k]))
        assert harness.rel_l2(out.attribution[k], alone.attribution) < 1e-5
        np.testing.assert_allclose(out.detector[k], alone.detector, rtol=1e-5)


def test_runner_runs_windows_together_where_path_images_run_one_at_a_time(tmp_path, harness):
    """A graph that mixes its batch runs one path image per run, but all windows of it in that run
    (the probe checked windows on one path image), each as alone."""
    from lam_trt.export import save_attribution_graph
    from lam_trt.runner import GraphRunner

    torch.manual_seed(0)
    source = export_onnx(MixesTheBatch().eval(), SHAPE, tmp_path / "mixes.onnx")
    save_attribution_graph(build_attribution_graph(str(source), SHAPE), tmp_path / "graph.onnx")
    runner = GraphRunner(tmp_path / "graph.onnx", provider="cpu", batch_size=4)
    assert runner.batch_size == 1 and runner.windows_per_run() == 7
    path, weights = harness.random_batch(3, SHAPE, seed=8)
    windows = windows_for((8, 8))[:4]
    out = runner.run(path, weights, windows)
    assert out.chunks == 3  # one run per path image, every window in it
    session = harness.make_session(tmp_path / "graph.onnx")
    for k, window in enumerate(windows):
        alone = sum(harness.run_graph(session, path[n:n + 1], weights[n:n + 1], tuple(window)).attribution
                    for n in range(3))
        assert harness.rel_l2(out.attribution[k], alone) < 1e-5


# ---- receptive-field crops for several windows: one union, or one crop per region ------------------------
def test_group_windows_by_cost():
    from lam_trt.window import Window
    from lam_trt.window_groups import group_windows

    near = [Window(40, 40, 8), Window(41, 40, 8), Window(40, 42, 8)]
    assert group_windows((64, 64), near, 2, 2) == [[0, 1, 2]]  # one union, little larger than each crop
    apart = [Window(40, 40, 8), Window(48, 40, 8)]
    assert group_windows((64, 64), apart, 2, 2) == [[0], [1]]  # 11 x 15 LR px twice costs more than 11 x 11 alone
    corners = [Window(0, 0, 8), Window(110, 0, 8), Window(0, 110, 8), Window(110, 110, 8), Window(2, 4, 8)]
    groups = group_windows((64, 64), corners, 2, 2)
    assert sorted(map(sorted, groups)) == [[0, 4], [1], [2], [3]]  # the union would be the whole image
    assert group_windows((64, 64), corners, 2, "global") == [[0, 1, 2, 3, 4]]


def test_windows_far_apart_run_one_crop_per_region_exactly(tmp_path):
    source = export_onnx(seeded(NETS["BicubicResidualX2"]), (3, 40, 40), tmp_path / "local.onnx")
    img = lr_image(40, 40)
    attributor = lam_trt.Attributor(source, provider="cpu")
    windows = [(2, 2), (66, 4), (6, 66), (64, 64)]
    many = attributor.attribute(img, windows=windows, size=8, steps=6)
    crops = {tuple(r.meta["crop"][k] for k in ("top", "left", "height", "width")) for r in many}
    assert len(crops) == 4 and all(r.meta["crop"]["applied"] for r in many)
    for xy, result in zip(windows, many):
        assert_same_results(result, attributor.attribute(img, window=xy, size=8, steps=6, crop=False))
