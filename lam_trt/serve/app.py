"""The ASGI app: the page, its static files, and the HTTP API the page and scripts use.

GET  /                        the page (plain HTML/CSS/JS shipped in the package; works offline)
GET  /api/models              the served models: name, scale, channels, receptive field
GET  /api/config              methods, rules, defaults, limits, the --images files
GET  /images/{name}           one --images file
POST /api/jobs                multipart form -> 202 and a job to poll (the page uses this)
GET  /api/jobs/{id}           state, progress, early metrics, then the result
DELETE /api/jobs/{id}         cancel (queued: never runs; running: stops at its next chunk)
POST /api/attribute           multipart form -> the JSON of `lam-trt attribute --json` plus URLs
GET  /results/{id}/{folder}/{file}, /results/{id}.zip   the result files
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import re
import zipfile
from importlib import resources
from pathlib import Path
from typing import AsyncIterator, Optional
from urllib.parse import urlsplit

import anyio
from starlette.applications import Starlette
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from lam_trt.errors import InputError
from lam_trt.kernels import METHODS, RULES
from lam_trt.serve.jobs import PANEL_DIR, RESULT_DIR, Job, JobStore
from lam_trt.serve.models import ServedModel
from lam_trt.serve.uploads import DEFAULTS, Limits, parse_request

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
# The page loads nothing from elsewhere; the browser is told so too.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                                           "frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(models: dict[str, ServedModel], images: Optional[dict[str, Path]] = None,
               limits: Limits = Limits(), allowed_hosts: Optional[frozenset[str]] = LOOPBACK_HOSTS) -> Starlette:
    """``allowed_hosts``: Host names the server answers to (a DNS-rebinding guard); None for any."""
    images = dict(images or {})
    store = JobStore()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    api = Api(models, images, limits, store)
    routes = [
        Route("/", api.page),
        Route("/api/models", api.list_models),
        Route("/api/config", api.config),
        Route("/images/{name}", api.image_file),
        Route("/api/jobs", api.create_job, methods=["POST"]),
        Route("/api/jobs/{job_id}", api.job, methods=["GET", "DELETE"]),
        Route("/api/attribute", api.attribute, methods=["POST"]),
        Route("/results/{job_id}.zip", api.result_zip),
        Route("/results/{job_id}/{folder}/{name}", api.result_file),
        Mount("/static", StaticFiles(packages=[("lam_trt.serve", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ApiError: api_error, InputError: input_error, HTTPException: http_error})
    app.add_middleware(LocalGuard, allowed_hosts=allowed_hosts)
    app.state.store = store
    return app


class Api:
    def __init__(self, models: dict[str, ServedModel], images: dict[str, Path], limits: Limits, store: JobStore):
        self.models, self.images, self.limits, self.store = models, images, limits, store

    async def page(self, request: Request) -> Response:
        html = (resources.files("lam_trt.serve") / "static" / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers=PAGE_HEADERS)

    async def list_models(self, request: Request) -> Response:
        return JSONResponse([m.info for m in self.models.values()])

    async def config(self, request: Request) -> Response:
        return JSONResponse({"methods": list(METHODS), "rules": list(RULES), "defaults": DEFAULTS,
                             "images": sorted(self.images), "limits": vars(self.limits)})

    async def image_file(self, request: Request) -> Response:
        path = self.images.get(request.path_params["name"])
        if path is None:
            raise ApiError(404, f"no image {request.path_params['name']!r} on this server")
        return FileResponse(path)

    async def create_job(self, request: Request) -> Response:
        job = await self.submit(request)
        return JSONResponse(job.as_dict(self.store.ahead(job)), status_code=202,
                            headers={"Location": f"/api/jobs/{job.id}"})

    async def job(self, request: Request) -> Response:
        job = self.find(request.path_params["job_id"])
        if request.method == "DELETE":
            job.cancel_event.set()
            if job.future is not None and job.future.cancel():
                job.state = "cancelled"
        return JSONResponse(job.as_dict(self.store.ahead(job)))

    async def attribute(self, request: Request) -> Response:
        job = await self.submit(request)
        assert job.future is not None
        try:
            await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            if not job.future.cancelled():  # the client went away: nobody waits for this job any more
                job.cancel_event.set()
                raise
        if job.state != "done":
            raise ApiError(job.status if job.error else 409, job.error or f"the job was {job.state}")
        return JSONResponse(job.result)

    async def result_file(self, request: Request) -> Response:
        job = self.find(request.path_params["job_id"])
        folder, name = request.path_params["folder"], request.path_params["name"]
        path = job.folder / folder / name
        if folder not in (RESULT_DIR, PANEL_DIR) or not _FILE_NAME.fullmatch(name) or not path.is_file():
            raise ApiError(404, f"no file {folder}/{name} in job {job.id}")
        return FileResponse(path)

    async def result_zip(self, request: Request) -> Response:
        job = self.find(request.path_params["job_id"])
        if job.state != "done":
            raise ApiError(409, f"job {job.id} is {job.state}, not done")
        data = await anyio.to_thread.run_sync(zip_folder, job.folder / RESULT_DIR)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="lam-{job.id}.zip"'})

    def find(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} on this server (finished jobs are kept a while, not forever)")
        return job

    async def submit(self, request: Request) -> Job:
        """Read and check the form (off the event loop), then queue the job on its model's worker."""
        fields, filename, data = await self.read_form(request)
        job = self.store.new()
        try:
            parsed = await anyio.to_thread.run_sync(parse_request, fields, filename, data, self.models,
                                                    job.folder, self.limits)
        except BaseException:
            self.store.discard(job)
            raise
        self.store.submit(job, parsed, f"{request.scope.get('root_path', '')}/results/{job.id}")
        return job

    async def read_form(self, request: Request) -> tuple[dict[str, str], str, bytes]:
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise ApiError(411, "send the form with a Content-Length header")
        if int(length) > self.limits.upload_bytes:
            raise ApiError(413, f"the request is {int(length)} bytes, over this server's limit of "
                                f"{self.limits.upload_bytes} bytes (--max-upload-mb)")
        async with request.form(max_files=1, max_fields=32) as form:
            upload = form.get("image")
            if not isinstance(upload, UploadFile):
                raise InputError("the form needs an 'image' file")
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            return fields, upload.filename or "upload", await upload.read()


def zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    return buffer.getvalue()


class LocalGuard:
    """Refuse requests for other Host names (DNS rebinding) and cross-origin writes (another site's
    page posting to this server), so a page elsewhere cannot drive or read a local server."""

    def __init__(self, app: ASGIApp, allowed_hosts: Optional[frozenset[str]]):
        self.app, self.allowed = app, allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reason = self.refusal(Headers(scope=scope), scope["method"])
            if reason:
                await JSONResponse({"error": reason}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: Headers, method: str) -> Optional[str]:
        host = headers.get("host", "")
        hostname = urlsplit(f"//{host}").hostname or ""
        if self.allowed is not None and hostname not in self.allowed:
            return f"this server answers to {', '.join(sorted(self.allowed))} only, not {hostname!r}"
        origin = headers.get("origin")
        if method not in ("GET", "HEAD") and origin and urlsplit(origin).netloc != host:
            return f"cross-origin request from {origin} refused"
        return None


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def input_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": " ".join(str(exc).split())}, status_code=400)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


def image_files(folder: Path) -> dict[str, Path]:
    """The images directly in ``folder`` (no subfolders; nothing a client names is a path)."""
    if not folder.is_dir():
        raise InputError(f"--images: not a folder: {folder}")
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and _FILE_NAME.fullmatch(p.name)}
