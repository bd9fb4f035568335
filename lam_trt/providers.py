"""Execution providers: what this onnxruntime offers, and the one a user asked for."""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Any

from lam_trt.errors import ProviderError

ORT_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
             "cpu": "CPUExecutionProvider"}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")


def available() -> list[str]:
    """lam-trt names of the providers this onnxruntime build has and can load."""
    import onnxruntime as ort  # here, not at the top: the CLI reads ORT_NAMES at every start

    have = set(ort.get_available_providers())
    return [name for name in AUTO_ORDER if ORT_NAMES[name] in have and not (name == "tensorrt" and tensorrt_unusable())]


@functools.cache
def tensorrt_unusable() -> str | None:
    """Why ONNX Runtime lists TensorRT but cannot load it (None when it can).

    The onnxruntime-gpu wheel always lists TensorRT; where TensorRT's own libraries are missing,
    session creation falls back to CUDA with ONNX Runtime's default options, which drops lam-trt's
    (the shared CUDA stream, TF32 off). So the provider library is loaded here first, as ONNX Runtime
    would load it, and TensorRT counts as available only if that works."""
    import onnxruntime as ort

    capi = Path(ort.__file__).parent / "capi"
    library = next((p for p in (capi / "libonnxruntime_providers_tensorrt.so",
                                capi / "onnxruntime_providers_tensorrt.dll") if p.exists()), None)
    if library is None:
        return None  # a build with TensorRT linked in: nothing to check
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        return str(exc).splitlines()[0]
    return None


def resolve(name: str) -> str:
    """``auto`` -> the best available; a named one -> itself, or a clear error when missing."""
    name = name.lower()
    if name == "auto":
        return available()[0]
    if name not in ORT_NAMES:
        raise ProviderError(f"unknown provider {name!r}; choose one of auto, {', '.join(ORT_NAMES)}")
    if name not in available():
        hint = " (install the GPU extra: pip uninstall onnxruntime && pip install 'lam-trt[gpu]')" \
            if name != "cpu" else ""
        if name == "tensorrt" and tensorrt_unusable():
            hint = f": its TensorRT libraries cannot be loaded ({tensorrt_unusable()}); use --provider cuda"
        raise ProviderError(f"provider {name!r} is not available in this onnxruntime "
                            f"(has: {', '.join(available())}){hint}")
    return name


def session_providers(name: str, cache_dir: Path | None = None, fp16: bool = False) -> list[Any]:
    """The provider list for an InferenceSession, with fallbacks (TensorRT -> CUDA -> CPU)."""
    chain = AUTO_ORDER[AUTO_ORDER.index(name):]
    providers: list[Any] = []
    for p in chain:
        if p not in available():
            continue
        if p == "tensorrt":
            opts = {"trt_fp16_enable": fp16, "trt_engine_cache_enable": cache_dir is not None}
            if cache_dir is not None:
                opts["trt_engine_cache_path"] = str(cache_dir / "trt")
            providers.append((ORT_NAMES[p], opts))
        elif p == "cuda":
            providers.append((ORT_NAMES[p], {"use_tf32": 0}))
        else:
            providers.append(ORT_NAMES[p])
    return providers


def session_options(threads: int | None = None) -> Any:
    """Options for every lam-trt session: all graph optimisations, quiet logs, and denormals
    flushed to zero on the CPU threads. Masked attention (Swin's -100 shift mask) makes softmax
    emit denormals, on which x86 arithmetic is ~30x slower. Flushing changes only values below
    1.2e-38, far under float32 rounding of anything a map sums (a denormal activation counts as 0
    where a ReLU-family slope is chosen, the same for every formulation of the rule).

    Memory (bench/bench_memory.py): no memory pattern, whose one planned block ONNX Runtime
    allocates from the second run on beside what the arena kept from the first (twice the memory
    per chunk); and the priority-based order, which runs Shape nodes as soon as their input exists,
    where the default order runs a reverse-pass Shape(x) late and keeps the forward tensor x alive
    until then."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 4  # fatal only: every error reaches lam-trt as an exception, said in one line
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    opts.enable_mem_pattern = False
    opts.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    if threads:
        opts.intra_op_num_threads = threads
    return opts
