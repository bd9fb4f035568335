"""PyTorch module -> ONNX file, checked against PyTorch in ONNX Runtime.

The export uses the TorchScript exporter (``dynamo=False``) at opset 17, which every current
ONNX Runtime provider and TensorRT accept, or on request torch's dynamo exporter (``torch.export``,
torch's default opset). The trace is taken at batch 1, the batch lam-trt's forward and endpoints
run. Batch, height and width are dynamic unless the architecture forbids it; a dynamic export is
verified at a second size and at batches 1, 2 and 3, and falls back to a fixed size (with a
warning naming the sizes that disagree) when the traced graph does not generalise.
"""
from __future__ import annotations

import contextlib
import inspect
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
import torch
from torch import nn

from lam_trt.errors import GateError, InputError, ModelError
from lam_trt.io import write_bytes

_ORT_ERRORS = (ort_state.Fail, ort_state.InvalidArgument, ort_state.RuntimeException, ort_state.NotImplemented)
EXPORTERS = ("torchscript", "dynamo")  # lam_trt.commands._common.Exporter holds the same names
OPSET = 17  # the TorchScript exporter's; dynamo exports at torch's own default (18 or above)
BATCHES = (1, 2, 3)  # a dynamic batch axis is checked at each
TOLERANCE = 1e-4  # relative: max |onnxruntime - torch| / max |torch|
INPUT_NAME, OUTPUT_NAME = "input", "output"


class ExportMismatchError(GateError):
    """ONNX Runtime's output differs from PyTorch's by more than the tolerance (exit code 1)."""


@dataclass
class Check:
    """ONNX Runtime against PyTorch on one random input."""

    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float


@dataclass
class ExportReport:
    path: Path
    opset: int
    dynamic_batch: bool
    dynamic_hw: bool
    checks: list[Check]
    warnings: list[str] = field(default_factory=list)

    @property
    def max_rel_error(self) -> float:
        return max(c.max_rel_error for c in self.checks)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "opset": self.opset,
            "dynamic_batch": self.dynamic_batch,
            "dynamic_hw": self.dynamic_hw,
            "checks": [vars(c) | {"shape": list(c.shape)} for c in self.checks],
            "max_rel_error": self.max_rel_error,
            "warnings": self.warnings,
        }


def export_onnx(
    module: nn.Module,
    path: str | Path,
    *,
    in_channels: int,
    size: tuple[int, int] = (64, 64),
    fixed_hw: bool = False,
    metadata: dict[str, str] | None = None,
    tolerance: float = TOLERANCE,
    seed: int = 0,
    exporter: str = "torchscript",
) -> ExportReport:
    """Export ``module`` (one NCHW image in, one out) to ``path`` atomically and check it.

    Raises ``ExportMismatchError`` after writing the file if ONNX Runtime differs from PyTorch
    by more than ``tolerance`` (relative to the largest output magnitude).
    """
    if exporter not in EXPORTERS:
        raise InputError(f"the exporter must be one of {', '.join(EXPORTERS)}, not {exporter!r}")
    module = module.eval()
    with _batch_free_window_reverse(module):
        return _export_checked(module, Path(path), in_channels, size, fixed_hw, metadata or {}, tolerance, seed,
                               exporter)


def _export_checked(
    module: nn.Module,
    out: Path,
    in_channels: int,
    size: tuple[int, int],
    fixed_hw: bool,
    metadata: dict[str, str],
    tolerance: float,
    seed: int,
    exporter: str,
) -> ExportReport:
    h, w = size
    gen = torch.Generator().manual_seed(seed)
    sample = torch.rand(1, in_channels, h, w, generator=gen)
    reference = _run_torch(module, sample)
    graph, dynamic_batch, dynamic_hw, notes = _first_trace(module, sample, size, not fixed_hw, exporter)
    if dynamic_hw and not _generalises(module, graph, torch.rand(1, in_channels, h + 4, w + 8, generator=gen), tolerance):
        dynamic_hw = False
        notes.append(f"height and width fixed at {h}x{w}: the traced graph does not work at other sizes")
        graph = _trace(module, sample.clone(), dynamic_batch, dynamic_hw, exporter)
    batches = [sample] + [torch.rand(n, in_channels, h, w, generator=gen) for n in BATCHES[1:]]
    finding = _batch_finding(module, graph, batches, tolerance) if dynamic_batch else ""
    if finding:
        dynamic_batch = False
        notes.append(f"batch fixed at 1: {finding}")
        graph = _trace(module, sample.clone(), dynamic_batch, dynamic_hw, exporter)

    checks = [_compare(graph, sample, reference)]
    if dynamic_batch or dynamic_hw:
        shape = (2 if dynamic_batch else 1, in_channels, h + 4 * dynamic_hw, w + 8 * dynamic_hw)
        checks += _checks_where_torch_runs(module, graph, [torch.rand(*shape, generator=gen)])
    if dynamic_batch:
        checks += _checks_where_torch_runs(module, graph, batches[2:])
    proto = onnx.load_from_string(graph.data)
    _fix_output_dims(proto, reference.shape, dynamic_batch, dynamic_hw)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    write_bytes(out, proto.SerializeToString())
    report = ExportReport(out, _opset(proto), dynamic_batch, dynamic_hw, checks, notes)
    if report.max_rel_error > tolerance:
        raise ExportMismatchError(
            f"onnxruntime differs from PyTorch by {report.max_rel_error:.3g} (relative) > {tolerance:g}; "
            f"the model was written to {out} anyway"
        )
    return report


def _checks_where_torch_runs(module: nn.Module, graph: _Traced, probes: list[torch.Tensor]) -> list[Check]:
    checks = []
    for probe in probes:
        with contextlib.suppress(RuntimeError, ValueError, InputError):  # shapes the model rejects
            checks.append(_compare(graph, probe, _run_torch(module, probe)))
    return checks


def _opset(proto: onnx.ModelProto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _fix_output_dims(proto: onnx.ModelProto, shape: tuple[int, ...], dynamic_batch: bool, dynamic_hw: bool) -> None:
    """Write the output's static sizes where the exporter left names (fixed-size exports)."""
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    static = [not dynamic_batch, True, not dynamic_hw, not dynamic_hw]
    for dim, value, fixed in zip(dims, shape, static):
        if fixed:
            dim.Clear()
            dim.dim_value = int(value)


@contextlib.contextmanager
def _batch_free_window_reverse(module: nn.Module) -> Iterator[None]:
    """Swin-style code (SwinIR, HAT, ...) computes the batch in ``window_reverse`` as
    ``int(windows.shape[0] / (H * W / ws / ws))``; tracing freezes that int, so the ONNX graph
    would only run at batch 1. While exporting, the defining modules' ``window_reverse`` is
    replaced by an equivalent that lets the batch follow from the view."""
    patched: dict[Any, Any] = {}
    for sub in module.modules():
        owner = sys.modules.get(type(sub).__module__)
        fn = getattr(owner, "window_reverse", None)
        if owner in patched or not callable(fn):
            continue
        if [p.lower() for p in inspect.signature(fn).parameters] == ["windows", "window_size", "h", "w"]:
            patched[owner] = fn
            owner.window_reverse = _window_reverse
    try:
        yield
    finally:
        for owner, fn in patched.items():
            owner.window_reverse = fn


def _window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(-1, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, h, w, c)


def _run_torch(module: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        y = module(x.clone())
    if not isinstance(y, torch.Tensor) or y.dim() != 4:
        raise ModelError("the model must return one NCHW image tensor")
    return y.float().numpy()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The TorchScript exporter warns about every Python-level shape computation it freezes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _first_trace(module: nn.Module, sample: torch.Tensor, size: tuple[int, int], dynamic_hw: bool,
                 exporter: str) -> tuple[_Traced, bool, bool, list[str]]:
    """The trace with the most dynamic axes the exporter accepts, and a note for each axis it fixed:
    dynamo may refuse an axis that the code specialises; TorchScript never does."""
    tries = [(True, dynamic_hw), (True, False), (False, dynamic_hw), (False, False)]
    tries = list(dict.fromkeys(tries))[:1 if exporter == "torchscript" else None]
    refusal: ModelError | None = None
    for batch, hw in tries:
        try:
            graph = _trace(module, sample.clone(), batch, hw, exporter)
        except ModelError as e:
            refusal = refusal or e
            continue
        why = f"torch's {exporter} exporter cannot make it dynamic ({_first_line(refusal)[:200]})" if refusal else ""
        notes = [] if batch else [f"batch fixed at 1: {why}"]
        notes += [f"height and width fixed at {size[0]}x{size[1]}: {why}"] if dynamic_hw and not hw else []
        return graph, batch, hw, notes
    assert refusal is not None
    raise refusal


def _trace(module: nn.Module, sample: torch.Tensor, dynamic_batch: bool, dynamic_hw: bool, exporter: str) -> _Traced:
    axes_in: dict[int, str] = {0: "batch"} if dynamic_batch else {}
    axes_out = dict(axes_in)
    if dynamic_hw:
        axes_in |= {2: "height", 3: "width"}
        axes_out |= {2: "out_height", 3: "out_width"}
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        target = Path(tmp) / "model.onnx"
        try:
            if exporter == "dynamo":
                _export_dynamo(module, sample, target, axes_in)
            else:
                torch.onnx.export(module, (sample,), str(target), dynamo=False, opset_version=OPSET,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes={INPUT_NAME: axes_in, OUTPUT_NAME: axes_out}, do_constant_folding=True)
        except Exception as e:  # the exporter raises many types; report one line
            raise ModelError(f"torch cannot export this model to ONNX with its {exporter} exporter (a limit of "
                             f"torch's exporter, not of lam-trt): {_first_line(e)[:300]}") from e
        return _Traced(target.read_bytes())


def _export_dynamo(module: nn.Module, sample: torch.Tensor, target: Path, axes: dict[int, str]) -> None:
    program = torch.onnx.export(module, (sample,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                dynamic_shapes=(axes,) if axes else None, verbose=False)
    program.save(str(target))


class _Traced:
    """A serialized ONNX graph and, once needed, one ONNX Runtime session for all its checks."""

    def __init__(self, data: bytes):
        self.data = data
        self._session: ort.InferenceSession | None = None

    def run(self, x: torch.Tensor) -> np.ndarray:
        if self._session is None:
            options = ort.SessionOptions()
            options.log_severity_level = 4  # probing other shapes may fail on purpose: stay quiet
            self._session = ort.InferenceSession(self.data, options, providers=["CPUExecutionProvider"])
        return self._session.run(None, {INPUT_NAME: x.numpy()})[0]


def _compare(graph: _Traced, x: torch.Tensor, reference: np.ndarray) -> Check:
    got = graph.run(x)
    if got.shape != reference.shape:
        raise ModelError(f"onnxruntime output shape {got.shape} differs from PyTorch's {reference.shape}")
    err = float(np.max(np.abs(got - reference)))
    scale = float(np.max(np.abs(reference)))
    return Check(tuple(x.shape), err, err / max(scale, 1e-12))


def _generalises(module: nn.Module, graph: _Traced, probe: torch.Tensor, tolerance: float) -> bool:
    """Does the graph traced at one shape also reproduce PyTorch at ``probe``'s shape?"""
    try:
        reference = _run_torch(module, probe)
    except (RuntimeError, ValueError, InputError):
        return True  # the architecture itself rejects this shape: nothing to learn here
    try:
        return _compare(graph, probe, reference).max_rel_error <= tolerance
    except _ORT_ERRORS + (ModelError,):  # a size frozen into the traced graph
        return False


def _batch_finding(module: nn.Module, graph: _Traced, batches: list[torch.Tensor], tolerance: float) -> str:
    """'' when the dynamic-batch graph reproduces PyTorch at every batch PyTorch runs; else the batch
    sizes where it fails or disagrees, and whether it agrees image by image there (shapes or
    attention masks traced for batch 1: the model is right one image at a time)."""
    failed, disagreements, errors, worst = [], [], [], None
    for x in batches:
        try:
            reference = _run_torch(module, x)
        except (RuntimeError, ValueError, InputError):
            continue  # PyTorch itself rejects this batch: nothing to learn here
        try:
            error = _compare(graph, x, reference).max_rel_error
        except _ORT_ERRORS + (ModelError,) as e:
            failed.append(str(len(x)))
            errors.append(_first_line(e)[:160])
            continue
        if error > tolerance:
            disagreements.append(f"batch {len(x)} (relative error {error:.2g})")
            worst = x
    parts = [f"disagrees with PyTorch at {' and '.join(disagreements)}"] if disagreements else []
    parts += [f"fails in onnxruntime at batch {' and '.join(failed)} ({errors[0]})"] if failed else []
    if not parts:
        return ""
    finding = "the traced graph " + "; it ".join(parts)
    if worst is not None and len(worst) > 1:
        alone = max(_compare(graph, worst[i:i + 1], _run_torch(module, worst[i:i + 1])).max_rel_error
                    for i in range(len(worst)))
        if alone <= tolerance:
            finding += f"; it agrees image by image ({alone:.2g}): shapes or masks were traced for batch 1"
    return finding


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()  # torch colours its messages
    return text[0] if text else type(e).__name__
