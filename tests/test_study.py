"""lam-trt study: BasicSR's Y-channel PSNR/SSIM against scikit-image, DI against `lam-trt attribute`,
resume, correlations, and each bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from typer.testing import CliRunner

from lam_trt.cli import app
from lam_trt.study import correlations, psnr_y, ssim_y
from nets import ResidualCA, export_onnx, seeded

STEPS = 4
SIZE = 8


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def reference_y(rgb: np.ndarray, border: int) -> np.ndarray:
    """BT.601 luma in 16..235 (BasicSR's to_y_channel, written out independently), border shaved."""
    rgb = rgb.astype(np.float64)
    y = 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
    return y[border:y.shape[0] - border, border:y.shape[1] - border]


@pytest.mark.parametrize("noise, border, shape", [(4, 4, (64, 72)), (20, 2, (48, 48)), (1, 0, (40, 56))])
def test_psnr_and_ssim_match_scikit_image_on_y(noise, border, shape):
    rng = np.random.default_rng(noise)
    hr = data.astronaut()[100:100 + shape[0], 150:150 + shape[1]]
    sr = np.clip(hr.astype(np.int16) + rng.integers(-noise, noise + 1, hr.shape), 0, 255).astype(np.uint8)
    y_sr, y_hr = reference_y(sr, border), reference_y(hr, border)
    assert psnr_y(sr, hr, border) == pytest.approx(peak_signal_noise_ratio(y_hr, y_sr, data_range=255), abs=1e-4)
    expected = structural_similarity(y_hr, y_sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255)
    assert ssim_y(sr, hr, border) == pytest.approx(expected, abs=1e-6)


def test_correlations_match_numpy_ranks():
    table = [{"di_mean": d, "psnr_y": p} for d, p in [(0.5, 24.0), (2.0, 25.5), (8.0, 25.1), (1.0, 24.2)]]
    corr = correlations(table + [{"di_mean": None, "psnr_y": 30.0}])
    di, psnr = np.array([[r["di_mean"], r["psnr_y"]] for r in table]).T
    assert corr["models"] == 4
    assert corr["pearson_log_di"]["r"] == pytest.approx(np.corrcoef(np.log10(di), psnr)[0, 1])
    assert corr["spearman"]["rho"] == pytest.approx(np.corrcoef(stats.rankdata(di), stats.rankdata(psnr))[0, 1])
    assert correlations(table[:2])["spearman"] is None


# ----------------------------------------------------------------------------------------- runs

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Two tiny x2 models, one x4, HR images (one not a multiple of 2, one too small, one broken)."""
    root = tmp_path_factory.mktemp("study")
    models = {name: export_onnx(seeded(ResidualCA, seed, nf=8, blocks=1, scale=scale), (3, 16, 16),
                                root / f"{name}.onnx")
              for name, seed, scale in (("a", 0, 2), ("b", 1, 2), ("x4", 0, 4))}
    images = root / "hr"
    images.mkdir()
    picture = data.astronaut()
    Image.fromarray(picture[200:240, 200:248]).save(images / "p.png")
    Image.fromarray(picture[100:141, 240:291]).save(images / "odd.png")   # 41 x 51: cropped to 40 x 50
    windows = root / "windows.csv"
    windows.write_text("x,y\n4,6\n20,10\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAM_TRT_CACHE", str(root / "cache"))
        yield type("Env", (), {"root": root, "models": models, "images": images, "windows": windows})


def study(env, out: Path, *models: str, hr=None, windows=None, extra=()):
    res = invoke("study", *(env.models[m] for m in models), "--hr", hr or env.images, "--scale", 2,
                 "--windows", windows or env.windows, "--size", SIZE, "--steps", STEPS, "--threads", 1,
                 "--out", out, "--json", *extra)
    return res


def rows(out: Path, timed: bool = True) -> list[dict]:
    """The rows on disk; without ``timed``, less their run time (which differs between two runs)."""
    found = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    return found if timed else [{k: v for k, v in r.items() if k != "seconds"} for r in found]


def test_study_di_equals_attribute_and_writes_every_output(env, tmp_path):
    out = tmp_path / "s"
    res = study(env, out, "a", "b")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert {r["model"] for r in result["table"]} == {"a", "b"}
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "di_by_model.png", "di_vs_psnr.png", "rows.jsonl", "study.csv", "study.json", "study.md", "study_run.json"]
    windows = [r for r in rows(out) if r["kind"] == "window" and r["model"] == "a"]
    assert len(windows) == 4 and not any(r["error"] for r in windows)
    for r in windows:
        single = tmp_path / f"single_{Path(r['image']).stem}_{r['window_x']}"
        got = invoke("attribute", env.models["a"], r["image"], "--hr", "--scale", 2, "--window", r["window_x"],
                     r["window_y"], "--size", SIZE, "--steps", STEPS, "--out", single, "--json")
        assert got.exit_code == 0, got.output
        assert r["diffusion_index"] == pytest.approx(
            json.loads((single / "result.json").read_text())["diffusion_index"], rel=1e-9)
    table = {r["model"]: r for r in result["table"]}
    di = [w["diffusion_index"] for w in windows]
    assert table["a"]["di_mean"] == pytest.approx(np.mean(di)) and table["a"]["di_std"] == pytest.approx(np.std(di))
    assert table["a"]["windows"] == 4 and table["a"]["images"] == 2 and table["a"]["parameters"] > 0


def test_hr_not_a_multiple_of_the_scale_is_cropped_and_said(env, tmp_path):
    from lam_trt.attributor import Attributor
    from lam_trt.images import hr_to_lr, load_image

    out = tmp_path / "s"
    res = study(env, out, "a")
    assert res.exit_code == 0 and "odd.png" in res.stderr and "cropped to 50x40" in res.stderr
    odd = next(r for r in rows(out) if r["kind"] == "image" and r["image"].endswith("odd.png"))
    assert "cropped to 50x40" in odd["note"]
    hr = load_image(env.images / "odd.png", 3)[:, :40, :50]
    sr = Attributor(env.models["a"]).forward(hr_to_lr(hr, 2)[None])[0]
    as_u8 = lambda chw: np.round(np.clip(chw, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)  # noqa: E731
    assert odd["psnr_y"] == pytest.approx(psnr_y(as_u8(sr), as_u8(hr), 2))
    assert "cropped to 50x40" in (out / "study.md").read_text()


def test_resume_keeps_rows_and_adds_a_model(env, tmp_path):
    out = tmp_path / "s"
    assert study(env, out, "a").exit_code == 0
    first = rows(out, timed=False)
    lines = (out / "rows.jsonl").read_text().splitlines(keepends=True)
    (out / "rows.jsonl").write_text("".join(lines[:3]) + lines[3][:10])  # killed while writing row 4
    res = study(env, out, "a", "b")
    assert res.exit_code == 0, res.output
    again = rows(out, timed=False)
    key = lambda r: (r["model"], r["kind"], r["image"], r.get("window_x"), r.get("window_y"))  # noqa: E731
    assert len({key(r) for r in again}) == len(again)                    # every row once
    assert again[:3] == first[:3]                                        # kept, not remeasured
    assert [r for r in again if r["model"] == "a"] == first               # redone identically
    assert json.loads(res.stdout)["kept_rows"] == 3
    assert study(env, out, "a", "b").exit_code == 0 and rows(out, timed=False) == again  # nothing left


def test_unreadable_image_and_no_room_for_a_window_are_rows(env, tmp_path):
    images = tmp_path / "hr"
    images.mkdir()
    Image.open(env.images / "p.png").save(images / "p.png")
    (images / "broken.png").write_bytes(b"not a PNG")
    Image.fromarray(data.astronaut()[:8, :8]).save(images / "small.png")   # SR 8x8: no 8-pixel window
    out = tmp_path / "s"
    res = study(env, out, "a", hr=images, windows="center")
    assert res.exit_code == 0, res.output
    by_image = {}
    for r in rows(out):
        by_image.setdefault(Path(r["image"]).name, []).append(r)
    assert [r["kind"] for r in by_image["broken.png"]] == ["image"] and by_image["broken.png"][0]["error"]
    image_row, window_row = by_image["small.png"]                       # SSIM needs 11x11 after the border
    assert "SSIM needs" in image_row["error"] and image_row["psnr_y"] is not None
    assert window_row["window_x"] is None and "no room" in window_row["error"]
    assert [r["error"] for r in by_image["p.png"]] == [None, None]
    assert json.loads(res.stdout)["table"][0]["errors"] == 3


@pytest.mark.parametrize("models, extra, message", [
    (("a", "x4"), (), "different scales"),
    (("x4",), (), "not --scale 2"),
    (("a",), ("--windows", "grid:0"), "grid:K"),
    (("a",), ("--steps", 0), "steps"),
])
def test_bad_arguments_are_one_line_exit_2_and_write_nothing(env, tmp_path, models, extra, message):
    out = tmp_path / "s"
    res = study(env, out, *models, extra=extra)
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_other_settings_in_the_same_folder_are_refused(env, tmp_path):
    out = tmp_path / "s"
    assert study(env, out, "a").exit_code == 0
    res = study(env, out, "a", extra=("--sigma", 2.0))
    assert res.exit_code == 2 and "other settings" in res.stderr


def test_training_repeats_exactly_and_writes_weights_onnx_and_settings(tmp_path):
    from safetensors.torch import load_file

    from lam_trt.export.train import main as train

    for run in ("one", "two"):
        train(["--arch", "fsrcnn", "--width", "8", "--depth", "1", "--option", "shrink=4", "--steps", "3",
               "--batch", "2", "--lr-size", "8", "--out", str(tmp_path / run)])
    one, two = (load_file(str(tmp_path / run / "fsrcnn.safetensors")) for run in ("one", "two"))
    assert one.keys() == two.keys() and all((one[k] == two[k]).all() for k in one)
    info = json.loads((tmp_path / "one" / "fsrcnn.json").read_text())
    assert info["steps"] == 3 and info["options"] == {"shrink": 4} and info["scale"] == 4
    assert info["parameters"] == sum(v.numel() for v in one.values())
    assert set(info["psnr_y_held_out_db"]) == {"model", "bicubic"} and info["onnx"]["max_rel_error"] < 1e-4
    assert (tmp_path / "one" / "fsrcnn.onnx").stat().st_size > 0
