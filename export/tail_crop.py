"""The reverse pass of the upsampling tail on one crop per window instead of the whole image.

A window's gradient at the SR output is nonzero only on the window (and the detector's neighbour
row and column); each local op of the tail (convolutions, pixel shuffles, nearest upsampling,
pointwise ops) spreads it by its kernel only. Run over whole tensors, the tail's reverse pass costs
about one forward pass of the tail per window, most of an attribution of several windows (issue
14). Here it runs on crops: from the SR output backwards, while every op on the gradient path has
a crop rule (crops.py, beside its VJP) and a tensor's box stays below ``FRACTION`` of its area,
each tensor's gradient lives on its box only, computed by the op's own VJP rule applied to the node
on crops (forward activations gathered at the box). Where the crop ends, the gradient is scattered
back into the whole tensor and the ordinary reverse pass goes on. The result is exact: a box holds
every position where the gradient can be nonzero, and positions of a box beyond the tensor's edge
(the zero padding a convolution reads) get their gradients zeroed before they spread.

The boxes are sized for windows of at most ``bound`` SR pixels a side; a larger window makes the
attribution NaN (runner.py refuses such windows first, and the Attributor builds a graph for them).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import reduce
from typing import Iterator, Optional

import numpy as np
import onnx
from onnx import helper

from lam_trt.export.accumulate import Broadcast, Placed
from lam_trt.export.builder import FLOAT, GraphBuilder, Node
from lam_trt.export.crops import Box, CropStep, Span
from lam_trt.export.vjp import CROP_RULES, REGISTRY

FRACTION = 0.5  # a tensor is cropped while its box is at most this part of its area
MIN_OPSET = 11  # GatherElements, ScatterElements, Pad with pads as an input


@dataclass
class TailCrop:
    """Which nodes' reverse passes run on crops (forward order), how (``steps``), and the box of each
    tensor whose whole gradient is computed on crops."""

    nodes: list[Node]
    steps: dict[str, CropStep]
    boxes: dict[str, Box]
    sr: str
    bound: int
    scale: tuple[int, int]  # R per axis: SR pixels per input pixel where whole, else 1

    def describe(self) -> dict:
        """For the graph's metadata."""
        return {"bound": self.bound, "nodes": len(self.nodes), "tensors": len(self.boxes),
                "sr_box": [self.boxes[self.sr].rows.s, self.boxes[self.sr].cols.s]}


def plan_tail_crop(b: GraphBuilder, nodes: list[Node], active: set[str], batched: dict[str, int], source: str,
                   sr: str, bound: int, overrides: dict) -> Optional[TailCrop]:
    """The crop of the reverse pass of ``nodes`` (the forward graph, ``source`` -> ``sr``) for
    windows up to ``bound`` pixels a side; None where nothing would be cropped. ``batched``: the
    forward tensors of one item per path image (reverse_batch.batched_tensors), the ones a crop
    can be gathered from."""
    if b.opset < MIN_OPSET or b.rank(sr) != 4:
        return None
    scale = tuple(b.shape(sr)[a] // b.shape(source)[a] if b.shape(sr)[a] % b.shape(source)[a] == 0 else 1
                  for a in (2, 3))
    seed = Box(*(Span(r, 0, bound + r) for r in scale))  # the window and the detector's neighbour, any offset
    planner = Planner(b, active, batched, scale, b.shape(sr)[2:], {sr: [seed]})
    planner.settle(sr)
    if sr not in planner.boxes:
        return None
    for node in reversed(nodes):
        planner.visit(node, overrides)
    planner.settle_rest()
    if not any(sr in n.outputs for n in planner.region):  # the output's own producer is not cropped
        return None
    return TailCrop(planner.region[::-1], planner.steps, planner.boxes, sr, bound, scale)  # type: ignore[arg-type]


@dataclass
class Planner:
    """Walks the forward nodes backwards, deciding each tensor's crop once all its readers are known."""

    b: GraphBuilder
    active: set[str]
    batched: dict[str, int]
    scale: tuple[int, ...]
    sr_size: tuple[int, ...]
    parts: dict[str, list[Box]]
    boxes: dict[str, Box] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)  # read by a node whose reverse pass is not cropped
    settled: set[str] = field(default_factory=set)
    region: list[Node] = field(default_factory=list)
    steps: dict[str, CropStep] = field(default_factory=dict)

    def visit(self, node: Node, overrides: dict) -> None:
        outputs = [o for o in node.outputs if o in self.active]
        if not outputs:
            return
        for name in outputs:
            self.settle(name)
        step = self.step(node, outputs, overrides)
        if step is None or not self.readable(node, step):
            self.blocked.update(name for name in node.inputs if name in self.active)
            return
        self.region.append(node)
        self.steps[node.name] = step
        for name, box in zip(node.inputs, step.inputs):
            if name in self.active and box is not None:
                self.parts.setdefault(name, []).append(box)

    def readable(self, node: Node, step: CropStep) -> bool:
        """Whether the step reads every image-dependent input as a crop, and crops only tensors of
        one item per path image (a constant [1, C, H, W] is not)."""
        for name, box in zip(node.inputs, step.inputs + [None] * len(node.inputs)):
            if name in self.active and box is None:
                return False
            if box is not None and self.batched.get(name) != 0:
                return False
        return True

    def step(self, node: Node, outputs: list[str], overrides: dict) -> Optional[CropStep]:
        rule = CROP_RULES.get(node.op_type)
        if rule is None or node.name in overrides or node.captures or outputs != node.outputs[:1] \
                or outputs[0] not in self.boxes:
            return None
        try:
            return rule(self.b, node, self.boxes[outputs[0]])
        except (NotImplementedError, KeyError, ValueError):  # a probe or a shape the rule cannot read
            return None

    def settle(self, name: str) -> None:
        """Crop ``name``'s gradient if every reader's reverse pass is cropped and its box is worth it."""
        if name in self.settled:
            return
        self.settled.add(name)
        if name in self.blocked or name not in self.parts:
            return
        box = reduce(lambda a, c: a.hull(c) if a else None, self.parts[name][1:], self.parts[name][0])
        if box is not None and self.worth(name, box):
            self.boxes[name] = box

    def settle_rest(self) -> None:
        """Tensors no node produced (the model's input): decided once every node is seen."""
        for name in list(self.parts):
            self.settle(name)

    def worth(self, name: str, box: Box) -> bool:
        shape = self.b.shapes.get(name)
        if shape is None or len(shape) != 4 or self.b.batch_axis(name) != 0:
            return False
        for span, size, sr_size, r in zip(box.spans, shape[2:], self.sr_size, self.scale):
            if span.m * sr_size != r * size:  # the box's resolution is not the tensor's
                return False
        return box.area <= FRACTION * shape[2] * shape[3]


# ---- emission ---------------------------------------------------------------------------------------
@dataclass
class CropEmitter:
    """Emits the cropped reverse pass. ``passthrough``: names of the nodes that gather and scatter
    crops (they read forward tensors of N items and give K x N; reverse_batch.py leaves them as
    they are and takes their outputs as K x N items)."""

    b: GraphBuilder
    plan: TailCrop
    windows: str
    passthrough: set[str] = field(default_factory=set)
    crops: dict[str, tuple[str, Box]] = field(default_factory=dict)  # crop name -> (tensor, box)
    _names: dict[tuple[str, Box], str] = field(default_factory=dict)
    _index: dict[tuple, tuple[str, str]] = field(default_factory=dict)
    _count: Optional[str] = None

    def count(self) -> str:
        """K, int64 [1] (emitted once)."""
        if self._count is None:
            self._count = self.b.op("Slice", self.b.op("Shape", self.windows), self.b.ints([0]), self.b.ints([1]))
        return self._count

    def crop_name(self, tensor: str, box: Box) -> str:
        """The name of ``tensor``'s crops at ``box`` (gathered once, if a rule reads it)."""
        key = (tensor, box)
        if key not in self._names:
            name = f"{tensor}/crop{len(self._names)}"
            self._names[key] = name
            self.crops[name] = key
            self.b.shapes[name] = (1, self.b.shape(tensor)[1], box.rows.s, box.cols.s)
            self.b.dtypes[name] = FLOAT
        return self._names[key]

    def margins(self, tensor: str, box: Box) -> list[tuple[int, int]]:
        """Zero rows and columns around ``tensor`` that every window's box fits in: (before, after)."""
        out = []
        for span, size, sr_size, r in zip(box.spans, self.b.shape(tensor)[2:], self.b.shape(self.plan.sr)[2:],
                                          self.plan.scale):
            last = (sr_size - 1) // r * span.m + span.end  # the end of the last window's box
            out.append((max(0, -span.c), max(0, last - size)))
        return out

    def reaches_out(self, tensor: str, box: Box) -> bool:
        """Whether some window's box passes ``tensor``'s edge."""
        return any(p for pair in self.margins(tensor, box) for p in pair)

    def index(self, tensor: str, box: Box) -> tuple[str, str]:
        """(flat positions [K, rows * cols] of every window's box in the padded tensor, 0/1 mask
        [K, 1, rows, cols] of the positions inside the tensor)."""
        shape, pads = self.b.shape(tensor), self.margins(tensor, box)
        key = (shape[2:], box)
        if key not in self._index:
            with self.passing():
                b, axes = self.b, []
                for k, (span, size, r, (lo, _)) in enumerate(zip(box.spans, shape[2:], self.plan.scale, pads)):
                    start = b.op("Mul", b.op("Div", b.op("Slice", self.windows, b.ints([k]), b.ints([k + 1]),
                                                         b.ints([1])), b.ints([r])), b.ints([span.m]))
                    at = b.op("Add", start, b.ints(np.arange(span.c, span.end)))  # [K, s]
                    inside = b.op("Cast", b.op("And", b.op("GreaterOrEqual", at, b.ints([0])),
                                               b.op("Less", at, b.ints([size]))), to=FLOAT)
                    axes.append((b.op("Add", at, b.ints([lo])), inside))
                width = shape[3] + sum(pads[1])
                flat = b.op("Add", b.op("Mul", b.op("Unsqueeze", axes[0][0], b.ints([2])), b.ints([width])),
                            b.op("Unsqueeze", axes[1][0], b.ints([1])))
                mask = b.op("Mul", b.op("Unsqueeze", axes[0][1], b.ints([1, 3])),
                            b.op("Unsqueeze", axes[1][1], b.ints([1, 2])))
                self._index[key] = (b.op("Reshape", flat, b.ints([0, -1])), mask)
        return self._index[key]

    @contextmanager
    def passing(self) -> Iterator[None]:
        """Record the nodes emitted inside the block as pass-through."""
        start = len(self.b.nodes)
        yield
        self.passthrough.update(n.name for n in self.b.nodes[start:])

    def padded(self, x: str, tensor: str, box: Box) -> str:
        if not self.reaches_out(tensor, box):
            return x
        pads = self.margins(tensor, box)
        return self.b.op("Pad", x, self.b.ints([0, 0, pads[0][0], pads[1][0], 0, 0, pads[0][1], pads[1][1]]))

    def gather_images(self, tensor: str, box: Box, name: str) -> None:
        """``name``: the crops [K*N, C, rows, cols] of a forward tensor [N, C, H, W] (window-major)."""
        b, c = self.b, self.b.shape(tensor)[1]
        flat_index, _ = self.index(tensor, box)
        with self.passing():
            flat = b.op("Reshape", self.padded(tensor, tensor, box), b.ints([-1, self.padded_area(tensor, box)]))
            picked = b.op("Transpose", b.op("Gather", flat, flat_index, axis=1), perm=[1, 0, 2])  # [K, N*C, s]
            b.nodes.append(helper.make_node("Reshape", [picked, b.ints([-1, c, box.rows.s, box.cols.s])], [name],
                                            name=name))

    def gather_items(self, x: str, tensor: str, box: Box) -> str:
        """Crops [K*N, C, rows, cols] of a gradient [K*N, C, H, W] of ``tensor`` (window k: items k*N...)."""
        b, c = self.b, self.b.shape(tensor)[1]
        flat_index, _ = self.index(tensor, box)
        with self.passing():
            flat = b.op("Reshape", self.padded(x, tensor, box),
                        b.op("Concat", self.count(), b.ints([-1, self.padded_area(tensor, box)]), axis=0))
            picked = b.op("GatherElements", flat, self.spread(flat_index, flat, box), axis=2)
            return b.op("Reshape", picked, b.ints([-1, c, box.rows.s, box.cols.s]))

    def scatter(self, g: str, tensor: str, box: Box) -> str:
        """The gradient [K*N, C, H, W] of ``tensor`` that is ``g`` on each window's box, zero elsewhere."""
        b, (_, c, height, width) = self.b, self.b.shape(tensor)
        flat_index, _ = self.index(tensor, box)
        pads = self.margins(tensor, box)
        with self.passing():
            items = b.op("Reshape", g, b.op("Concat", self.count(), b.ints([-1, box.area]), axis=0))
            size = b.op("Concat", b.op("Slice", b.op("Shape", items), b.ints([0]), b.ints([2])),
                        b.ints([self.padded_area(tensor, box)]), axis=0)
            zeros = b.op("ConstantOfShape", size, value=_zero())
            full = b.op("ScatterElements", zeros, self.spread(flat_index, items, box), items, axis=2)
            full = b.op("Reshape", full, b.ints([-1, c, height + sum(pads[0]), width + sum(pads[1])]))
            if not self.reaches_out(tensor, box):
                return full
            return b.op("Slice", full, b.ints([pads[0][0], pads[1][0]]),
                        b.ints([pads[0][0] + height, pads[1][0] + width]), b.ints([2, 3]))

    def spread(self, flat_index: str, like: str, box: Box) -> str:
        """[K, rows * cols] -> [K, N*C, rows * cols]: every item of a window (``like`` [K, N*C, ...])
        at the same positions."""
        b = self.b
        size = b.op("Concat", b.op("Slice", b.op("Shape", like), b.ints([0]), b.ints([2])), b.ints([box.area]), axis=0)
        return b.op("Expand", b.op("Unsqueeze", flat_index, b.ints([1])), size)

    def padded_area(self, tensor: str, box: Box) -> int:
        pads = self.margins(tensor, box)
        return (self.b.shape(tensor)[2] + sum(pads[0])) * (self.b.shape(tensor)[3] + sum(pads[1]))

    def masked(self, g: str, tensor: str, box: Box) -> str:
        """``g`` with the positions of each window's box beyond ``tensor``'s edge zeroed (as it is
        where every window's box lies inside)."""
        b = self.b
        if not self.reaches_out(tensor, box):
            return g
        _, mask = self.index(tensor, box)
        per_window = b.op("Reshape", g, b.op("Concat", self.count(), b.ints([-1, box.rows.s, box.cols.s]), axis=0))
        return b.op("Reshape", b.op("Mul", per_window, mask), b.ints([-1, b.shape(tensor)[1], box.rows.s, box.cols.s]))

    def moved(self, g: str, inner: Box, outer: Box) -> str:
        """``g`` on ``inner`` as the gradient on the larger ``outer`` (zeros around)."""
        if inner == outer:
            return g
        before = [i.c - o.c for i, o in zip(inner.spans, outer.spans)]
        after = [o.end - i.end for i, o in zip(inner.spans, outer.spans)]
        return self.b.op("Pad", g, self.b.ints([0, 0, *before, 0, 0, *after]))


def _zero() -> onnx.TensorProto:
    return helper.make_tensor("value", FLOAT, [1], [0.0])


def emit_tail_crop(b: GraphBuilder, plan: TailCrop, sr_grad: str, windows: str,
                   active: set[str]) -> tuple[dict[str, str], set[str]]:
    """Emit the cropped reverse pass of ``plan`` from the SR output's gradient ``sr_grad`` [K*N, ...];
    return (the whole-tensor gradient of every tensor where the crop ends, the pass-through nodes)."""
    e = CropEmitter(b, plan, windows)
    first = len(b.nodes)
    seed_box = plan.boxes[plan.sr]
    seed = guarded(b, e.gather_items(sr_grad, plan.sr, seed_box), windows, plan.bound)
    parts: dict[str, list[tuple[Box, str]]] = {plan.sr: [(seed_box, seed)]}
    whole: dict[str, list[str]] = {}
    for node in reversed(plan.nodes):
        step, out = plan.steps[node.name], node.outputs[0]
        if out not in parts:  # nothing flowed back to it
            continue
        g = e.masked(e.moved(collect(e, parts.pop(out), out), plan.boxes[out], step.output), out, step.output)
        crop = on_crops(e, node, step)
        needs = [node.inputs[k] in active and k not in step.consts for k in range(len(crop.inputs))]
        for k, grad in enumerate(REGISTRY[node.op_type](b, crop, [g], needs)):
            name, box = node.inputs[k], step.inputs[k]
            if grad is None or not needs[k] or box is None:
                continue
            if isinstance(grad, (Broadcast, Placed)):
                grad = grad.materialise(b, crop.inputs[k])
            if name in plan.boxes:
                parts.setdefault(name, []).append((box, grad))
            else:
                whole.setdefault(name, []).append(e.scatter(grad, name, box))
    for name, contributions in parts.items():  # where the crop ends inside the box set
        whole.setdefault(name, []).append(e.scatter(collect(e, contributions, name), name, plan.boxes[name]))
    read = {i for n in b.nodes[first:] for i in n.input}
    for name, (tensor, box) in list(e.crops.items()):  # the forward activations the rules read, cropped
        if name in read:
            e.gather_images(tensor, box, name)
    b.nodes[first:] = in_order(b.nodes[first:])
    return {name: g[0] if len(g) == 1 else b.op("Sum", *g) for name, g in whole.items()}, e.passthrough


def collect(e: CropEmitter, contributions: list[tuple[Box, str]], tensor: str) -> str:
    """The sum of a tensor's gradient contributions, each moved onto the tensor's box."""
    box = e.plan.boxes[tensor]
    moved = [e.moved(g, part, box) for part, g in contributions]
    return moved[0] if len(moved) == 1 else e.b.op("Sum", *moved)


def on_crops(e: CropEmitter, node: Node, step: CropStep) -> Node:
    """``node`` reading and writing crops: tensors at their boxes, replaced constants, its attributes."""
    inputs = []
    for k, name in enumerate(node.inputs[:step.arity]):
        if k in step.consts:
            inputs.append(e.b.const(step.consts[k]))
        elif name and step.inputs[k] is not None:
            inputs.append(e.crop_name(name, step.inputs[k]))
        else:
            inputs.append(name)
    inputs += [e.b.const(v) for k, v in sorted(step.consts.items()) if k >= len(inputs)]
    return Node(node.op_type, inputs, [e.crop_name(node.outputs[0], step.output)], step.attrs, f"{node.name}/crop")


def guarded(b: GraphBuilder, seed: str, windows: str, bound: int) -> str:
    """NaN where a window is larger than the boxes were made for (never a silently cut gradient)."""
    sizes = b.op("Slice", windows, b.ints([2]), b.ints([4]), b.ints([1]))
    too_large = b.op("Greater", b.op("ReduceMax", sizes, keepdims=0), b.ints([bound]))
    return b.op("Where", too_large, b.const(math.nan), seed)


def in_order(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """``nodes`` with each after the nodes it reads (stable: the gathers of crops were emitted last)."""
    made = {o for n in nodes for o in n.output}
    done: set[str] = set()
    ordered: list[onnx.NodeProto] = []
    waiting = list(nodes)
    while waiting:
        ready = [n for n in waiting if all(i not in made or i in done for i in n.input)]
        if not ready:
            raise AssertionError("the cropped reverse pass has a cycle")
        ordered += ready
        done.update(o for n in ready for o in n.output)
        ready_ids = {id(n) for n in ready}
        waiting = [n for n in waiting if id(n) not in ready_ids]
    return ordered
