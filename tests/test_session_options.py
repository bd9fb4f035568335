"""lam_trt.providers: the settings every lam-trt session runs with, and which providers count as there.

The memory they save is measured by bench/bench_memory.py (not by a test): ONNX Runtime's memory
pattern, planned after a first run, is allocated beside the arena that run filled (about twice the
memory from the second chunk on), and its default order runs a reverse pass's Shape(x) late,
keeping the forward tensor x alive until then.
"""
from __future__ import annotations

import onnxruntime as ort
import pytest

from lam_trt import providers
from lam_trt.errors import ProviderError
from lam_trt.providers import session_options


def test_no_memory_pattern_and_shapes_read_early():
    opts = session_options(2)
    assert opts.enable_mem_pattern is False
    assert opts.execution_order == ort.ExecutionOrder.PRIORITY_BASED
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.set_denormal_as_zero") == "1"


@pytest.fixture
def fake_gpu_wheel(tmp_path, monkeypatch):
    """onnxruntime as the onnxruntime-gpu wheel looks where TensorRT's libraries are missing: it
    lists TensorRT, and its TensorRT provider library does not load."""
    import onnxruntime as ort

    capi = tmp_path / "onnxruntime" / "capi"
    capi.mkdir(parents=True)
    (capi / "libonnxruntime_providers_tensorrt.so").write_bytes(b"not a shared library")
    monkeypatch.setattr(ort, "__file__", str(tmp_path / "onnxruntime" / "__init__.py"))
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    providers.tensorrt_unusable.cache_clear()
    yield
    providers.tensorrt_unusable.cache_clear()


def test_tensorrt_that_cannot_load_is_not_available(fake_gpu_wheel):
    # ONNX Runtime would otherwise fall back to CUDA with its default options, dropping lam-trt's.
    assert providers.available() == ["cuda", "cpu"]
    assert providers.resolve("auto") == "cuda"
    with pytest.raises(ProviderError, match="TensorRT libraries cannot be loaded.*use --provider cuda"):
        providers.resolve("tensorrt")
