"""Choices that change the attribution graph beyond the input size: random nodes, straight-through,
the largest window it attributes.

They are part of a built graph's identity (its cache key) and are recorded in its metadata.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Optional

import onnx

from lam_trt.export.random_ops import RandomOpsPolicy

WARNINGS_KEY = "lam_trt.export_warnings"  # JSON list of one-line warnings about the built graph
RANDOM_OPS_KEY = "lam_trt.random_ops"  # JSON {mode, seed, nodes} when random nodes were replaced
STRAIGHT_THROUGH_KEY = "lam_trt.straight_through"  # JSON list of the Add nodes given identity gradients
GRAPH_OPTIONS_KEY = "lam_trt.graph_options"  # JSON of the GraphOptions the graph was built with
WINDOW_BOUND_KEY = "lam_trt.window_bound"  # the largest window side (SR pixels) the graph attributes
TAIL_CROP_KEY = "lam_trt.tail_crop"  # JSON: what of the reverse pass runs on window crops (tail_crop.py)
WINDOW_BOUND = 16  # LAM's window: the Attributor's bound, a larger window gets a graph of its own


@dataclass(frozen=True)
class GraphOptions:
    """``random_ops``: "seeded" (one fixed draw from ``seed``) or "zeros"; ``straight_through``:
    the reverse pass of each z + (q - z) quantiser is the identity (torch's ``.detach()``);
    ``window_bound``: the largest window side, in SR pixels, the graph attributes: its upsampling
    tail's reverse pass runs on crops sized for it (larger windows give NaN, and runners refuse
    them); None, any window, no crops. The Attributor sets it from each call's windows."""

    random_ops: str = "seeded"
    seed: int = 0
    straight_through: bool = False
    window_bound: Optional[int] = None

    def __post_init__(self) -> None:
        RandomOpsPolicy(self.random_ops, self.seed)  # validates
        if self.window_bound is not None and self.window_bound < 1:
            raise ValueError(f"window_bound must be positive, got {self.window_bound}")

    @property
    def random_policy(self) -> RandomOpsPolicy:
        return RandomOpsPolicy(self.random_ops, self.seed)

    def cache_tag(self) -> str:
        """'' for the defaults (existing cache keys stay valid), else a short tag."""
        if self == GraphOptions():
            return ""
        tag = "" if replace(self, window_bound=None) == GraphOptions() else \
            f"-{self.random_ops}{self.seed}" + ("-st" if self.straight_through else "")
        return tag + (f"-w{self.window_bound}" if self.window_bound is not None else "")

    def for_windows(self, largest: int) -> "GraphOptions":
        """Options whose bound fits windows of side ``largest``: this bound where it does, else
        WINDOW_BOUND or the next multiple of it (few distinct graphs however the sizes vary)."""
        if self.window_bound is not None and self.window_bound >= largest:
            return self
        return replace(self, window_bound=max(WINDOW_BOUND, -(-largest // WINDOW_BOUND) * WINDOW_BOUND))

    def to_dict(self) -> dict:
        return asdict(self)


def export_warnings(graph: onnx.ModelProto) -> list[str]:
    """The warnings build_attribution_graph recorded in ``graph``'s metadata (for the result)."""
    for prop in graph.metadata_props:
        if prop.key == WARNINGS_KEY:
            return list(json.loads(prop.value))
    return []


def graph_notes(options: GraphOptions, random_report, found) -> dict[str, str]:
    """Metadata entries for a built graph: its warnings, what random nodes became, where the
    straight-through estimator was applied."""
    warnings = ([random_report.message()] if random_report.nodes else []) + found.warnings(options.straight_through)
    notes = {WARNINGS_KEY: json.dumps(warnings), GRAPH_OPTIONS_KEY: json.dumps(options.to_dict())}
    if random_report.nodes:
        notes[RANDOM_OPS_KEY] = json.dumps(random_report.to_dict())
    if options.straight_through and found.straight_through:
        notes[STRAIGHT_THROUGH_KEY] = json.dumps([s.add for s in found.straight_through])
    return notes
