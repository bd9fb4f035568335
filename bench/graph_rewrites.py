#!/usr/bin/env python
"""What candidate rewrites of the attribution graph would buy, measured before anyone changes export/.

Each rewrite turns a pattern the current VJP rules emit into an equivalent that ONNX Runtime's CPU
kernels run faster (found with bench/profile_graph.py; the single ops were timed in isolation first):

- ``relu-mask``: ``Where(Greater(y, 0), g, 0)`` (Relu's adjoint) -> ``Mul(g, Cast(Greater(y, 0)))``;
  ORT's Where is single-threaded and ~5x slower than Cast + Mul on large tensors. (They differ only
  where g is inf or NaN under a closed mask.)
- ``where-affine``: ``Where(cond, a, b)`` with constant a, b (LeakyRelu/PRelu local slopes)
  -> ``Cast(cond) * (a - b) + b``.
- ``pixel-shuffle``: ``DepthToSpace(CRD, r)`` -> ``ConvTranspose`` with one-hot r x r kernels,
  group = C, stride r; and the CRD adjoint ``SpaceToDepth(r) -> Gather(axis 1)`` -> ``Conv`` with the
  same kernels. ORT's DepthToSpace runs on one thread; both replacements are exact (one product by
  1.0 per output) and multi-threaded.
- ``pow-constant``: ``Pow(x, c)`` with a constant c in {1, 2, 0.5, -0.5} -> Identity, Mul, Sqrt,
  Reciprocal(Sqrt); the adjoint of x^2 emits Pow(x, 1), which ORT computes with std::pow.

For each network (bench configuration) it builds the attribution graph once, applies each rewrite
alone and all together, checks that the outputs agree, and times one chunk of path images per
variant, interleaved, reporting the best of ``--repeats`` (least disturbed by other load).

    python bench/graph_rewrites.py --nets imdn,carn,swinir --batch 16
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


class Graph:
    """Producers, constants and fresh names of one model, for local pattern rewrites."""

    def __init__(self, model: onnx.ModelProto, prefix: str = "rw"):
        self.model = model
        self.prefix = prefix
        self.count = 0
        self.refresh()

    def refresh(self) -> None:
        g = self.model.graph
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.inits = {t.name: t for t in g.initializer}
        self.folded: dict[str, np.ndarray | None] = {}
        # Tensors that depend on a graph input: never constant (nodes are topologically sorted).
        self.data = {i.name for i in g.input if i.name not in self.inits}
        for n in g.node:
            if any(i in self.data for i in n.input):
                self.data.update(n.output)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a tensor computed from constants only (folded here, memoised), else None."""
        if name not in self.folded:
            self.folded[name] = self._fold(name)
        return self.folded[name]

    def _fold(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        if name in self.data:
            return None
        values = [self.constant(i) if i else None for i in node.input]
        if any(v is None for v, i in zip(values, node.input) if i):
            return None
        from onnx.reference import ReferenceEvaluator

        sub = helper.make_graph([node], "fold", [], [helper.make_tensor_value_info(name, 0, None)],
                                [numpy_helper.from_array(v, i) for v, i in zip(values, node.input) if i])
        try:
            outputs = ReferenceEvaluator(helper.make_model(sub, opset_imports=self.model.opset_import)).run(None, {})
            return outputs[list(node.output).index(name)] if len(outputs) > 1 else outputs[0]
        except Exception:
            return None

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}/{hint}_{self.count}"

    def init(self, value: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def replace(self, old: onnx.NodeProto, new: list[onnx.NodeProto]) -> None:
        nodes = self.model.graph.node
        index = list(nodes).index(old)
        del nodes[index]
        for k, n in enumerate(new):
            nodes.insert(index + k, n)


def relu_mask(g: Graph) -> int:
    done = 0
    for node in list(g.model.graph.node):
        if node.op_type != "Where":
            continue
        cond, a, b = node.input
        zero = g.constant(b)
        if g.constant(a) is not None or zero is None or zero.size != 1 or float(zero.reshape(-1)[0]) != 0.0:
            continue
        mask = g.name("mask")
        g.replace(node, [helper.make_node("Cast", [cond], [mask], to=onnx.TensorProto.FLOAT),
                         helper.make_node("Mul", [a, mask], [node.output[0]])])
        done += 1
    return done


def where_affine(g: Graph) -> int:
    done = 0
    for node in list(g.model.graph.node):
        if node.op_type != "Where":
            continue
        cond, a, b = node.input
        va, vb = g.constant(a), g.constant(b)
        if va is None or vb is None or va.dtype != np.float32 or vb.dtype != np.float32:
            continue
        mask, scaled = g.name("mask"), g.name("scaled")
        g.replace(node, [helper.make_node("Cast", [cond], [mask], to=onnx.TensorProto.FLOAT),
                         helper.make_node("Mul", [mask, g.init((va - vb).astype(np.float32), "diff")], [scaled]),
                         helper.make_node("Add", [scaled, g.init(vb.astype(np.float32), "base")], [node.output[0]])])
        done += 1
    return done


def _one_hot(channels: int, r: int) -> np.ndarray:
    """[C r r, 1, r, r]: output channel c r r + i r + j reads position (i, j) of channel c (CRD order)."""
    w = np.zeros((channels * r * r, 1, r, r), np.float32)
    for c in range(channels):
        for i in range(r):
            for j in range(r):
                w[c * r * r + i * r + j, 0, i, j] = 1.0
    return w


def pixel_shuffle(g: Graph) -> int:
    done = 0
    for node in list(g.model.graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DepthToSpace" and attrs.get("mode", b"DCR") in (b"CRD", "CRD"):
            r = int(attrs["blocksize"])
            shape = _shape(g, node.input[0])
            if shape is None:
                continue
            channels = shape[1] // (r * r)
            g.replace(node, [helper.make_node("ConvTranspose", [node.input[0], g.init(_one_hot(channels, r), "onehot")],
                                              [node.output[0]], strides=[r, r], group=channels)])
            done += 1
        elif node.op_type == "Gather" and node.input[0] in g.producer and g.producer[node.input[0]].op_type == "SpaceToDepth":
            s2d = g.producer[node.input[0]]
            r = int({a.name: helper.get_attribute_value(a) for a in s2d.attribute}["blocksize"])
            perm = g.constant(node.input[1])
            if perm is None or attrs.get("axis", 0) != 1 or len(g.consumers.get(s2d.output[0], [])) != 1:
                continue
            channels = perm.size // (r * r)
            expected = np.array([(i * r + j) * channels + c for c in range(channels) for i in range(r) for j in range(r)])
            if not np.array_equal(perm.reshape(-1), expected):
                continue
            g.replace(node, [helper.make_node("Conv", [s2d.input[0], g.init(_one_hot(channels, r), "onehot")],
                                              [node.output[0]], strides=[r, r], group=channels)])
            g.model.graph.node.remove(s2d)
            done += 1
    return done


def pow_constant(g: Graph) -> int:
    done = 0
    for node in list(g.model.graph.node):
        if node.op_type != "Pow":
            continue
        e = g.constant(node.input[1])
        if e is None or e.size != 1:
            continue
        e = float(e.reshape(-1)[0])
        x, y = node.input[0], node.output[0]
        if e == 1.0:
            new = [helper.make_node("Identity", [x], [y])]
        elif e == 2.0:
            new = [helper.make_node("Mul", [x, x], [y])]
        elif e == 0.5:
            new = [helper.make_node("Sqrt", [x], [y])]
        elif e == -0.5:
            root = g.name("sqrt")
            new = [helper.make_node("Sqrt", [x], [root]), helper.make_node("Reciprocal", [root], [y])]
        else:
            continue
        g.replace(node, new)
        done += 1
    return done


def _shape(g: Graph, name: str) -> list[int] | None:
    for vi in list(g.model.graph.value_info) + list(g.model.graph.input) + list(g.model.graph.output):
        if vi.name == name:
            dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            return dims if all(dims[1:]) else None
    inferred = onnx.shape_inference.infer_shapes(g.model)
    for vi in inferred.graph.value_info:
        if vi.name == name:
            return [d.dim_value for d in vi.type.tensor_type.shape.dim]
    return None


CONTROL = "as built, second session"

REWRITES: dict[str, Callable[[Graph], int]] = {
    "relu-mask": relu_mask, "where-affine": where_affine, "pixel-shuffle": pixel_shuffle, "pow-constant": pow_constant,
}


def rewrite(model: onnx.ModelProto, names: list[str]) -> tuple[onnx.ModelProto, dict[str, int]]:
    out = copy.deepcopy(model)
    counts = {}
    for name in names:
        counts[name] = REWRITES[name](Graph(out, prefix=f"rw-{name}"))
    return out, counts


def session(model: onnx.ModelProto, threads: int):
    import onnxruntime as ort

    from lam_trt.providers import session_options

    opts = session_options(threads)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default=",".join(C.CONFIGS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", type=Path, default=C.BENCH_DIR)
    args = p.parse_args(argv)
    from lam_trt.export import build_attribution_graph
    from lam_trt.kernels import make_path

    variants = [[], *[[n] for n in REWRITES], list(REWRITES)]
    label = lambda v: "+".join(v) or "as built"  # noqa: E731
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lam-trt-rewrites-") as tmp:
        for name in [n for n in args.nets.split(",") if n]:
            size = C.bench_size(name)
            onnx_path = C.export_model(name, C.build_model(name), Path(tmp), size)
            base = build_attribution_graph(str(onnx_path), (3, *size))
            base = onnx.shape_inference.infer_shapes(base)
            path = make_path("lam", C.bench_image(size), steps=args.batch, sigma=C.SIGMA, kernel_size=C.KERNEL_SIZE)
            x, y = C.centre(size)
            feeds = {"path": path.points, "weights": path.weights,
                     "window": np.asarray([y, x, C.WINDOW_SIZE, C.WINDOW_SIZE], np.int64)}
            outputs = ["detector", "attribution", "contribution"]
            sessions, counts = {}, {}
            for v in variants:
                model, n = rewrite(base, v)
                if v and not sum(n.values()):
                    continue  # nothing to rewrite in this network: the graph as built
                counts[label(v)] = n
                sessions[label(v)] = session(model, args.threads)
            # A second session of the unchanged graph: the spread between the two is the noise floor.
            counts[CONTROL], sessions[CONTROL] = {}, session(base, args.threads)
            expected = sessions["as built"].run(outputs, feeds)
            agree = {}
            for key, s in sessions.items():
                got = s.run(outputs, feeds)
                agree[key] = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) for a, b in zip(got, expected))
            times: dict[str, list[float]] = {k: [] for k in sessions}
            keys = list(sessions)
            with C.LoadWatch() as watch:
                for i in range(args.repeats):
                    for key in keys[i % len(keys):] + keys[:i % len(keys)]:  # rotated: no variant always first
                        s = sessions[key]
                        t = time.perf_counter()
                        s.run(outputs, feeds)
                        times[key].append(time.perf_counter() - t)
            best = {k: 1e3 * min(v) / args.batch for k, v in times.items()}
            rows.append({"net": name, "config": C.CONFIGS[name].describe(), "lr_size": list(size),
                         "ms_per_image": best, "rewritten_nodes": counts, "max_rel_difference": agree,
                         "other_busy_processes": watch.seen})
            print(f"{name:8s} " + "  ".join(f"{k}: {v:.1f} ms ({sum(counts[k].values())} nodes)" for k, v in best.items())
                  + f"  max rel diff {max(agree.values()):.1e}"
                  + (f"  [disturbed by: {watch.seen}]" if watch.seen else ""), flush=True)
    data = {"date": C.now(), "argv": sys.argv[1:] if argv is None else argv, "batch": args.batch,
            "threads": args.threads, "repeats": args.repeats, "rows": rows, "load": [C.load_snapshot()],
            "wall_seconds": time.perf_counter() - start}
    (args.out / "results_rewrites.json").write_text(json.dumps(data, indent=1))
    keys = [label(v) for v in variants]
    keys.insert(1, CONTROL)
    lines = [f"Measured {data['date']} by `python bench/graph_rewrites.py {' '.join(data['argv'])}`: one run of the "
             f"attribution graph on {args.batch} path images (CPU, {args.threads} threads), ms per path image, best of "
             f"{args.repeats} interleaved runs; in brackets the speed-up over the graph as built. Every variant's "
             f"outputs agree with the original to the relative difference shown; '-': nothing to rewrite; the second "
             f"session of the unchanged graph shows the noise. Load: {C.describe_load(data['load'])}.",
             "", "| net | " + " | ".join(keys) + " | max rel diff |", "|---|" + "---:|" * (len(keys) + 1)]
    for r in rows:
        b = r["ms_per_image"]["as built"]
        cells = [("-" if k not in r["ms_per_image"] else f"{r['ms_per_image'][k]:.1f}"
                  + ("" if k == "as built" else f" ({b / r['ms_per_image'][k]:.2f}x"
                     + ("" if k == CONTROL else f", {sum(r['rewritten_nodes'][k].values())} nodes") + ")"))
                 for k in keys]
        mark = " (!)" if r.get("other_busy_processes") else ""
        lines.append(f"| {r['net']}{mark} | " + " | ".join(cells) + f" | {max(r['max_rel_difference'].values()):.0e} |")
    C.replace_section("rewrites", "\n".join(lines), args.out / "RESULTS.md")
    print(f"wrote {args.out / 'results_rewrites.json'} ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
