"""One attribution request from an HTTP form, validated as `lam-trt attribute` validates its
arguments: the same library checks, so a bad request gets the CLI's one-line message."""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from lam_trt.attributor import Attributor, check_window
from lam_trt.errors import InputError
from lam_trt.kernels.gaussian import check_kernel_size, check_sigma
from lam_trt.kernels.paths import quadrature
from lam_trt.serve.models import ServedModel

# The library's own defaults (those of `lam-trt attribute` too), so a field left out means the same.
DEFAULTS: dict[str, Any] = {name: p.default for name, p in inspect.signature(Attributor.attribute).parameters.items()
                            if name in ("size", "steps", "sigma", "kernel_size", "method", "rule")}
ONE_POINT_METHODS = ("grad", "grad-x-input")  # a single gradient, no path
_TRUE = ("1", "true", "on", "yes")


@dataclass(frozen=True)
class Limits:
    """What one request may ask of a shared server (the CLI has no such limits: its user owns the machine)."""
    upload_bytes: int = 20 * 2**20
    lr_pixels: int = 1024 * 1024
    steps: int = 1024


@dataclass(frozen=True)
class AttributionRequest:
    model: ServedModel
    image: np.ndarray    # the LR image exactly as the model takes it (HR already downscaled)
    source_name: str     # the client's file name, for result.json and messages
    x: int
    y: int
    size: int
    steps: int
    sigma: float
    kernel_size: int
    method: str
    rule: str
    hr: bool

    @property
    def path_points(self) -> int:
        """How many path images the integral evaluates (the progress total)."""
        return 1 if self.method in ONE_POINT_METHODS else len(quadrature(self.rule, self.steps)[0])

    def attribute_kwargs(self) -> dict[str, Any]:
        return {"window": (self.x, self.y), "size": self.size, "steps": self.steps, "sigma": self.sigma,
                "kernel_size": self.kernel_size, "method": self.method, "rule": self.rule}


def parse_request(fields: Mapping[str, str], filename: str, data: bytes, models: dict[str, ServedModel],
                  folder: Path, limits: Limits = Limits()) -> AttributionRequest:
    """Check every field, store the upload in ``folder`` and read it with the CLI's image loader.
    Raises InputError with the message the CLI would print (the upload's own name in it)."""
    model = pick_model(fields.get("model"), models)
    method = text(fields, "method").lower()  # an unknown one is refused by the library, in the CLI's words
    rule, steps = text(fields, "rule"), integer(fields, "steps")
    if steps > limits.steps:
        raise InputError(f"steps must be at most {limits.steps} on this server, got {steps} (--max-steps)")
    quadrature(rule, steps)  # the library's checks of the rule and the step count
    sigma, kernel_size = number(fields, "sigma"), integer(fields, "kernel_size")
    check_sigma(sigma)
    check_kernel_size(kernel_size)
    x, y, size = integer(fields, "x"), integer(fields, "y"), integer(fields, "size")
    hr = fields.get("hr", "").strip().lower() in _TRUE
    name = client_name(filename)
    image = load_upload(model, data, name, folder, hr, limits.lr_pixels)
    if model.scale:  # the window must lie inside the SR output's detector map, as the CLI checks
        check_window(x, y, size, (0, image.shape[1] * model.scale, image.shape[2] * model.scale))
    return AttributionRequest(model, image, name, x, y, size, steps, sigma, kernel_size, method, rule, hr)


def pick_model(name: str | None, models: dict[str, ServedModel]) -> ServedModel:
    if not name:
        raise InputError(f"the form needs a 'model' field: one of {', '.join(models)}")
    if name not in models:
        raise InputError(f"unknown model {name!r}; this server serves: {', '.join(models)}")
    return models[name]


def load_upload(model: ServedModel, data: bytes, name: str, folder: Path, hr: bool, max_lr_pixels: int) -> np.ndarray:
    """The upload read from a file by the CLI's loader (so its checks and messages apply), with the
    stored file's path replaced by the client's name in any message."""
    if not data:
        raise InputError(f"the uploaded image {name} is empty")
    if hr and not model.scale:
        raise InputError(f"the scale of model {model.name} is unknown, so an HR image cannot be "
                         "downscaled; upload the LR image")
    stored = folder / f"upload{safe_suffix(name)}"
    stored.write_bytes(data)
    check_pixels(stored, name, (model.scale or 1) if hr else 1, max_lr_pixels)
    try:
        return model.attributor.load(stored, hr, model.scale)
    except InputError as e:
        raise InputError(str(e).replace(str(stored), name)) from None


def check_pixels(stored: Path, name: str, downscale: int, max_lr_pixels: int) -> None:
    """Refuse an image too large for this server from its header, before decoding it."""
    try:
        with Image.open(stored) as img:
            width, height = img.size
    except Exception:  # not an image: the loader says so in the CLI's words
        return
    if (width // downscale) * (height // downscale) > max_lr_pixels:
        lr = f" (LR {width // downscale}x{height // downscale})" if downscale > 1 else ""
        raise InputError(f"the image {name} is {width}x{height} pixels{lr}, more than this server's limit "
                         f"of {max_lr_pixels} LR pixels (--max-pixels)")


def client_name(filename: str | None) -> str:
    """The upload's base name, printable and short (it only ever appears in messages and JSON)."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:120]
    return base or "upload"


def safe_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def text(fields: Mapping[str, str], key: str) -> str:
    value = fields.get(key, "").strip()
    return value if value else str(DEFAULTS[key])


def integer(fields: Mapping[str, str], key: str) -> int:
    raw = fields.get(key, "").strip()
    if not raw:
        if key in DEFAULTS:
            return int(DEFAULTS[key])
        raise InputError(f"the form needs the field {key!r} (an integer)")
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"{key} must be an integer, got {raw[:40]!r}") from None


def number(fields: Mapping[str, str], key: str) -> float:
    raw = fields.get(key, "").strip()
    if not raw:
        return float(DEFAULTS[key])
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{key} must be a number, got {raw[:40]!r}") from None
    if not np.isfinite(value):
        raise InputError(f"{key} must be finite, got {raw[:40]!r}")
    return value
