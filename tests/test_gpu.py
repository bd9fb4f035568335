"""The GPU path (CUDA/TensorRT providers, CuPy path kernel, IOBinding) against the CPU path.

Runs only where CuPy sees a GPU and onnxruntime-gpu is installed (`pytest -m gpu`); elsewhere every
test is skipped with the reason.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import lam_trt
from lam_trt.kernels import cuda_available
from lam_trt.providers import available
from nets import NETS, export_onnx, seeded

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("shared_graph_cache")]
CUDA_OK, CUDA_WHY = cuda_available()
HAS_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()
HAS_TRT_EP = "tensorrt" in available()  # listed and loadable
needs_gpu = pytest.mark.skipif(not (CUDA_OK and HAS_CUDA_EP),
                               reason=CUDA_WHY if not CUDA_OK else "onnxruntime has no CUDAExecutionProvider")


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_onnx(seeded(NETS["ResidualCA"], scale=4), (3, 16, 16), tmp_path_factory.mktemp("gpu") / "m.onnx")


def image() -> np.ndarray:
    return np.random.default_rng(0).random((3, 16, 16), dtype=np.float32)


@needs_gpu
@pytest.mark.parametrize("rule", ["right", "trapezoid"])
def test_cuda_provider_matches_cpu(model, rule):
    cpu = lam_trt.Attributor(model, provider="cpu").attribute(image(), window=(20, 24), steps=20, rule=rule)
    gpu = lam_trt.Attributor(model, provider="cuda").attribute(image(), window=(20, 24), steps=20, rule=rule)
    assert gpu.meta["runtime"]["path_generator"] == "cuda"
    assert gpu.meta["runtime"]["providers_used"][0] == "CUDAExecutionProvider"
    assert rel_l2(gpu.attribution, cpu.attribution) < 1e-4
    assert np.allclose(gpu.detector_path, cpu.detector_path, rtol=1e-4)


@needs_gpu
def test_cuda_provider_with_a_ragged_path_matches_cpu(model):
    # 20 path images in runs of 7: the device runner pads the last run to 7 (device.uniform_chunks)
    cpu = lam_trt.Attributor(model, provider="cpu").attribute(image(), window=(20, 24), steps=20)
    gpu = lam_trt.Attributor(model, provider="cuda", internal_batch_size=7).attribute(image(), window=(20, 24), steps=20)
    assert gpu.meta["runtime"]["chunks"] == 3
    assert gpu.detector_path.shape == cpu.detector_path.shape
    assert rel_l2(gpu.attribution, cpu.attribution) < 1e-4
    assert np.allclose(gpu.detector_path, cpu.detector_path, rtol=1e-4)


@needs_gpu
def test_cuda_provider_other_methods_upload_the_host_path(model):
    cpu = lam_trt.Attributor(model, provider="cpu").attribute(image(), window=(20, 24), steps=8, method="ig")
    gpu = lam_trt.Attributor(model, provider="cuda").attribute(image(), window=(20, 24), steps=8, method="ig")
    assert gpu.meta["runtime"]["path_generator"] == "numpy"
    assert rel_l2(gpu.attribution, cpu.attribution) < 1e-4


@needs_gpu
@pytest.mark.skipif(not HAS_TRT_EP, reason="onnxruntime has no TensorrtExecutionProvider")
def test_tensorrt_provider_matches_cpu(model):
    cpu = lam_trt.Attributor(model, provider="cpu").attribute(image(), window=(20, 24), steps=20)
    trt = lam_trt.Attributor(model, provider="tensorrt").attribute(image(), window=(20, 24), steps=20)
    assert rel_l2(trt.attribution, cpu.attribution) < 1e-3  # TensorRT may pick TF32 tactics


def test_missing_gpu_provider_is_refused_clearly(model):
    if HAS_CUDA_EP:
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(lam_trt.ProviderError, match="cuda"):
        lam_trt.Attributor(model, provider="cuda").attribute(image(), window=(20, 24), steps=2)
