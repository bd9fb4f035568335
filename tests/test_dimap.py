"""lam-trt dimap: the DI of every window of a grid, in one run, against one window at a time."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

import lam_trt
from lam_trt.cli import app
from lam_trt.dimap import diffusion_map, grid_positions, lr_texture
from lam_trt.errors import InputError
from nets import NETS, export_onnx, lr_image, seeded


pytestmark = pytest.mark.usefixtures("shared_graph_cache")  # one graph cache for the session


def test_grid_positions_cover_the_detector_map():
    assert grid_positions(20, 6, 6) == [0, 6, 12, 13]  # the last window ends at pixel 18, before the edge
    assert grid_positions(20, 6, 13) == [0, 13]
    assert grid_positions(8, 7, 3) == [0]
    with pytest.raises(InputError, match="no room for a 8-pixel window"):
        grid_positions(8, 8, 4)


def test_texture_is_the_gradient_energy_of_the_lr_patch():
    ramp = np.tile(np.arange(8, dtype=np.float32) * 0.1, (3, 8, 1))  # dx = 0.1, dy = 0 everywhere
    assert lr_texture(ramp, (4, 4, 4), 2) == pytest.approx(0.01)
    assert lr_texture(np.full((3, 8, 8), 0.5, np.float32), (0, 0, 4), 2) == 0.0


def test_dimap_equals_one_window_at_a_time(tmp_path):
    source = export_onnx(seeded(NETS["ResidualCA"]), (3, 10, 10), tmp_path / "model.onnx")
    attributor = lam_trt.Attributor(source, provider="cpu")
    result = diffusion_map(attributor, lr_image(10, 10), size=6, stride=7, steps=6, rule="trapezoid")
    assert (result.xs, result.ys) == ([0, 7, 13], [0, 7, 13]) and len(result.rows) == 9
    for row in result.rows[::4]:
        single = attributor.attribute(lr_image(10, 10), window=(row["x"], row["y"]), size=6, steps=6, rule="trapezoid")
        assert row["diffusion_index"] == pytest.approx(single.diffusion_index, abs=1e-5)
        assert row["completeness_gap"] == pytest.approx(single.completeness_gap, rel=1e-4, abs=1e-6)
    di = np.array([r["diffusion_index"] for r in result.rows])
    texture = np.array([r["texture"] for r in result.rows])
    ranks = np.corrcoef(stats.rankdata(di), stats.rankdata(texture))[0, 1]  # Spearman = Pearson of ranks
    assert result.correlation["rho"] == pytest.approx(ranks, abs=1e-9) and result.correlation["windows"] == 9
    assert np.array_equal(result.grid(), di.reshape(3, 3))


def test_cli_dimap_writes_the_map_and_the_table(tmp_path):
    source = export_onnx(seeded(NETS["TinyRRDB"]), (3, 10, 10), tmp_path / "model.onnx")
    image = tmp_path / "lr.png"
    Image.fromarray((lr_image(10, 10).transpose(1, 2, 0) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["dimap", str(source), str(image), "--size", "6", "--stride", "7", "--steps", "4",
                                   "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["windows"] == 9 and summary["grid"] == {"columns": 3, "rows": 3}
    assert sorted(p.name for p in out.iterdir()) == ["di_vs_texture.png", "dimap.csv", "dimap.json", "dimap.png"]
    lines = (out / "dimap.csv").read_text().splitlines()
    assert len(lines) == 10 and lines[0].startswith("x,y,size,texture,diffusion_index,gini,completeness_gap")


@pytest.mark.parametrize("args, message", [(["--stride", "0"], "--stride must be an integer >= 1"),
                                           (["--size", "40"], "no room for a 40-pixel window")])
def test_cli_dimap_bad_input_exits_2_and_writes_nothing(args, message, tmp_path):
    source = export_onnx(seeded(NETS["TinyRRDB"]), (3, 10, 10), tmp_path / "model.onnx")
    image = tmp_path / "lr.png"
    Image.fromarray((lr_image(10, 10).transpose(1, 2, 0) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["dimap", str(source), str(image), "--steps", "2", "--out", str(out), *args])
    assert res.exit_code == 2 and message in res.stderr and not out.exists()
