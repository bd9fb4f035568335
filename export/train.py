"""Train a zoo network (``lam_trt.export.zoo``) for super-resolution on the photographs inside
scikit-image's wheel, within a CPU-time budget, and write what the study needs:

    python -m lam_trt.export.train --arch edsr --width 32 --depth 4 --name edsr_d4 \\
        --budget-s 90 --out bench/study_models

writes NAME.safetensors (weights), NAME.onnx (checked export) and NAME.json (settings, steps, CPU
seconds, held-out PSNR). ``--preset NAME`` takes the architecture and sizes from ``STUDY``, the
networks of bench/STUDY.md; ``--held-out DIR`` writes the held-out HR crops the study measures on.

The budget is met by timing a few steps on a throw-away copy, then training a fixed number of steps
(recorded in the JSON): ``--steps N`` with the same seed repeats the run exactly on one thread.
"""
from __future__ import annotations

import argparse
import copy
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skdata

from lam_trt.io import write_json

TRAIN_IMAGES = ["astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                "motorcycle_left", "brick", "camera", "grass", "gravel", "coins", "page", "text", "moon"]
# (image, row, col) of the 256x256 HR crops held out for evaluation: the paper's LAM image size.
HELD_OUT_CROPS = [("chelsea", 20, 120), ("coffee", 40, 0), ("coffee", 100, 300)]
HELD_OUT_SIZE = 256
CALIBRATION_STEPS = 4
# SAN's Newton-Schulz square root differs by ~6e-4 (relative) between ORT and PyTorch in float32.
EXPORT_TOLERANCE = 2e-3


@dataclass(frozen=True)
class Network:
    """One study network: a zoo architecture and its sizes (None: the published one)."""

    arch: str
    width: int | None = None
    depth: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    learning_rate: float = 1e-3


# Several families and depths, all small enough to train in a few CPU minutes.
STUDY: dict[str, Network] = {
    "fsrcnn": Network("fsrcnn"),
    "edsr_d4": Network("edsr", 24, 4),
    "edsr_d12": Network("edsr", 24, 12),
    "imdn": Network("imdn", 24, 3),
    "rcan_small": Network("rcan", 24, 2, {"n_resblocks": 4, "reduction": 8}),
    "rnan_small": Network("rnan", 16, 2),
    "san_small": Network("san", 24, 2, {"n_resblocks": 3, "reduction": 8}),
    "swinir_small": Network("swinir", 36, 2, {"blocks_per_layer": 2, "num_heads": 3, "window_size": 8,
                                              "img_size": 64, "upsampler": "pixelshuffledirect"},
                            learning_rate=5e-4),
}


# --------------------------------------------------------------------------------------- images

def load_rgb(name: str, scale: int = 4) -> np.ndarray:
    """skimage.data.NAME as uint8 HWC RGB, cropped to a multiple of the scale."""
    img = skdata.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skdata, name)()
    img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    return np.ascontiguousarray(img[:h, :w])


def downscale(hr: np.ndarray, scale: int = 4) -> np.ndarray:
    """LAM-SPEC LR: PIL's antialiased bicubic on the uint8 RGB picture."""
    h, w = hr.shape[:2]
    return np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC))


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255.0)


def held_out_crops() -> dict[str, np.ndarray]:
    """The held-out 256x256 HR crops by file name (uint8 HWC)."""
    crops = {}
    for name, row, col in HELD_OUT_CROPS:
        crops[f"{name}_{row}_{col}.png"] = load_rgb(name)[row:row + HELD_OUT_SIZE, col:col + HELD_OUT_SIZE]
    return crops


def random_batch(pairs: list[tuple[torch.Tensor, torch.Tensor]], gen: torch.Generator,
                 batch: int, lr_size: int, scale: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned random LR/HR crops with random flips and transposes."""
    crops = []
    for _ in range(batch):
        lr, hr = pairs[int(torch.randint(len(pairs), (1,), generator=gen))]
        i, j = (int(torch.randint(n - lr_size + 1, (1,), generator=gen)) for n in lr.shape[1:])
        lr = lr[:, i:i + lr_size, j:j + lr_size]
        hr = hr[:, i * scale:(i + lr_size) * scale, j * scale:(j + lr_size) * scale]
        flip, transpose = torch.randint(2, (2,), generator=gen).tolist()
        lr, hr = (lr.flip(2), hr.flip(2)) if flip else (lr, hr)
        lr, hr = (lr.transpose(1, 2), hr.transpose(1, 2)) if transpose else (lr, hr)
        crops.append((lr, hr))
    return torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])


def training_pairs(names: list[str], scale: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(to_tensor(downscale(hr, scale)), to_tensor(hr)) for hr in (load_rgb(n, scale) for n in names)]


# ------------------------------------------------------------------------------------- training

def optimise(model: torch.nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]], gen: torch.Generator,
             steps: int, batch: int, lr_size: int, scale: int = 4, learning_rate: float = 1e-3,
             log: Callable[[str], None] = print) -> torch.nn.Module:
    """L1 loss, Adam, cosine learning rate to 1e-5 over ``steps``; returns the model in eval mode."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-5)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        lr, hr = random_batch(pairs, gen, batch, lr_size, scale)
        loss = F.l1_loss(model(lr), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            log(f"step {step}/{steps}  L1 {loss.item():.4f}  {time.perf_counter() - start:.0f} s")
    return model.eval()


def steps_for_budget(model: torch.nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]], budget_s: float,
                     batch: int, lr_size: int, scale: int) -> tuple[int, float]:
    """How many steps fit in ``budget_s`` CPU seconds, timed on a copy (the real run is untouched)."""
    probe = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(12345)
    optimise(probe, pairs, gen, 1, batch, lr_size, scale)  # first step: allocations, lazy init
    start = time.process_time()
    optimise(probe, pairs, gen, CALIBRATION_STEPS, batch, lr_size, scale)
    per_step = (time.process_time() - start) / CALIBRATION_STEPS
    return max(1, int(budget_s / per_step)), per_step


# ------------------------------------------------------------------------------------ evaluation

def super_resolve(model: torch.nn.Module, lr: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        sr = model(to_tensor(lr)[None])[0].clamp(0, 1)
    return (sr.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def held_out_psnr(model: torch.nn.Module, scale: int) -> dict[str, float]:
    """Mean Y-channel PSNR (BasicSR's convention, as `lam-trt study` measures) on the held-out crops,
    for the model and for bicubic upscaling."""
    from lam_trt.study import psnr_y

    model_db, bicubic_db = [], []
    for hr in held_out_crops().values():
        lr = downscale(hr, scale)
        bicubic = np.asarray(Image.fromarray(lr).resize(hr.shape[1::-1], Image.BICUBIC))
        model_db.append(psnr_y(super_resolve(model, lr), hr, scale))
        bicubic_db.append(psnr_y(bicubic, hr, scale))
    return {"model": round(float(np.mean(model_db)), 3), "bicubic": round(float(np.mean(bicubic_db)), 3)}


def export_onnx(model: torch.nn.Module, path: Path, arch: str, lr_size: int) -> dict[str, Any]:
    """The zoo's checked export; architectures with window attention get a fixed LR size."""
    from lam_trt.export.torch_export import export_onnx as checked_export
    from lam_trt.export.zoo import FIXED_SIZE

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = checked_export(model, path, in_channels=3, size=(lr_size, lr_size),
                                fixed_hw=arch in FIXED_SIZE, metadata={"architecture": arch},
                                tolerance=EXPORT_TOLERANCE)
    return report.to_dict()


# -------------------------------------------------------------------------------------------- main

def train_network(name: str, net: Network, out: Path, budget_s: float | None, steps: int | None, batch: int,
                  lr_size: int, seed: int, scale: int = 4) -> dict[str, Any]:
    from safetensors.torch import save_file

    from lam_trt.export.zoo import build

    torch.manual_seed(seed)
    pairs = training_pairs(TRAIN_IMAGES, scale)
    model = build(net.arch, scale, net.width, net.depth, **net.options)
    per_step = None
    if steps is None:
        steps, per_step = steps_for_budget(model, pairs, budget_s, batch, lr_size, scale)
        print(f"{name}: {per_step:.3f} CPU s per step -> {steps} steps in {budget_s:g} s", flush=True)
    gen = torch.Generator().manual_seed(seed)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    optimise(model, pairs, gen, steps, batch, lr_size, scale, net.learning_rate,
             log=lambda line: print(f"{name}: {line}", flush=True))
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(out / f"{name}.safetensors"))
    onnx_size = HELD_OUT_SIZE // scale
    export = export_onnx(model, out / f"{name}.onnx", net.arch, onnx_size)
    psnr = held_out_psnr(model, scale)
    print(f"{name}: held-out PSNR (Y) {psnr['model']:.2f} dB, bicubic {psnr['bicubic']:.2f} dB", flush=True)
    info = {
        "name": name, "architecture": net.arch, "width": net.width, "depth": net.depth, "options": net.options,
        "scale": scale, "parameters": sum(p.numel() for p in model.parameters()),
        "training_images": [f"skimage.data.{n}" for n in TRAIN_IMAGES],
        "held_out_crops": [{"image": f"skimage.data.{n}", "row": r, "col": c, "size": HELD_OUT_SIZE}
                           for n, r, c in HELD_OUT_CROPS],
        "lr_degradation": f"PIL resize BICUBIC (antialiased) of uint8 RGB, /{scale}",
        "loss": "L1", "optimizer": f"Adam lr {net.learning_rate:g}, cosine to 1e-5",
        "budget_cpu_s": budget_s, "calibrated_cpu_s_per_step": per_step,
        "steps": steps, "batch": batch, "lr_patch": lr_size, "seed": seed, "threads": torch.get_num_threads(),
        "cpu_seconds": round(cpu_s, 1), "wall_seconds": round(wall_s, 1),
        "psnr_y_held_out_db": psnr,
        "psnr_note": "mean over the held-out crops; Y channel (BT.601), 4-pixel border shaved; "
                     "bicubic = PIL BICUBIC upscale",
        "onnx": {"fixed_lr_size": onnx_size if not export["dynamic_hw"] else None,
                 "max_rel_error": export["max_rel_error"]},
        "reproduce": f"python -m lam_trt.export.train --preset {name} --steps {steps} --seed {seed}"
                     if name in STUDY else None,
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
    }
    write_json(out / f"{name}.json", info)
    return info


def write_held_out(folder: Path) -> None:
    from lam_trt.images import save_png

    for name, img in held_out_crops().items():
        save_png(folder / name, img)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(STUDY), help="a network of the study (sets --arch and sizes)")
    parser.add_argument("--arch", help="zoo architecture (see lam_trt.export.zoo.ARCHITECTURES)")
    parser.add_argument("--width", type=int)
    parser.add_argument("--depth", type=int)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=INT",
                        help="another integer constructor option, e.g. n_resblocks=4")
    parser.add_argument("--name", help="output file stem (default: the preset or the architecture)")
    parser.add_argument("--out", type=Path, default=Path("bench/study_models"))
    parser.add_argument("--budget-s", type=float, default=90.0, help="CPU seconds of training")
    parser.add_argument("--steps", type=int, help="train exactly this many steps (ignores --budget-s)")
    parser.add_argument("--learning-rate", type=float)
    for flag, default in (("--batch", 16), ("--lr-size", 24), ("--seed", 0), ("--threads", 1)):
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--held-out", type=Path, metavar="DIR", help="only write the held-out HR crops to DIR")
    args = parser.parse_args(argv)
    if args.held_out:
        write_held_out(args.held_out)
        return
    if (args.preset is None) == (args.arch is None):
        parser.error("give exactly one of --preset and --arch")
    torch.set_num_threads(args.threads)  # 1 thread: the run repeats exactly
    net = STUDY[args.preset] if args.preset else Network(
        args.arch, args.width, args.depth, dict(_option(o, parser) for o in args.option))
    if args.learning_rate is not None:
        net = Network(net.arch, net.width, net.depth, net.options, args.learning_rate)
    train_network(args.name or args.preset or args.arch, net, args.out, args.budget_s, args.steps,
                  args.batch, args.lr_size, args.seed)


def _option(text: str, parser: argparse.ArgumentParser) -> tuple[str, int]:
    key, _, value = text.partition("=")
    if not key or not value.lstrip("-").isdigit():
        parser.error(f"--option needs KEY=INT, got {text!r}")
    return key, int(value)


if __name__ == "__main__":
    main()
