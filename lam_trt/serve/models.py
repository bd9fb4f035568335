"""The models a server may use: only those named on its command line, each with one warm Attributor
and one worker thread, so attributions on one model run one at a time (the rest wait in its queue)
while the event loop stays free."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lam_trt.attributor import Attributor
from lam_trt.errors import InputError


@dataclass
class ServedModel:
    name: str                # what clients call it (the file's stem, made unique)
    path: Path
    attributor: Attributor   # keeps one session per input size across requests
    info: dict[str, Any]     # scale, channels, receptive field: what GET /api/models shows
    worker: ThreadPoolExecutor = field(repr=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.worker is None:  # one thread: this model's attributions never overlap
            self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lam-{self.name}")

    @property
    def scale(self) -> int | None:
        """The integer SR scale, or None where inspection could not tell one."""
        scale = self.info.get("scale")
        return int(scale) if isinstance(scale, (int, float)) and float(scale).is_integer() else None


def load_models(paths: list[Path], provider: str = "auto") -> dict[str, ServedModel]:
    """Each model checked (as `lam-trt attribute` checks it) and described, before anything is served."""
    if not paths:
        raise InputError("give at least one ONNX model to serve (or --demo)")
    models: dict[str, ServedModel] = {}
    for path in paths:
        attributor = Attributor(path, provider=provider)
        name = unique_name(Path(path).stem, models)
        models[name] = ServedModel(name, Path(path), attributor, describe(name, Path(path), attributor))
    return models


def unique_name(stem: str, taken: dict[str, Any]) -> str:
    name, n = stem, 2
    while name in taken:
        name, n = f"{stem}-{n}", n + 1
    return name


def describe(name: str, path: Path, attributor: Attributor) -> dict[str, Any]:
    from lam_trt.export.inspect import inspect_model

    report = inspect_model(attributor.model)
    return {"name": name, "file": path.name, "scale": report["scale"], "channels": report["channels"],
            "receptive_field": report["receptive_field"], "analysis_size": report["analysis_size"],
            "input_shape": report["inputs"][0]["shape"], "sha256": attributor.sha256,
            "provider": attributor.provider, "size_bytes": os.path.getsize(path)}


def shutdown(models: dict[str, ServedModel]) -> None:
    """Drop queued work; a running attribution stops at its next chunk (see jobs.Job.check)."""
    for model in models.values():
        model.worker.shutdown(wait=False, cancel_futures=True)
