"""Train the bundled demo x4 SR network on scikit-image's pictures: `python -m
lam_trt.export.train_demo --out lam_trt/data` writes demo_x4.onnx, demo_lr.png (64x64 LR crop of
the held-out picture) and demo_model.json. Small, but with a global operation (channel attention),
so its LAM maps show the long-range attribution the paper discusses."""
from __future__ import annotations

import argparse
import io
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import uniform_filter

from lam_trt.export.train import downscale, load_rgb, optimise, super_resolve, training_pairs
from lam_trt.images import save_png
from lam_trt.io import write_bytes, write_json

SCALE = 4
TRAIN_IMAGES = ["astronaut", "coffee", "rocket", "brick", "camera", "grass", "gravel",
                "immunohistochemistry", "hubble_deep_field", "coins", "page", "text"]
HELD_OUT = "chelsea"
DEMO_CROP = (8, 30)  # (row, col) of the 64x64 LR demo crop in the held-out LR picture: eye and fur


class DemoSR(torch.nn.Module):
    """Conv head, 3 residual blocks, channel attention, x4 PixelShuffle over a bicubic skip."""

    def __init__(self, channels: int = 32, blocks: int = 3, colours: int = 3):
        super().__init__()
        self.head = torch.nn.Conv2d(colours, channels, 3, padding=1)
        self.body = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(channels, channels, 3, padding=1))
            for _ in range(blocks))
        self.squeeze = torch.nn.Conv2d(channels, channels // 4, 1)
        self.excite = torch.nn.Conv2d(channels // 4, channels, 1)
        self.tail = torch.nn.Conv2d(channels, colours * SCALE**2, 3, padding=1)
        # Bicubic x4 as a fixed 5x5 conv into the 16 sub-pixel phases, sharing the PixelShuffle:
        # the graph needs no Resize, only Conv/Relu/ReduceMean/Sigmoid/Mul/Add/DepthToSpace.
        self.register_buffer("bicubic", bicubic_phase_kernel(colours))
        self.shuffle = torch.nn.PixelShuffle(SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        for block in self.body:
            feat = feat + block(feat)
        # Channel attention: its global average pool lets every pixel affect every output.
        gate = self.excite(F.relu(self.squeeze(feat.mean((2, 3), keepdim=True))))
        residual = self.tail(feat * torch.sigmoid(gate))
        return self.shuffle(residual + F.conv2d(x, self.bicubic, padding=2, groups=x.shape[1]))


def bicubic_phase_kernel(colours: int) -> torch.Tensor:
    """[colours*16, 1, 5, 5] weights equal to PyTorch's bicubic x4 upsampling away from borders."""
    deltas = F.pad(torch.eye(25).reshape(25, 1, 5, 5), (2, 2, 2, 2))  # tap k around LR pixel (4, 4)
    up = F.interpolate(deltas, scale_factor=SCALE, mode="bicubic", align_corners=False)
    kernel = up[:, 0, 16:20, 16:20].reshape(25, SCALE**2).T.reshape(SCALE**2, 1, 5, 5)
    return kernel.repeat(colours, 1, 1, 1).contiguous()


def psnr(a: np.ndarray, b: np.ndarray, border: int = SCALE) -> float:
    """PSNR in dB of uint8-range pictures, ignoring a border of ``border`` pixels."""
    diff = (a.astype(np.float64) - b)[border:-border, border:-border]
    return float(10 * np.log10(255.0**2 / np.mean(diff**2)))


def demo_window(sr: np.ndarray, size: int = 16) -> tuple[int, int]:
    """(x, y) of the size x size SR window with the strongest gradient, away from the border."""
    gray = sr.astype(np.float64).mean(axis=2)
    grad = np.hypot(np.diff(gray, axis=0)[:, :-1], np.diff(gray, axis=1)[:-1, :])
    energy = uniform_filter(grad, size, origin=-(size // 2))  # [i, j]: window from (i, j)
    margin = 4 * size  # keep context on every side so the map has room to spread
    inner = energy[margin:sr.shape[0] - size - margin + 1, margin:sr.shape[1] - size - margin + 1]
    y, x = np.unravel_index(np.argmax(inner), inner.shape)
    return int(x + margin), int(y + margin)


def export_onnx(model: DemoSR) -> bytes:
    buf, axes = io.BytesIO(), {0: "batch", 2: "height", 3: "width"}
    warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
    torch.onnx.export(model, torch.rand(1, 3, 16, 16), buf, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": axes, "output": axes})
    return buf.getvalue()


def train(steps: int, batch: int, lr_size: int, seed: int) -> DemoSR:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    pairs = training_pairs(TRAIN_IMAGES, SCALE)
    return optimise(DemoSR(), pairs, gen, steps, batch, lr_size, SCALE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("lam_trt/data"))
    for name, default in (("--steps", 3000), ("--batch", 16), ("--lr-size", 32), ("--seed", 0)):
        parser.add_argument(name, type=int, default=default)
    args = parser.parse_args()
    torch.set_num_threads(1)  # other work shares the machine; also keeps the run reproducible
    start = time.perf_counter()
    model = train(args.steps, args.batch, args.lr_size, args.seed)
    seconds = time.perf_counter() - start

    hr = load_rgb(HELD_OUT)
    lr = downscale(hr)
    bicubic = np.asarray(Image.fromarray(lr).resize(hr.shape[1::-1], Image.BICUBIC))
    scores = {"model": psnr(super_resolve(model, lr), hr), "bicubic": psnr(bicubic, hr)}
    print(f"held-out {HELD_OUT}: PSNR model {scores['model']:.2f}, bicubic {scores['bicubic']:.2f}")
    row, col = DEMO_CROP
    demo_lr = lr[row:row + 64, col:col + 64]
    x, y = demo_window(super_resolve(model, demo_lr))
    print(f"suggested demo window: x={x} y={y} size=16 (SR pixels)")

    # Package data must be readable by everyone; atomic writes start from 0600 temp files.
    write_bytes(args.out / "demo_x4.onnx", export_onnx(model)).chmod(0o644)
    save_png(args.out / "demo_lr.png", demo_lr).chmod(0o644)
    write_json(args.out / "demo_model.json", {
        "architecture": "DemoSR: conv3x3 head, 3 residual blocks (conv-relu-conv), channel "
                        "attention (global mean, 1x1 conv, relu, 1x1 conv, sigmoid), conv3x3 "
                        "to 48 channels + fixed bicubic 5x5 phase conv, PixelShuffle x4",
        "scale": SCALE, "channels": 32, "parameters": sum(p.numel() for p in model.parameters()),
        "training_images": [f"skimage.data.{n}" for n in TRAIN_IMAGES],
        "held_out_image": f"skimage.data.{HELD_OUT}",
        "lr_degradation": "PIL resize BICUBIC (antialiased) of uint8 RGB, /4",
        "loss": "L1", "optimizer": "Adam lr 1e-3, cosine to 1e-5",
        "steps": args.steps, "batch": args.batch, "lr_patch": args.lr_size,
        "seconds": round(seconds, 1), "threads": 1, "seed": args.seed,
        "psnr_held_out_db": {k: round(v, 3) for k, v in scores.items()},
        "psnr_note": "RGB, uint8, 4-pixel border ignored; bicubic = PIL BICUBIC upscale",
        "demo_lr": {"source": HELD_OUT, "lr_row": row, "lr_col": col, "size": 64},
        "demo_window": {"x": x, "y": y, "size": 16},
        "torch": torch.__version__, "python": platform.python_version(),
    }).chmod(0o644)


if __name__ == "__main__":
    main()
