"""``lam-trt serve``: a local page to place the window by clicking and see LAM as it is computed."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lam_trt.commands._common import Provider, ProviderOption, err_console
from lam_trt.errors import InputError


def serve_command(
    models: Optional[list[Path]] = typer.Argument(None, help="ONNX SR models to offer (only these can be used)."),
    images: Optional[Path] = typer.Option(None, "--images", help="A folder of images to pick from on the page."),
    demo: bool = typer.Option(False, "--demo", help="Also offer the bundled demo model and its image."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback exposes the server."),
    port: int = typer.Option(8000, help="TCP port."),
    provider: ProviderOption = Provider("auto"),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest request accepted."),
    max_pixels: int = typer.Option(1024 * 1024, "--max-pixels", help="Largest LR image (pixels) accepted."),
    max_steps: int = typer.Option(1024, "--max-steps", help="Most path steps a request may ask for."),
) -> None:
    """Serve a local web page (and HTTP API) to place LAM windows by clicking and compare models."""
    try:
        import uvicorn

        from lam_trt.serve.app import LOOPBACK_HOSTS, create_app, image_files
    except ModuleNotFoundError as e:
        from lam_trt.serve import EXTRA_HINT
        raise InputError(f"{EXTRA_HINT} (missing module {e.name})") from None
    from lam_trt.serve.models import load_models
    from lam_trt.serve.uploads import Limits

    if not 0 <= port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {port}")
    if max_upload_mb <= 0 or max_pixels < 1 or max_steps < 1:
        raise InputError("--max-upload-mb, --max-pixels and --max-steps must be positive")
    paths, pictures = list(models or []), image_files(images) if images else {}
    if demo:
        from lam_trt.commands.demo import demo_files
        model, image, _ = demo_files()
        paths.append(model)
        pictures.setdefault(image.name, image)
    served = load_models(paths, provider.value)
    loopback = host in LOOPBACK_HOSTS
    app = create_app(served, pictures, Limits(int(max_upload_mb * 2**20), max_pixels, max_steps),
                     allowed_hosts=LOOPBACK_HOSTS if loopback else None)
    if not loopback:
        err_console.print(f"[bold yellow]warning:[/] serving on {host}: anyone who can reach this machine "
                          "can run attributions here (there is no authentication)", soft_wrap=True)
    shown = f"[{host}]" if ":" in host else host
    err_console.print(f"lam-trt serve: http://{shown}:{port}/  models: {', '.join(served)}  (Ctrl-C stops)",
                      soft_wrap=True, markup=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")
