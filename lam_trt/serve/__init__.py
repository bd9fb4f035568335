"""``lam-trt serve``: a local web page and HTTP API over the same library the CLI uses.

Needs the serve extra (``pip install 'lam-trt[serve]'``: Starlette, uvicorn, python-multipart).
models (warm Attributors) -> uploads (validated requests) -> jobs (one worker per model) -> app (HTTP).
"""
from __future__ import annotations

EXTRA_HINT = "lam-trt serve needs the serve extra: pip install 'lam-trt[serve]'"
