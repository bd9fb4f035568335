"""``lam-trt demo``: the whole pipeline on the bundled model and image, no arguments needed."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from lam_trt.commands._common import (FigureOptions, JsonOut, OutDir, Provider, ProviderOption, Steps, option_groups,
                                     out_console, path_points, print_json, stage)
from lam_trt.commands.attribute import print_summary
from lam_trt.io import check_out_dir


def demo_files() -> tuple[Path, Path, dict]:
    """The bundled x4 model, its 64x64 LR image and the training record (with the demo window)."""
    data = resources.files("lam_trt") / "data"
    info = json.loads((data / "demo_model.json").read_text())
    return Path(str(data / "demo_x4.onnx")), Path(str(data / "demo_lr.png")), info


@option_groups
def demo_command(
    out: OutDir = Path("lam-demo"),
    steps: Steps = 100,
    provider: ProviderOption = Provider("auto"),
    json_out: JsonOut = False,
    figures: FigureOptions = FigureOptions(),
) -> None:
    """Run LAM on the bundled demo network (a small trained x4 SR model) and image."""
    from lam_trt.attributor import Attributor
    from lam_trt.report import write_result

    figures.check()
    check_out_dir(out)
    model, image, info = demo_files()
    x, y = info["demo_window"]["x"], info["demo_window"]["y"]
    size = info["demo_window"].get("size", 16)
    with stage("path images", path_points("lam", steps)) as advance:
        result = Attributor(model, provider=provider.value).attribute(image, window=(x, y), size=size,
                                                                      steps=steps, progress=advance)
    summary = write_result(result, out, **figures.save_kwargs(), source_image="demo_lr.png (bundled)",
                           demo_model={k: info[k] for k in ("architecture", "psnr_held_out_db") if k in info})
    if json_out:
        print_json(summary)
    else:
        out_console.print(f"demo: {info.get('architecture', 'bundled x4 model').split(':')[0]}, "
                          f"PSNR {info['psnr_held_out_db']['model']} dB vs bicubic "
                          f"{info['psnr_held_out_db']['bicubic']} dB on held-out {info.get('held_out_image')}")
        print_summary(summary, out)
