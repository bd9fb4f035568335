"""lam-trt: Local Attribution Maps for super-resolution networks, from a plain ONNX file."""
from lam_trt.version import __version__  # noqa: E402

from lam_trt.errors import InputError, LamTrtError, ModelError, ProviderError, UnsupportedOpError  # noqa: E402
from lam_trt.result import LAMResult, ResultWarning  # noqa: E402


def __getattr__(name: str):
    # Attributor pulls in onnxruntime; import it on first use so `import lam_trt` stays light.
    if name in ("Attributor", "attribute"):
        from lam_trt import attributor
        return getattr(attributor, name)
    if name in ("export", "kernels"):
        import importlib
        return importlib.import_module(f"lam_trt.{name}")
    raise AttributeError(name)


__all__ = ["Attributor", "attribute", "LAMResult", "ResultWarning", "LamTrtError", "InputError", "ModelError",
           "ProviderError", "UnsupportedOpError", "__version__"]
