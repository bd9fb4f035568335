"""What the benchmark scripts share: the zoo configurations, the test image, machine and load facts,
and writing one section of bench/RESULTS.md without touching the rest."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"

# The paper's setting (LAM-SPEC.md): 64x64 LR input, x4, a 16x16 window at the centre, sigma 1.2,
# kernel 9, right Riemann sum; the paper uses 100 steps, the authors' notebook 50.
LR_SIZE = (64, 64)
SCALE = 4
WINDOW_SIZE = 16
SIGMA = 1.2
KERNEL_SIZE = 9


@dataclass(frozen=True)
class NetConfig:
    """How a zoo network is built for the benchmark; ``options`` go to ``zoo.build``."""

    options: dict[str, Any] = field(default_factory=dict)
    note: str = "published configuration"
    size: tuple[int, int] = (32, 32)   # LR input size

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.options.items()) or "published"


# Published widths everywhere (per-layer shapes are the paper's); depth cut, and the LR image
# 32x32 instead of 64x64, where the paper's setting would take minutes per attribution on a 2-core
# CPU (at x4 the upsampler of a width-64 network alone costs ~3 GMAC per 64x64 image). Every method
# pays the same per-layer cost, so the ratios hold for the published depths; FSRCNN runs as published.
CONFIGS: dict[str, NetConfig] = {
    "fsrcnn": NetConfig({}, "published (d=56, s=12, m=4)", (64, 64)),
    "edsr": NetConfig({"depth": 4}, "EDSR-baseline width 64; 4 of 16 residual blocks"),
    "carn": NetConfig({"depth": 1}, "width 64; 1 of 3 cascading blocks"),
    "msrn": NetConfig({"depth": 2}, "width 64; 2 of 8 MSRB blocks"),
    "rrdbnet": NetConfig({"depth": 1}, "width 64, growth 32; 1 of 23 RRDB blocks"),
    "imdn": NetConfig({"depth": 2}, "width 64; 2 of 6 IMDB blocks"),
    "rfdn": NetConfig({"depth": 2}, "width 50; 2 of 4 RFDB blocks"),
    "pan": NetConfig({"depth": 4}, "width 40; 4 of 16 SC-PA blocks"),
    "rcan": NetConfig({"depth": 1, "n_resblocks": 4}, "width 64; 1 of 10 groups, 4 of 20 RCABs each"),
    "rnan": NetConfig({"depth": 2}, "width 64; 2 of 10 groups (both non-local, the minimum)"),
    "san": NetConfig({"depth": 1, "n_resblocks": 2}, "width 64; 1 of 20 groups, 2 of 10 blocks each"),
    "swinir": NetConfig({"width": 60, "depth": 1, "blocks_per_layer": 2},
                        "lightweight width 60, 6 heads, window 8; 1 of 4 stages, 2 of 6 blocks"),
}


def bench_size(name: str) -> tuple[int, int]:
    return CONFIGS[name].size


def build_model(name: str, seed: int = 0):
    """The zoo network of CONFIGS[name] with seeded random weights, float32, eval mode."""
    import torch

    from lam_trt.export.zoo import build

    torch.manual_seed(seed)
    return build(name, scale=SCALE, **CONFIGS[name].options).float().eval()


EXPORT_TOLERANCE = 1e-3  # random weights: attention nets differ from PyTorch by ~1e-4 in float32


def export_model(name: str, model, folder: Path, size: tuple[int, int]) -> Path:
    """ONNX export (checked against PyTorch to EXPORT_TOLERANCE), once per folder, name and size."""
    from lam_trt.export.torch_export import export_onnx
    from lam_trt.export.zoo import FIXED_SIZE

    path = folder / f"{name}-{size[0]}x{size[1]}.onnx"
    if not path.exists():
        export_onnx(model, path, in_channels=3, size=size, fixed_hw=name in FIXED_SIZE, tolerance=EXPORT_TOLERANCE)
    return path


def bench_image(size: tuple[int, int] = LR_SIZE) -> np.ndarray:
    """The demo LR photograph (64x64), or its centre when smaller; the bench's synthetic image when larger."""
    from importlib import resources

    from lam_trt.bench import synthetic_image
    from lam_trt.images import load_image

    h, w = size
    if h <= 64 and w <= 64:
        with resources.as_file(resources.files("lam_trt") / "data" / "demo_lr.png") as p:
            image = load_image(p, 3)
        top, left = (image.shape[1] - h) // 2, (image.shape[2] - w) // 2
        return np.ascontiguousarray(image[:, top:top + h, left:left + w])
    return synthetic_image(3, size)


def image_label(size: tuple[int, int]) -> str:
    h, w = size
    if (h, w) == (64, 64):
        return "the demo LR photograph"
    return "the centre of the demo LR photograph" if h <= 64 and w <= 64 else "a synthetic image"


def centre(size: tuple[int, int]) -> tuple[int, int]:
    """(x, y) of the centred window in the SR output."""
    from lam_trt.bench import centre_window

    return centre_window((size[0] * SCALE, size[1] * SCALE), WINDOW_SIZE)


# ---------------------------------------------------------------------------------------------
# Machine, versions and load.

def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / (1 << 20)
    except (OSError, ValueError, IndexError):
        mem_gib = float("nan")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1), "platform": platform.platform()}


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import scipy
    import torch

    import lam_trt

    return {"lam_trt": lam_trt.__version__, "git": _git_head(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__}


def _git_head() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def busy_processes(interval: float = 1.0, threshold: float = 10.0) -> list[dict[str, Any]]:
    """Other processes that used more than ``threshold`` % of one core over ``interval`` seconds."""
    def ticks() -> dict[int, tuple[int, str]]:
        out = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    raw = f.read()
                name = raw[raw.index("(") + 1:raw.rindex(")")]
                fields = raw[raw.rindex(")") + 2:].split()
                out[int(entry.name)] = (int(fields[11]) + int(fields[12]), name)
            except (OSError, ValueError, IndexError):
                continue
        return out

    if not os.path.isdir("/proc"):
        return []
    hz = os.sysconf("SC_CLK_TCK")
    first = ticks()
    time.sleep(interval)
    second = ticks()
    me = os.getpid()
    busy = []
    for pid, (t, name) in second.items():
        if pid == me or pid not in first:
            continue
        percent = 100.0 * (t - first[pid][0]) / hz / interval
        if percent > threshold:
            busy.append({"pid": pid, "name": name, "cpu_percent": round(percent)})
    return sorted(busy, key=lambda p: -p["cpu_percent"])


class LoadWatch:
    """Samples, in a background thread, which other processes keep a core busy while a block runs."""

    def __init__(self, every: float = 4.0) -> None:
        import threading

        self.every, self.seen = every, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            for p in busy_processes(interval=1.0, threshold=25.0):
                self.seen[p["name"]] = max(self.seen.get(p["name"], 0), p["cpu_percent"])

    def __enter__(self) -> "LoadWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load_snapshot() -> dict[str, Any]:
    """Load average and the other busy processes right now."""
    return {"time": now(), "loadavg": [round(v, 2) for v in os.getloadavg()], "busy_processes": busy_processes()}


# ---------------------------------------------------------------------------------------------
# RESULTS.md sections.

def replace_section(name: str, text: str, path: Path = RESULTS_MD) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` (append if absent)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else "# lam-trt benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    """Relative L2 distance of ``a`` from the reference ``b`` (float64)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-30))


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def fmt_seconds(v: float) -> str:
    if not np.isfinite(v):
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def describe_load(snapshots: list[dict[str, Any]]) -> str:
    """One line: load averages and the most other busy processes seen while measuring."""
    if not snapshots:
        return "load not recorded"
    most = max(snapshots, key=lambda s: len(s["busy_processes"]))
    loads = [s["loadavg"][0] for s in snapshots]
    names = ", ".join(f"{p['name']} {p['cpu_percent']}%" for p in most["busy_processes"][:6]) or "none"
    return (f"1-min load average {min(loads):.2f} to {max(loads):.2f} over {len(snapshots)} samples; "
            f"at most {len(most['busy_processes'])} other processes above 10% CPU ({names})")
