"""The models a server may use: only those named on its command line, each with one warm Attributor
(it keeps a session per input size, so a second window on the same image costs only the integral)."""
from __future__ import annotations

import os
from dataclasses import dataclass
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
    from lam_trt.export.model_report import inspect_model

    report = inspect_model(attributor.model)
    return {"name": name, "file": path.name, "scale": report["scale"], "channels": report["channels"],
            "receptive_field": report["receptive_field"], "analysis_size": report["analysis_size"],
            "input_shape": report["inputs"][0]["shape"], "sha256": attributor.sha256,
            "provider": attributor.provider, "size_bytes": os.path.getsize(path)}
