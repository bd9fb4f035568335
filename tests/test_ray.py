"""lam-trt batch --ray: the same rows from Ray Data actors as from the local run, resume included."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from lam_trt.batch import BatchParams, ResultsLog, WindowSpec, plan_batch, run_batch
from lam_trt.cli import app
from lam_trt.scaleout import RAY_MISSING, actor_slots
from test_batch import Interrupt, export_tiny, keys, stop_after, write_images

STEPS = 4


def test_ray_missing_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    model = export_tiny(tmp_path / "tiny.onnx")
    images = write_images(tmp_path / "images", {"a.png": (100, 180, 16)}, bad=False)
    for flag in (["--ray"], ["--ray-address", "127.0.0.1:6379"]):
        result = CliRunner().invoke(app, ["batch", str(model), str(images), "--out", str(tmp_path / "out"), *flag])
        assert result.exit_code == 2 and result.output.strip() == f"error: {RAY_MISSING}"
    assert "lam-trt[ray]" in RAY_MISSING and not (tmp_path / "out").exists()


def test_one_actor_per_gpu_or_cpu_slot():
    assert actor_slots({"CPU": 8.0}, "auto", 100) == (8, {"num_cpus": 1})
    assert actor_slots({"CPU": 8.0, "GPU": 2.0}, "auto", 100) == (2, {"num_gpus": 1})
    assert actor_slots({"CPU": 8.0, "GPU": 2.0}, "cpu", 3) == (3, {"num_cpus": 1})
    assert actor_slots({"CPU": 8.0, "GPU": 4.0}, "cuda", 1) == (1, {"num_gpus": 1})


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    root = tmp_path_factory.mktemp("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAM_TRT_CACHE", str(root / "cache"))  # workers inherit it from this process
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield SimpleNamespace(root=root, model=export_tiny(root / "tiny.onnx"),
                                  images=write_images(root / "images", {"a.png": (100, 180, 16),
                                                                        "b.png": (200, 200, 20)}))
        finally:
            ray.shutdown()


def test_ray_rows_equal_local_rows_and_resume(ray_local, tmp_path):
    """A batch interrupted locally is finished on Ray: every row once, equal to a local run's."""
    env = ray_local
    params = BatchParams(WindowSpec.parse("center"), steps=STEPS)
    local, mixed = tmp_path / "local", tmp_path / "mixed"
    run_batch(plan_batch(env.model, [str(env.images)], local, params))
    with pytest.raises(Interrupt):
        run_batch(plan_batch(env.model, [str(env.images)], mixed, params), on_row=stop_after(1))

    result = CliRunner().invoke(app, ["batch", str(env.model), str(env.images), "--steps", str(STEPS),
                                      "--out", str(mixed), "--ray", "--allow-errors"])
    assert result.exit_code == 0, result.output
    assert "3 rows (2 measured, 0 degenerate, 1 errors; 2 new, 1 from an earlier run)" in result.stdout

    expected, rows = ResultsLog(local, "csv").read(), ResultsLog(mixed, "csv").read()
    assert keys(rows) == keys(expected) and len(set(keys(rows))) == 3
    for ours, theirs in zip(rows, expected):
        for column, value in theirs.items():
            if column == "seconds":
                continue
            if isinstance(value, float):
                assert ours[column] == pytest.approx(value, rel=1e-6, abs=1e-9), column
            else:
                assert ours[column] == value, column
