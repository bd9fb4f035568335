"""The LAM paper's study for any set of models: PSNR/SSIM, diffusion index, receptive field, size.

Metrics follow BasicSR (``basicsr/metrics/psnr_ssim.py`` with ``test_y_channel=True``,
``crop_border=scale``): Y of BT.601 YCbCr in 16-235, computed in float32 from the uint8 images,
a border of ``scale`` pixels shaved; SSIM with an 11x11 Gaussian window (sigma 1.5) on 0-255
values, averaged over the valid part of the map.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import correlate1d

from lam_trt.batch.inputs import expand_inputs
from lam_trt.batch.rows import BatchParams, describe_error, image_identity, window_row
from lam_trt.errors import InputError
from lam_trt.io import atomic_write, write_json, write_text

# BasicSR's bgr2ycbcr(y_only=True) weights, in RGB order, for values in [0, 1]; Y is in 16..235.
Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float32)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """Y (0-255 scale, not rounded) of a uint8 HWC RGB image, as BasicSR's to_y_channel."""
    img = rgb.astype(np.float32) / 255.0
    return (img @ Y_WEIGHTS + 16.0).astype(np.float64)


def _shaved_y(img: np.ndarray, border: int) -> np.ndarray:
    img = img[border:img.shape[0] - border, border:img.shape[1] - border] if border else img
    return y_channel(img)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """PSNR in dB of two uint8 HWC RGB images on Y, ``border`` pixels shaved (inf when equal)."""
    mse = float(np.mean((_shaved_y(sr, border) - _shaved_y(hr, border)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """SSIM of two uint8 HWC RGB images on Y, ``border`` pixels shaved."""
    return _ssim(_shaved_y(sr, border), _shaved_y(hr, border))


def _gaussian_window() -> np.ndarray:
    offsets = np.arange(SSIM_WINDOW) - SSIM_WINDOW // 2
    g = np.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _blur_valid(img: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local means over the positions where the whole window fits."""
    g, r = _gaussian_window(), SSIM_WINDOW // 2
    out = correlate1d(correlate1d(img, g, axis=0), g, axis=1)
    return out[r:-r, r:-r]


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after the border, got {a.shape}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _blur_valid(a), _blur_valid(b)
    var_a = _blur_valid(a * a) - mu_a**2
    var_b = _blur_valid(b * b) - mu_b**2
    cov = _blur_valid(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


# ------------------------------------------------------------------------------------- the study

Row = dict[str, Any]
ROWS_FILE, RUN_FILE = "rows.jsonl", "study_run.json"
TABLE_COLUMNS = ("model", "architecture", "parameters", "macs_per_lr_pixel", "receptive_field", "psnr_y",
                 "ssim_y", "di_mean", "di_std", "di_median", "windows", "images", "errors")


@dataclass(frozen=True)
class ModelInfo:
    """What the study reports about a model without running it (``lam-trt inspect``'s analysis)."""

    path: str
    name: str
    architecture: str
    sha256: str
    scale: int | None
    parameters: int
    macs_per_lr_pixel: float
    receptive_field: Any
    fixed_lr_size: tuple[int, int] | None
    analysis_size: tuple[int, int]


def describe_model(path: str | os.PathLike) -> ModelInfo:
    from lam_trt.export import inspect_model
    from lam_trt.export import model_sha256

    report = inspect_model(path)
    dims = report["inputs"][0]["shape"][2:]
    fixed = tuple(dims) if all(isinstance(d, int) and d > 0 for d in dims) else None
    scale = report["scale"]
    return ModelInfo(
        path=str(path), name=Path(path).stem, architecture=report["metadata"].get("architecture", Path(path).stem),
        sha256=model_sha256(path), scale=int(scale) if scale and float(scale).is_integer() else None,
        parameters=int(report["parameters"]), macs_per_lr_pixel=report["gflops_per_lr_pixel"] * 1e9 / 2,
        receptive_field=report["receptive_field"], fixed_lr_size=fixed,  # type: ignore[arg-type]
        analysis_size=tuple(report["analysis_size"]))  # type: ignore[arg-type]


def check_scales(models: Sequence[ModelInfo], scale: int) -> None:
    """Every model must upscale by ``scale`` (the PSNR border and the LR images depend on it)."""
    if scale < 1:
        raise InputError(f"--scale must be >= 1, got {scale}")
    scales = {m.name: m.scale for m in models}
    if len(set(scales.values())) > 1:
        listing = ", ".join(f"{name} x{s if s is not None else '?'}" for name, s in scales.items())
        raise InputError(f"the models have different scales ({listing}); a study compares models of one scale")
    if models and models[0].scale != scale:
        raise InputError(f"the models upscale x{models[0].scale}, not --scale {scale}")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError("two models have the same file name; the study labels models by file name")


def run_params(params: BatchParams, scale: int) -> dict[str, Any]:
    return {"scale": scale, **params.to_dict()}


# ------------------------------------------------------------------------------------------ rows

def row_key(row: Row) -> tuple[Any, ...]:
    return (row["model_sha256"], row["kind"], row["image"], row.get("window_x"), row.get("window_y"),
            row.get("window_size"))


class RowLog:
    """OUT/rows.jsonl: append-only, one fsync per row; a torn last line (a killed run) is cut off."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / ROWS_FILE

    def read(self) -> list[Row]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        try:
            return [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise InputError(f"{self.path} is damaged (a line is not JSON); use another --out") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One writer per folder: a second study on the same --out is refused, not interleaved."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / ".study.lock", "a") as f:
            try:
                import fcntl
            except ImportError:  # Windows: no advisory locks
                yield
                return
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(f"another lam-trt study is writing {self.path.parent}; wait for it "
                                 "or use another --out") from None
            yield

    def append(self, row: Row) -> None:
        with open(self.path, "ab") as f:
            f.write((json.dumps(row, allow_nan=False) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def check_earlier_run(out_dir: Path, params: dict[str, Any]) -> None:
    """Refuse to mix rows made with other settings into one folder."""
    path = out_dir / RUN_FILE
    if not path.exists():
        if (out_dir / ROWS_FILE).exists():
            raise InputError(f"{out_dir / ROWS_FILE} exists but {path} does not; use another --out")
        return
    try:
        old = json.loads(path.read_text())["parameters"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{path} is unreadable; use another --out") from None
    diffs = [f"{k}: {old.get(k)!r} before, {params.get(k)!r} now" for k in sorted(set(old) | set(params))
             if old.get(k) != params.get(k)]
    if diffs:
        raise InputError(f"{out_dir} holds a study made with other settings ({'; '.join(diffs)}); "
                         "use another --out")


def _to_uint8_hwc(chw: np.ndarray) -> np.ndarray:
    return np.round(np.clip(chw, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)


def _rgb(hwc: np.ndarray) -> np.ndarray:
    return np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else hwc


def image_quality(attributor: Any, info: ModelInfo, image: str, scale: int) -> tuple[Row, np.ndarray | None]:
    """The image row (PSNR and SSIM on Y, any crop made) and the LR image; None for the LR when the
    image cannot be read or the model cannot take it (then the row says why)."""
    start = time.perf_counter()
    row: Row = {"model": info.name, "model_sha256": info.sha256, "kind": "image", "image": image,
                "psnr_y": None, "ssim_y": None, "note": None, "error": None}
    lr = None
    try:
        hr, lr, row["note"] = _hr_and_lr(attributor, info, image, scale)
        sr = _rgb(_to_uint8_hwc(attributor.forward(lr[None])[0]))
        reference = _rgb(_to_uint8_hwc(hr))
        if sr.shape != reference.shape:
            raise InputError(f"the model's output {sr.shape[1]}x{sr.shape[0]} is not the HR size "
                             f"{reference.shape[1]}x{reference.shape[0]}")
        row["psnr_y"] = _finite(psnr_y(sr, reference, scale))
        row["ssim_y"] = ssim_y(sr, reference, scale)
    except Exception as e:  # noqa: BLE001 - one bad image is its row, the study goes on
        row["error"] = describe_error(e)
    row["seconds"] = round(time.perf_counter() - start, 6)
    return row, lr


def _hr_and_lr(attributor: Any, info: ModelInfo, image: str, scale: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The HR image cropped to a multiple of the scale, its LR, and a note when it was cropped."""
    from lam_trt.images import hr_to_lr, load_image

    hr = load_image(image, attributor.channels)
    h, w = hr.shape[1] // scale * scale, hr.shape[2] // scale * scale
    note = (f"HR {hr.shape[2]}x{hr.shape[1]} cropped to {w}x{h}, a multiple of the scale {scale}"
            if (h, w) != hr.shape[1:] else None)
    lr = hr_to_lr(hr, scale)
    if info.fixed_lr_size and tuple(lr.shape[1:]) != info.fixed_lr_size:
        fh, fw = info.fixed_lr_size
        raise InputError(f"the model takes a fixed {fw}x{fh} LR input; this image gives "
                         f"{lr.shape[2]}x{lr.shape[1]} (HR {w}x{h})")
    return hr[:, :h, :w], lr, note


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def window_rows(attributor: Any, info: ModelInfo, image: str, lr: np.ndarray, params: BatchParams,
                done: set[tuple[Any, ...]]) -> Iterator[Row]:
    """One DI row per window not yet measured; one error row when the image has no room for a window."""
    base = {"model": info.name, "model_sha256": info.sha256, "kind": "window", "image": image}
    try:
        runner, _ = attributor.runner(tuple(lr.shape))
        windows = params.windows.windows(runner.output_shape, params.size)
    except Exception as e:  # noqa: BLE001
        row = {**base, "window_x": None, "window_y": None, "window_size": None, "error": describe_error(e)}
        if row_key(row) not in done:
            yield row
        return
    common = {"model_sha256": info.sha256, "provider": runner.provider}
    for window in windows:
        key = (info.sha256, "window", image, *window)
        if key in done:
            continue
        made = window_row(attributor, lr, image, image_identity(image), window, params, common)
        yield {**base, "window_x": made["window_x"], "window_y": made["window_y"],
               "window_size": made["window_size"], "diffusion_index": made["diffusion_index"],
               "gini": made["gini"], "completeness_gap_relative": made["completeness_gap_relative"],
               "error": made["error"], "seconds": made["seconds"]}


# ------------------------------------------------------------------------------- summary, tables

def summarise_model(info: ModelInfo, rows: Sequence[Row]) -> Row:
    """One table row: quality over the images, DI mean and spread over every window of every image."""
    mine = [r for r in rows if r["model_sha256"] == info.sha256]
    images = [r for r in mine if r["kind"] == "image" and not r.get("error")]
    di = np.array([r["diffusion_index"] for r in mine if r["kind"] == "window" and not r.get("error")
                   and r.get("diffusion_index") is not None], dtype=np.float64)
    return {
        "model": info.name, "architecture": info.architecture, "parameters": info.parameters,
        "macs_per_lr_pixel": round(info.macs_per_lr_pixel), "receptive_field": info.receptive_field,
        "psnr_y": _mean([r["psnr_y"] for r in images]), "ssim_y": _mean([r["ssim_y"] for r in images]),
        "di_mean": float(di.mean()) if di.size else None, "di_std": float(di.std()) if di.size else None,
        "di_median": float(np.median(di)) if di.size else None, "windows": int(di.size),
        "images": len(images), "errors": sum(1 for r in mine if r.get("error")),
        "notes": sorted({r["note"] for r in mine if r.get("note")}),
        "path": info.path, "sha256": info.sha256, "analysis_size_lr": list(info.analysis_size),
    }


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def correlations(table: Sequence[Row]) -> dict[str, Any]:
    """Pearson's r of PSNR on log10 DI (the paper's Fig. 7 fit) and on DI, and Spearman's rho, across
    the models that have both; None with a reason when fewer than three do."""
    from scipy import stats

    pairs = [(r["di_mean"], r["psnr_y"]) for r in table
             if r["di_mean"] is not None and r["psnr_y"] is not None and r["di_mean"] > 0]
    out: dict[str, Any] = {"models": len(pairs)}
    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return {**out, "pearson_log_di": None, "pearson_di": None, "spearman": None,
                "note": "needs at least three models with a DI and a PSNR, not all equal"}
    di, psnr = np.array(pairs).T
    pl, pd, sp = stats.pearsonr(np.log10(di), psnr), stats.pearsonr(di, psnr), stats.spearmanr(di, psnr)
    slope, intercept = np.polyfit(np.log10(di), psnr, 1)
    return {**out, "pearson_log_di": {"r": float(pl[0]), "p": float(pl[1])},
            "pearson_di": {"r": float(pd[0]), "p": float(pd[1])},
            "spearman": {"rho": float(sp[0]), "p": float(sp[1])},
            "fit_psnr_on_log10_di": {"slope": float(slope), "intercept": float(intercept)}}


def _cell(v: Any, column: str) -> str:
    if v is None:
        return ""
    if column in ("psnr_y",):
        return f"{v:.2f}"
    if column in ("ssim_y",):
        return f"{v:.4f}"
    if column.startswith("di_"):
        return f"{v:.3f}"
    return str(v)


def markdown_table(table: Sequence[Row]) -> str:
    head = "| " + " | ".join(TABLE_COLUMNS) + " |\n|" + "---|" * len(TABLE_COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(_cell(r[c], c) for c in TABLE_COLUMNS) + " |\n" for r in table)


def csv_table(table: Sequence[Row]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    writer.writerows([["" if r[c] is None else r[c] for c in TABLE_COLUMNS] for r in table])
    return buf.getvalue()


def markdown_report(table: Sequence[Row], corr: dict[str, Any], params: dict[str, Any]) -> str:
    lines = [markdown_table(table), ""]
    if corr.get("spearman"):
        lines.append(f"Across {corr['models']} models: Pearson r(log10 DI, PSNR) = {corr['pearson_log_di']['r']:.3f} "
                     f"(p = {corr['pearson_log_di']['p']:.2g}), Pearson r(DI, PSNR) = {corr['pearson_di']['r']:.3f}, "
                     f"Spearman rho = {corr['spearman']['rho']:.3f} (p = {corr['spearman']['p']:.2g}).")
    else:
        lines.append(f"Correlations: {corr['note']}.")
    lines.append(f"\nPSNR/SSIM: Y channel (BT.601), {params['scale']}-pixel border shaved (BasicSR). DI: "
                 f"windows {params['windows']}, size {params['size']}, {params['steps']} steps, "
                 f"sigma {params['sigma']}. MACs per LR pixel at the LR size in analysis_size_lr (study.json).")
    for r in table:
        for note in r["notes"]:
            lines.append(f"- {r['model']}: {note}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- plots

def _save_figure(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))


def _colours(table: Sequence[Row]) -> dict[str, Any]:
    from matplotlib import colormaps

    archs = list(dict.fromkeys(r["architecture"] for r in table))
    cmap = colormaps["tab10"]
    return {a: cmap(i % 10) for i, a in enumerate(archs)}


def plot_di_vs_psnr(table: Sequence[Row], corr: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    colours = _colours(table)
    shown = [r for r in table if r["di_mean"] is not None and r["psnr_y"] is not None and r["di_mean"] > 0]
    for r in shown:
        ax.scatter(r["di_mean"], r["psnr_y"], color=colours[r["architecture"]], s=36, zorder=3)
        ax.annotate(r["model"], (r["di_mean"], r["psnr_y"]), textcoords="offset points", xytext=(4, 3), fontsize=8)
    if corr.get("fit_psnr_on_log10_di") and shown:
        fit = corr["fit_psnr_on_log10_di"]
        xs = np.geomspace(min(r["di_mean"] for r in shown), max(r["di_mean"] for r in shown), 50)
        ax.plot(xs, fit["slope"] * np.log10(xs) + fit["intercept"], color="grey", lw=1, ls="--")
        ax.set_title(f"Pearson r(log DI, PSNR) {corr['pearson_log_di']['r']:.2f}, "
                     f"Spearman rho {corr['spearman']['rho']:.2f} ({corr['models']} models)", fontsize=10)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("mean diffusion index (log scale)")
    ax.set_ylabel("PSNR on Y (dB)")
    ax.grid(alpha=0.3)
    return _save_figure(fig, path)


def plot_di_bars(table: Sequence[Row], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    shown = sorted((r for r in table if r["di_mean"] is not None), key=lambda r: r["di_mean"])
    fig = Figure(figsize=(max(4.0, 0.7 * len(shown) + 2), 4.2))
    ax = fig.add_subplot()
    colours = _colours(table)
    ax.bar(range(len(shown)), [r["di_mean"] for r in shown], yerr=[r["di_std"] for r in shown], capsize=3,
           color=[colours[r["architecture"]] for r in shown])
    ax.set_xticks(range(len(shown)), [r["model"] for r in shown], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("diffusion index (mean, bar: std over windows)")
    ax.legend(handles=[Patch(color=c, label=a) for a, c in colours.items()], fontsize=7, ncols=2)
    ax.grid(axis="y", alpha=0.3)
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------------------- a run

@dataclass
class StudyPlan:
    """A checked study: nothing is written until ``run_study`` runs it."""

    models: list[ModelInfo]
    attributors: list[Any]
    images: list[str]
    out_dir: Path
    params: BatchParams
    scale: int


def plan_study(models: Sequence[str | os.PathLike], inputs: Sequence[str], out_dir: str | os.PathLike,
               params: BatchParams, scale: int, provider: str = "auto", threads: int | None = None) -> StudyPlan:
    """Check every argument (the models' scales, the images, an earlier run in ``out_dir``)."""
    from lam_trt.attributor import Attributor

    if not models:
        raise InputError("no models given")
    params.check()
    infos = [describe_model(m) for m in models]
    check_scales(infos, scale)
    images = expand_inputs(inputs)
    attributors = [Attributor(m.path, provider=provider, threads=threads) for m in infos]
    check_earlier_run(Path(out_dir), run_params(params, scale))
    return StudyPlan(infos, attributors, images, Path(out_dir), params, scale)


def run_study(plan: StudyPlan, progress: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Measure every (model, image) and (model, image, window) not yet in OUT/rows.jsonl, appending
    each row as it is made; then write the table, the correlations and the two plots."""
    log = RowLog(plan.out_dir)
    with log.locked():
        return _run(plan, log, progress)


def _run(plan: StudyPlan, log: RowLog, progress: Callable[[str], None]) -> dict[str, Any]:
    out = plan.out_dir
    params = run_params(plan.params, plan.scale)
    if not (out / RUN_FILE).exists():
        write_json(out / RUN_FILE, {"parameters": params})
    rows = log.read()
    done = {row_key(r) for r in rows}
    kept = len(rows)

    def add(row: Row) -> None:
        log.append(row)
        rows.append(row)
        done.add(row_key(row))

    for i, (info, attributor) in enumerate(zip(plan.models, plan.attributors), 1):
        for j, image in enumerate(plan.images, 1):
            quality, lr = image_quality(attributor, info, image, plan.scale)
            if row_key(quality) not in done:
                add(quality)
            if lr is not None:
                for row in window_rows(attributor, info, image, lr, plan.params, done):
                    add(row)
            progress(_progress_line(i, len(plan.models), j, len(plan.images), info, image, rows))

    table = [summarise_model(info, rows) for info in plan.models]
    corr = correlations(table)
    files = write_outputs(out, table, corr, params)
    return {"table": table, "correlations": corr, "new_rows": len(rows) - kept, "kept_rows": kept,
            "errors": sum(r["errors"] for r in table), "files": files}


def _progress_line(i: int, n_models: int, j: int, n_images: int, info: ModelInfo, image: str,
                   rows: Sequence[Row]) -> str:
    mine = [r for r in rows if r["model_sha256"] == info.sha256 and r["image"] == image]
    quality = next((r for r in mine if r["kind"] == "image"), {})
    di = [r["diffusion_index"] for r in mine if r["kind"] == "window" and r.get("diffusion_index") is not None]
    errors = [r["error"] for r in mine if r.get("error")]
    text = f"model {i}/{n_models} {info.name}, image {j}/{n_images} {Path(image).name}: "
    if quality.get("psnr_y") is not None:
        text += f"PSNR {quality['psnr_y']:.2f} dB, "
    if quality.get("ssim_y") is not None:
        text += f"SSIM {quality['ssim_y']:.4f}, "
    text += f"DI {np.mean(di):.3f} over {len(di)} windows" if di else "no DI"
    text += f"; note: {quality['note']}" if quality.get("note") else ""
    return text + (f"; error: {errors[0]}" if errors else "")


def write_outputs(out: Path, table: Sequence[Row], corr: dict[str, Any], params: dict[str, Any]) -> dict[str, str]:
    files = {"rows": out / ROWS_FILE, "json": out / "study.json", "csv": out / "study.csv",
             "markdown": out / "study.md", "scatter": out / "di_vs_psnr.png", "bars": out / "di_by_model.png"}
    write_json(files["json"], {"parameters": params, "models": list(table), "correlations": corr})
    write_text(files["csv"], csv_table(table))
    write_text(files["markdown"], markdown_report(table, corr, params))
    plot_di_vs_psnr(table, corr, files["scatter"])
    plot_di_bars(table, files["bars"])
    return {k: str(v) for k, v in files.items()}
