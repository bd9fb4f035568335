"""The user's model as the runtime needs it: read, checked and described once.

``load_source_model`` is export's one entry for the runtime: it parses the ONNX file once (external
data loaded, local functions inlined), refuses what lam-trt cannot attribute (not image-to-image,
ops without an exact gradient rule), and answers what the runtime asks of the model afterwards:
its hash, channels, fixed input size, whether it takes an image, a forward pass's memory, and its
receptive field at one size. The attribution-graph builder takes the same proto, so nothing reads
the file again.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import onnx

from lam_trt.export.autodiff import check_differentiable
from lam_trt.export.model_report import check_accepts, forward_bytes
from lam_trt.export.receptive_field import receptive_field
from lam_trt.export.source import external_data_files, image_io, load_onnx, model_sha256, static_dims

ReceptiveField = Optional[float | str]  # LR pixels, "global" for whole-image operations, None if unknown


@dataclass(eq=False)
class SourceModel:
    """One user's ONNX SR network, parsed once. ``proto`` is what the forward pass and the builder use."""

    proto: onnx.ModelProto
    path: Optional[Path]               # None for a model given as a ModelProto
    sha256: str                        # the file and every external data file (or the proto's bytes)
    external_data: list[str]           # external data files, relative to the model's folder
    channels: int                      # input channels (3 when the model leaves them open)
    fixed_hw: tuple[Optional[int], Optional[int]]  # input height and width where the model fixes them
    _fields: dict[tuple[int, int], ReceptiveField] = field(default_factory=dict, repr=False)

    @property
    def fixed_size(self) -> bool:
        """True when the model fixes its input's height or width."""
        return any(self.fixed_hw)

    def check_accepts(self, image_shape: tuple[int, ...]) -> None:
        """Refuse, in one line, an image of another size than a fixed-size model takes."""
        check_accepts(self.proto, image_shape)

    def forward_bytes(self, input_shape: tuple[int, int, int, int]) -> int:
        """A lower bound of one forward pass's memory at ``input_shape`` (N, C, H, W)."""
        return forward_bytes(self.proto, input_shape)

    def receptive_field(self, size: tuple[int, int]) -> ReceptiveField:
        """The output's receptive field in LR pixels for an LR image of ``size`` (H, W), kept per size."""
        if size not in self._fields:
            self._fields[size] = receptive_field(self.proto, size)
        return self._fields[size]


def load_source_model(model: str | os.PathLike | onnx.ModelProto) -> SourceModel:
    """Read and check ``model`` (a path to an .onnx file, or a ModelProto) once.

    Raises ModelError for anything that is not one float image in and one out, and
    UnsupportedOpError (one line naming every op) before any work when an op has no exact rule."""
    path = None if isinstance(model, onnx.ModelProto) else Path(model)
    proto = load_onnx(model)
    dims = static_dims(image_io(proto)[0])  # fail early on anything that is not image-to-image
    check_differentiable(proto)  # the builder's own list of ops without a rule: refused before any work
    return SourceModel(proto=proto, path=path, sha256=model_sha256(model),
                       external_data=external_data_files(path) if path else [],
                       channels=dims[1] if dims[1] else 3, fixed_hw=(dims[2], dims[3]))


__all__ = ["ReceptiveField", "SourceModel", "load_source_model", "receptive_field"]
