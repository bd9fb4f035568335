"""kernels/blur_path.cu against the NumPy path (kernels/paths.py).

Without a GPU, three checks still run where the tools exist: nvcc compiles the .cu, NVRTC (the
compiler CuPy uses) compiles it, and the kernel's per-pixel function, run on the host through an
nvcc-built harness, reproduces the NumPy path. The launch itself is tested on a GPU (marker `gpu`).
"""
from __future__ import annotations

import ctypes
import glob
import shutil
import subprocess
import sysconfig
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from lam_trt.errors import ProviderError
from lam_trt.kernels import blur_path, blur_path_cuda, cuda_available
from lam_trt.kernels.paths import blur_kernel_table

CUDA_OK, CUDA_REASON = cuda_available()
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
needs_gpu = pytest.mark.skipif(not CUDA_OK, reason=CUDA_REASON)

# (shape, sigma, steps, kernel size): odd shapes, axes shorter than the kernel radius, sigma 0, l = 1.
CASES = [
    ((3, 16, 16), 1.2, 100, 9),
    ((1, 5, 3), 0.0, 4, 9),
    ((3, 37, 29), 3.0, 17, 15),
    ((2, 1, 7), 0.5, 1, 3),
    ((3, 2, 9), 2.0, 10, 1),
]
TOLERANCE = 1e-6  # documented in blur_path.cu: float64 sums on both sides, expected <= 1 float32 ulp


def cu_source() -> Path:
    return Path(str(resources.files("lam_trt.kernels").joinpath("blur_path.cu")))


def random_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_cuda_available_gives_a_reason():
    ok, reason = cuda_available()
    assert isinstance(ok, bool) and isinstance(reason, str) and reason and "\n" not in reason


@pytest.mark.skipif(CUDA_OK, reason="a GPU is available")
def test_cuda_path_without_gpu_is_a_provider_error():
    with pytest.raises(ProviderError, match="CUDA path generator cannot run"):
        blur_path_cuda(random_image((3, 8, 8)), 1.2, 10, 9)


@needs_nvcc
def test_cu_compiles_with_nvcc(tmp_path):
    subprocess.run([NVCC, "-c", str(cu_source()), "-o", str(tmp_path / "blur_path.o")], check=True,
                   capture_output=True, timeout=300)


def nvrtc_library() -> ctypes.CDLL | None:
    """libnvrtc from the CUDA toolkit or an nvidia-* wheel, with its builtins loaded first."""
    wheels = glob.glob(sysconfig.get_paths()["purelib"] + "/nvidia/*/lib")
    roots = ["/usr/local/cuda/lib64", "/usr/local/cuda/lib", *wheels]
    for root in roots:
        builtins = sorted(glob.glob(f"{root}/libnvrtc-builtins.so.*"))
        libs = sorted(p for p in glob.glob(f"{root}/libnvrtc.so*") if ".alt." not in p)
        if builtins and libs:
            ctypes.CDLL(builtins[0], mode=ctypes.RTLD_GLOBAL)  # libnvrtc dlopens it by name
            return ctypes.CDLL(libs[0])
    return None


def test_cu_compiles_with_nvrtc():
    lib = nvrtc_library()
    if lib is None:
        pytest.skip("libnvrtc not found")
    prog = ctypes.c_void_p()
    source = cu_source().read_bytes()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source, b"blur_path.cu", 0, None, None) == 0
    options = (ctypes.c_char_p * 1)(b"--gpu-architecture=compute_90")
    status = lib.nvrtcCompileProgram(prog, 1, options)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    assert status == 0, log.value.decode()


HARNESS = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "blur_path.cu"
// argv: in.bin out.bin m C h w l trapezoid; in.bin = image (float32) then kernel table (float64).
int main(int argc, char** argv) {
    const int m = atoi(argv[3]), C = atoi(argv[4]), h = atoi(argv[5]), w = atoi(argv[6]);
    const int l = atoi(argv[7]), trapezoid = atoi(argv[8]);
    std::vector<float> image((size_t)C * h * w);
    std::vector<double> kernels((size_t)(m + 1) * l);
    FILE* in = fopen(argv[1], "rb");
    if (fread(image.data(), 4, image.size(), in) != image.size()) return 1;
    if (fread(kernels.data(), 8, kernels.size(), in) != kernels.size()) return 1;
    fclose(in);
    const long long total = (long long)(m + trapezoid) * C * h * w;
    std::vector<float> points(total), weights(total);
    for (long long i = 0; i < total; ++i)
        blur_path_pixel(i, image.data(), kernels.data(), points.data(), weights.data(),
                        m, C, h, w, l, trapezoid);
    FILE* out = fopen(argv[2], "wb");
    fwrite(points.data(), 4, total, out);
    fwrite(weights.data(), 4, total, out);
    fclose(out);
    return 0;
}
"""


@pytest.fixture(scope="module")
def host_harness(tmp_path_factory) -> Path:
    """The kernel's per-pixel function compiled into a host program by nvcc."""
    work = tmp_path_factory.mktemp("harness")
    (work / "harness.cu").write_text(HARNESS)
    exe = work / "harness"
    subprocess.run([NVCC, "-I", str(cu_source().parent), "-o", str(exe), str(work / "harness.cu")],
                   check=True, capture_output=True, timeout=300)
    return exe


@needs_nvcc
@pytest.mark.parametrize("shape, sigma, steps, size", CASES)
@pytest.mark.parametrize("rule", ["right", "trapezoid"])
def test_kernel_pixel_function_matches_numpy_on_host(host_harness, tmp_path, shape, sigma, steps, size, rule):
    img = random_image(shape)
    trapezoid = int(rule == "trapezoid")
    (tmp_path / "in.bin").write_bytes(img.tobytes() + blur_kernel_table(sigma, steps, size).tobytes())
    subprocess.run([str(host_harness), str(tmp_path / "in.bin"), str(tmp_path / "out.bin"),
                    *map(str, (steps, *shape, size, trapezoid))], check=True, timeout=60)
    out = np.fromfile(tmp_path / "out.bin", dtype=np.float32).reshape(2, steps + trapezoid, *shape)
    ref = blur_path(img, sigma, steps, size, rule)
    assert np.abs(out[0] - ref.points).max() < TOLERANCE
    assert np.abs(out[1] - ref.weights).max() < TOLERANCE


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("shape, sigma, steps, size", CASES)
@pytest.mark.parametrize("rule", ["right", "trapezoid"])
def test_cuda_path_matches_numpy(shape, sigma, steps, size, rule):
    import cupy

    img = random_image(shape, seed=steps)
    ref = blur_path(img, sigma, steps, size, rule)
    # NaN-poisoned buffers: every element must be written; a side stream: the launch must honour it.
    out = tuple(cupy.full(ref.points.shape, cupy.nan, dtype=cupy.float32) for _ in range(2))
    stream = cupy.cuda.Stream(non_blocking=True)
    points, weights = blur_path_cuda(img, sigma, steps, size, stream=stream, rule=rule, out=out)
    stream.synchronize()
    assert points is out[0] and weights is out[1]
    assert np.abs(cupy.asnumpy(points) - ref.points).max() < TOLERANCE
    assert np.abs(cupy.asnumpy(weights) - ref.weights).max() < TOLERANCE


@pytest.mark.gpu
@needs_gpu
def test_cuda_path_takes_a_device_image_and_ends_at_it():
    import cupy

    img = random_image((3, 24, 20), seed=5)
    points, weights = blur_path_cuda(cupy.asarray(img), 1.2, 50, 9)
    ref = blur_path(img, 1.2, 50, 9)
    assert points.shape == weights.shape == (50, 3, 24, 20) and points.dtype == cupy.float32
    assert np.array_equal(cupy.asnumpy(points[-1]), img)  # gamma_m == I exactly, as on the CPU
    assert np.abs(cupy.asnumpy(weights) - ref.weights).max() < TOLERANCE
