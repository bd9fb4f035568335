"""``lam-trt bench`` on a tiny model: the JSON report has every key, with sane values (never timings)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lam_trt.bench import centre_window, parse_size
from lam_trt.cli import app
from lam_trt.errors import InputError
from lam_trt.export.torch_export import export_onnx
from lam_trt.export.zoo import build


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bench_cli") / "fsrcnn_tiny.onnx"
    export_onnx(build("fsrcnn", scale=2, width=8, depth=1), path, in_channels=3, size=(12, 12))
    return path


def invoke(*args: str, cache) -> object:
    return CliRunner().invoke(app, ["bench", *args], env={"LAM_TRT_CACHE": str(cache)})


def test_bench_json_report(tiny_model, tmp_path):
    result = invoke(str(tiny_model), "--lr-size", "12x14", "--steps", "4", "--repeats", "3", "--threads", "1",
                    "--batch-size", "3", "--no-crop", "--json", cache=tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("attributions_per_second", "path_images_per_second", "latency_seconds", "provider",
                "providers_used", "peak_rss_mib", "input_shape", "output_shape", "window", "steps",
                "path_points", "batch_size", "cold_start_seconds", "latencies_seconds", "completeness_gap_relative",
                "versions", "machine", "crop"):
        assert key in report, key
    assert report["provider"] == "cpu" and "CPUExecutionProvider" in report["providers_used"]
    assert report["input_shape"] == [3, 12, 14] and report["output_shape"] == [3, 24, 28]
    assert report["steps"] == report["path_points"] == 4 and report["batch_size"] == 3
    assert report["window"] == {"x": 6, "y": 4, "size": 16}
    assert len(report["latencies_seconds"]) == 3 and all(t > 0 for t in report["latencies_seconds"])
    lat = report["latency_seconds"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert report["attributions_per_second"] == pytest.approx(1 / lat["p50"])
    assert report["path_images_per_second"] > report["attributions_per_second"]
    assert report["peak_rss_mib"] > 0 and report["crop"]["applied"] is False
    assert np.isfinite(report["completeness_gap_relative"])


def test_bench_table_and_gauss_legendre(tiny_model, tmp_path):
    result = invoke(str(tiny_model), "--steps", "4", "--repeats", "1", "--warmup", "0", "--rule", "gauss-legendre",
                    "--lr-size", "12", cache=tmp_path)
    assert result.exit_code == 0, result.output
    assert "attributions / s" in result.stdout and "path images / s" in result.stdout


@pytest.mark.parametrize("args, message", [
    (("--lr-size", "12by12"), "HxW"),
    (("--rule", "simpson"), "quadrature rule"),
    (("--repeats", "0"), "repeats"),
    (("--provider", "nonsense"), "provider"),
])
def test_bench_rejects_bad_options_in_one_line(tiny_model, tmp_path, args, message):
    result = invoke(str(tiny_model), "--steps", "2", *args, cache=tmp_path)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_size_and_window_helpers():
    assert parse_size("64x48") == (64, 48) and parse_size("32") == (32, 32)
    with pytest.raises(InputError):
        parse_size("0x4")
    assert centre_window((256, 256), 16) == (120, 120)
    with pytest.raises(InputError):
        centre_window((16, 16), 16)
