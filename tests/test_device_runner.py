"""lam_trt.device.DeviceRunner's own logic on the CPU: padding to one batch, chunking, several
windows, and the fall-back to one path image per run, against GraphRunner on the same graph.

A NumPy-backed stand-in for CuPy gives device arrays whose pointers are host pointers, and a
stand-in for ONNX Runtime's IOBinding reads and writes those pointers around a real CPU session, so
every buffer DeviceRunner binds is checked by the graph itself (a wrong shape or pointer fails). The
CUDA provider and the kernels themselves are tested on a GPU (tests/test_gpu.py)."""
from __future__ import annotations

import ctypes
import sys
import types

import numpy as np
import pytest

from lam_trt.device import DeviceRunner
from lam_trt.export import build_attribution_graph
from lam_trt.export.attribution_graph import save_attribution_graph
from lam_trt.runner import GraphRunner
from nets import NETS, export_onnx, seeded


class DeviceArray(np.ndarray):
    """A NumPy array with CuPy's ``.data.ptr``."""

    @property
    def data(self):  # type: ignore[override]
        return types.SimpleNamespace(ptr=self.ctypes.data)


def _device(array: np.ndarray) -> DeviceArray:
    return np.ascontiguousarray(array).view(DeviceArray)


class FakeStream:
    ptr = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self) -> None:
        pass


def numpy_cupy() -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.float32, cupy.float64 = np.float32, np.float64
    cupy.asarray = lambda a, dtype=None: _device(np.asarray(a, dtype))
    cupy.empty = lambda shape, dtype: _device(np.empty(shape, dtype))
    cupy.zeros = lambda shape, dtype: _device(np.zeros(shape, dtype))
    cupy.concatenate = lambda arrays: _device(np.concatenate(arrays))
    cupy.repeat = lambda a, n, axis: _device(np.repeat(a, n, axis))
    cupy.asnumpy = lambda a: np.array(a)
    cupy.cuda = types.SimpleNamespace(Stream=lambda non_blocking=False: FakeStream(),
                                      Device=lambda: types.SimpleNamespace(id=0),
                                      runtime=types.SimpleNamespace(memGetInfo=lambda: (8 << 30, 16 << 30)))
    return cupy


def _host_view(ptr: int, shape: list[int], dtype) -> np.ndarray:
    ctype = {np.float32: ctypes.c_float}[dtype]
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctype)), tuple(shape))


class FakeBinding:
    def __init__(self) -> None:
        self.inputs: dict[str, np.ndarray] = {}
        self.outputs: dict[str, np.ndarray] = {}

    def bind_cpu_input(self, name: str, array: np.ndarray) -> None:
        self.inputs[name] = array

    def bind_input(self, name, device, device_id, dtype, shape, ptr) -> None:
        self.inputs[name] = _host_view(ptr, shape, dtype).copy()

    def bind_output(self, name, device, device_id, dtype, shape, ptr) -> None:
        self.outputs[name] = _host_view(ptr, shape, dtype)


class FakeSession:
    """ONNX Runtime's IOBinding around a real CPU session; ``fail_above`` makes batched runs fail."""

    def __init__(self, session, fail_above: int | None = None) -> None:
        self.session, self.fail_above, self.batches = session, fail_above, []

    def io_binding(self) -> FakeBinding:
        return FakeBinding()

    def run_with_iobinding(self, binding: FakeBinding) -> None:
        batch = len(binding.inputs["path"])
        self.batches.append(batch)
        if self.fail_above is not None and batch > self.fail_above:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : invalid expand shape")
        names = list(binding.outputs)
        for name, value in zip(names, self.session.run(names, binding.inputs)):
            out = binding.outputs[name]
            assert out.shape == value.shape, (name, out.shape, value.shape)  # ORT refuses a wrong buffer
            out[...] = value


@pytest.fixture(scope="module")
def graph_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("device-runner")
    model = export_onnx(seeded(NETS["TinyRRDB"]), (3, 10, 10), folder / "model.onnx")
    path = folder / "graph.onnx"
    save_attribution_graph(build_attribution_graph(str(model), (3, 10, 10)), path)
    return path


def device_runner(graph_path, monkeypatch, batch_size: int, fail_above: int | None = None) -> DeviceRunner:
    monkeypatch.setitem(sys.modules, "cupy", numpy_cupy())
    monkeypatch.setattr(DeviceRunner, "providers", lambda self, cache_dir: ["CPUExecutionProvider"])
    runner = DeviceRunner(graph_path, "cpu", batch_size=batch_size)  # a CPU session stands in for CUDA's
    runner.session = FakeSession(runner.session, fail_above)
    return runner


def path_and_windows(n: int, k: int):
    rng = np.random.default_rng(n + k)
    points, weights = rng.random((n, 3, 10, 10), np.float32), rng.standard_normal((n, 3, 10, 10)).astype(np.float32)
    windows = [(2 * i, 3, 6, 6) for i in range(k)]
    return points, weights, windows


def assert_same(device, host) -> None:
    assert device.detector.shape == host.detector.shape and device.contribution.shape == host.contribution.shape
    np.testing.assert_allclose(device.detector, host.detector, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(device.contribution, host.contribution, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(device.attribution, host.attribution, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("n, batch, k, runs", [(10, 4, 1, [4, 4, 4]), (9, 9, 1, [9]), (7, 3, 2, [2] * 4)])
def test_device_runner_pads_to_one_batch_and_matches_the_host_runner(graph_path, monkeypatch, n, batch, k, runs):
    points, weights, windows = path_and_windows(n, k)
    host = GraphRunner(graph_path, "cpu", batch_size=batch).run(points, weights, windows)
    runner = device_runner(graph_path, monkeypatch, batch)
    device = runner.run(points, weights, windows)
    assert runner.session.batches == runs  # the same batch every run (chunk_size shrinks for K windows)
    assert_same(device, host)


def test_device_runner_falls_back_to_one_path_image_per_run(graph_path, monkeypatch):
    points, weights, windows = path_and_windows(6, 1)
    host = GraphRunner(graph_path, "cpu", batch_size=1).run(points, weights, windows)
    runner = device_runner(graph_path, monkeypatch, 4, fail_above=1)
    device = runner.run(points, weights, windows)
    assert runner.session.batches == [3] + [1] * 6 and "invalid expand shape" in runner.batch_fallback
    assert_same(device, host)


@pytest.mark.parametrize("device_id", [0, 1])
def test_cuda_options_name_the_device_only_off_the_default(graph_path, monkeypatch, device_id):
    # ONNX Runtime 1.26+ warns at every session whose options name a device_id
    runner = device_runner(graph_path, monkeypatch, 2)
    runner.device_id = device_id
    monkeypatch.undo()  # the real provider list again (the stand-in CuPy is no longer needed)
    (name, options), cpu = DeviceRunner.providers(runner, None)
    assert name == "CUDAExecutionProvider" and cpu == "CPUExecutionProvider"
    assert options["use_tf32"] == 0 and options["user_compute_stream"] == str(runner.stream.ptr)
    assert options.get("device_id") == (device_id or None)
