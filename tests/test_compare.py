"""lam-trt compare: used pixels, the area of interest, the figures, the table and the CLI."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lam_trt.attributor import Attributor
from lam_trt.cli import app
from lam_trt.compare import (COMMON_COLOUR, LARGER_COLOUR, ModelRun, area_of_interest, area_picture,
                             compare_models, model_names, used_pixels, write_comparison)
from lam_trt.errors import InputError
from lam_trt.metrics import diffusion_index
from test_batch import export_tiny, write_images

STEPS = 6
WINDOW = (6, 8)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Two x2 models with different weights, one x3 model, one 20x20 image; a shared graph cache."""
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAM_TRT_CACHE", str(root / "cache"))
        write_images(root, {"lr.png": (200, 200, 20)}, bad=False)
        yield SimpleNamespace(root=root, image=root / "lr.png",
                              narrow=export_tiny(root / "narrow.onnx", width=4, seed=1),
                              wide=export_tiny(root / "wide.onnx", width=12, seed=2),
                              x3=export_tiny(root / "x3.onnx", scale=3, seed=3))


def fake_run(name: str, saliency: np.ndarray) -> ModelRun:
    saliency = np.asarray(saliency, dtype=np.float32)
    result = SimpleNamespace(saliency=saliency, diffusion_index=diffusion_index(saliency))
    return ModelRun(name, f"{name}.onnx", "0" * 64, result)  # type: ignore[arg-type]


def test_used_pixels_hold_the_mass_with_the_fewest_pixels():
    values = np.array([[4.0, 3.0], [2.0, 1.0]])
    assert used_pixels(values, 0.5).tolist() == [[True, True], [False, False]]   # 7 of 10 >= 5
    assert used_pixels(values, 0.4).tolist() == [[True, False], [False, False]]  # 4 of 10 >= 4
    assert used_pixels(values, 1.0).all()
    assert not used_pixels(np.zeros((3, 3))).any()
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = rng.random((7, 9)) ** 3
        mask = used_pixels(m, 0.5)
        assert m[mask].sum() >= 0.5 * m.sum()
        assert m[mask].sum() - m[mask].min() < 0.5 * m.sum()                     # none is spare


def test_area_of_interest_splits_models_by_di():
    base = np.zeros((6, 6))
    focused, medium, spread = base.copy(), base.copy(), base.copy()
    focused[2, 2] = 1.0                                      # DI smallest
    medium[2, 2], medium[2, 3], medium[3, 2] = 1.0, 0.9, 0.9
    spread[1:5, 1:5] = 0.5
    spread[2, 2] = 1.0                                       # DI largest
    runs = [fake_run("spread", spread), fake_run("focused", focused), fake_run("medium", medium)]
    area = area_of_interest(runs, mass=0.5)
    assert area.smaller == ["focused"] and area.larger == ["medium", "spread"]
    used = {name: set(zip(*np.nonzero(mask))) for name, mask in area.used.items()}
    assert set(zip(*np.nonzero(area.common))) == used["focused"] & used["medium"] & used["spread"] == {(2, 2)}
    assert set(zip(*np.nonzero(area.larger_only))) == (used["medium"] | used["spread"]) - used["focused"]
    picture = area_picture(np.full((3, 6, 6), 0.5, dtype=np.float32), area)
    assert (picture[2, 2] == COMMON_COLOUR).all()
    for y, x in zip(*np.nonzero(area.larger_only)):
        assert (picture[y, x] == LARGER_COLOUR).all()
    assert (picture[0, 0] == picture[0, 0, 0]).all()         # the rest stays gray


def test_model_names_are_unique():
    names = model_names(["a/net.onnx", "b/net.onnx", "c/other.onnx", "net.onnx"])
    assert names == ["net", "net-2", "other", "net-3"]


def test_compare_two_models(env, tmp_path):
    cmp = compare_models([env.narrow, env.wide], env.image, WINDOW, steps=STEPS)
    assert [r.name for r in cmp.runs] == ["narrow", "wide"]
    for run, model in zip(cmp.runs, (env.narrow, env.wide)):   # each LAM is the model's own
        alone = Attributor(model).attribute(env.image, window=WINDOW, steps=STEPS)
        assert run.di == pytest.approx(alone.diffusion_index, rel=1e-6)
        np.testing.assert_allclose(run.result.saliency, alone.saliency, atol=1e-6)
    summary = write_comparison(cmp, tmp_path / "out")
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["area_of_interest.png", "compare.json", "compare.png"]
    assert json.loads((tmp_path / "out" / "compare.json").read_text()) == {k: v for k, v in summary.items()
                                                                          if k != "files"}
    table = summary["models"]
    assert [row["model"] for row in table] == ["narrow", "wide"]
    assert sorted(row["rank_by_di"] for row in table) == [1, 2]
    lower = min(table, key=lambda row: row["diffusion_index"])
    assert lower["rank_by_di"] == 1 and summary["area_of_interest"]["smaller_di_models"] == [lower["model"]]
    assert all(row["pixels_used"] >= 1 and row["scale"] == 2 for row in table)
    area = summary["area_of_interest"]
    assert area["lr_pixels"] == 400 and 0 <= area["common_pixels"] <= min(r["pixels_used"] for r in table)
    for name in ("compare.png", "area_of_interest.png"):
        with Image.open(tmp_path / "out" / name) as png:
            assert png.format == "PNG" and min(png.size) >= 300


def test_models_of_other_scales_are_refused_before_any_work(env, tmp_path):
    with pytest.raises(InputError, match="differ in size.*x3 60x60"):
        compare_models([env.narrow, env.x3], env.image, WINDOW, steps=STEPS)
    result = CliRunner().invoke(app, ["compare", str(env.narrow), str(env.x3), str(env.image),
                                      "--window", "1", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "one scale" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,message", [
    (["{narrow}", "{image}", "--window", "1", "1"], "at least two models"),
    (["{narrow}", "{wide}", "{image}", "--window", "30", "1"], "outside the SR output"),
    (["{narrow}", "{wide}", "{image}", "--window", "1", "1", "--mass", "0"], "--mass"),
    (["{narrow}", "{wide}", "{root}/none.png", "--window", "1", "1"], "not found")])
def test_cli_bad_arguments(env, tmp_path, args, message):
    paths = {"narrow": env.narrow, "wide": env.wide, "image": env.image, "root": env.root}
    result = CliRunner().invoke(app, ["compare", *(a.format(**paths) for a in args), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_cli_prints_the_table_and_json(env, tmp_path):
    args = ["compare", str(env.narrow), str(env.wide), str(env.image), "--window", *map(str, WINDOW),
            "--steps", str(STEPS), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "narrow" in result.stdout and "wide" in result.stdout and "area of interest" in result.stdout
    as_json = CliRunner().invoke(app, [*args, "--json"])
    summary = json.loads(as_json.stdout)
    for row in summary["models"]:
        assert f"{row['diffusion_index']:.3f}" in result.stdout
    assert summary["window"] == {"x": WINDOW[0], "y": WINDOW[1], "size": 16}
    assert summary["parameters"]["steps"] == STEPS


def test_shared_scale_keeps_the_ratio_between_models():
    from lam_trt.compare import shared_maps

    base = np.zeros((3, 5, 5), np.float32)
    strong, weak = base.copy(), base.copy()
    strong[:, 2, 2], weak[:, 1, 1] = 2.0, 0.5
    maps = shared_maps([SimpleNamespace(attribution=strong), SimpleNamespace(attribution=weak)])
    assert maps[0].max() == 1.0 and maps[1].max() == pytest.approx(0.25)   # own max would make both 1
    assert not np.any(shared_maps([SimpleNamespace(attribution=base)])[0])


def test_figure_rows_zoom_and_hr(env, tmp_path):
    """compare.svg: the four rows, one colour bar, the zoomed region shared by the rows, the HR crop."""
    cmp = compare_models([env.narrow, env.wide], env.image, WINDOW, steps=STEPS)
    summary = write_comparison(cmp, tmp_path / "plain", figure="svg", dpi=72)
    svg = (tmp_path / "plain" / "compare.svg").read_text()
    for text in ("SR output", "LAM, shared scale", "LAM on input", "area of contribution",
                 "largest of all models", "smallest first"):
        assert text in svg, text
    assert "HR image" not in svg and sorted(summary["files"]) == ["area_of_interest.svg", "compare.json",
                                                                  "compare.svg"]
    for run in cmp.runs:
        run.result.hr_image = np.random.default_rng(0).random(run.result.sr_output.shape, dtype=np.float32)
    write_comparison(cmp, tmp_path / "hr", figure="svg")
    assert "HR image" in (tmp_path / "hr" / "compare.svg").read_text()


def test_cli_table_keeps_long_names_whole_and_explains_the_rank(env, tmp_path):
    long_name = tmp_path / ("a_rather_long_model_name_" + "x" * 60 + ".onnx")
    long_name.write_bytes(env.wide.read_bytes())
    result = CliRunner().invoke(app, ["compare", str(env.narrow), str(long_name), str(env.image), "--steps",
                                      str(STEPS), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert long_name.stem in result.stdout                       # on one line, not cut or folded
    assert "rank 1 = the smallest DI" in result.stdout
    stages = [line for line in result.stderr.splitlines() if line.startswith("lam-trt:")]
    assert len(stages) == 2 and all(f"{STEPS}/{STEPS}" in line for line in stages)


def test_figures_name_the_method(env, tmp_path):
    cmp = compare_models([env.narrow, env.wide], env.image, WINDOW, method="grad")
    write_comparison(cmp, tmp_path / "out", figure="svg")
    for name in ("compare.svg", "area_of_interest.svg"):
        svg = (tmp_path / "out" / name).read_text()
        assert "gradient" in svg and "LAM" not in svg, name
