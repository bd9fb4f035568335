"""Attribution jobs: queued on their model's worker thread (one per model, so one attribution at a
time per model, the others waiting, while the event loop stays free), observable while they run,
their files in a temporary folder that the server removes when it stops."""
from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from lam_trt.errors import LamTrtError
from lam_trt.io import atomic_write
from lam_trt.result import LAMResult
from lam_trt.serve.models import ServedModel
from lam_trt.serve.uploads import AttributionRequest

RESULT_DIR = "result"  # the files `lam-trt attribute --out` writes, nothing else
PANEL_DIR = "panels"   # the five panels one by one, for the page
EARLY_METRICS = ("diffusion_index", "gini", "completeness_gap", "completeness_gap_relative", "detector_input",
                 "detector_baseline")
FINISHED = ("done", "error", "cancelled")


class Cancelled(Exception):
    """Raised inside the integral (from the progress callback) to stop a job nobody waits for."""


@dataclass
class Job:
    id: str
    folder: Path
    model: Optional[ServedModel] = None
    request: Optional[AttributionRequest] = None
    state: str = "queued"  # queued -> preparing -> integrating -> rendering -> done | error | cancelled
    done: int = 0
    total: int = 0
    metrics: Optional[dict[str, Any]] = None   # as soon as the integral is over, before the pictures
    panels: Optional[list[dict[str, str]]] = None  # then the five panels, before lam.png and path.png
    result: Optional[dict[str, Any]] = None    # the JSON of `lam-trt attribute --json`, plus URLs
    error: Optional[str] = None
    status: int = 200                          # the HTTP status an error maps to
    created: float = field(default_factory=time.time)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    future: Optional[Future] = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def progress(self, n: int) -> None:
        """The runner's per-chunk callback: count, and stop here if the job was cancelled."""
        if self.cancel_event.is_set():
            raise Cancelled()
        self.state = "integrating"
        self.done += int(n)

    def fail(self, message: str, status: int) -> None:
        self.error, self.status, self.state = " ".join(message.split()), status, "error"

    def as_dict(self, ahead: int = 0) -> dict[str, Any]:
        req = self.request
        return {"id": self.id, "model": self.model.name if self.model else None, "state": self.state,
                "done": min(self.done, self.total), "total": self.total, "ahead": ahead,
                "window": {"x": req.x, "y": req.y, "size": req.size} if req else None,
                "metrics": self.metrics, "panels": self.panels, "result": self.result, "error": self.error,
                "status": self.status if self.error else None}


class JobStore:
    """Every job of this server, the newest ``keep`` of them with their files."""

    def __init__(self, keep: int = 64, root: str | None = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="lam-trt-serve-", dir=root)
        self.root = Path(self._tmp.name)
        self.keep = keep
        self._jobs: dict[str, Job] = {}
        self._workers: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def new(self) -> Job:
        job_id = uuid.uuid4().hex[:16]
        job = Job(job_id, self.root / job_id)
        job.folder.mkdir()
        with self._lock:
            self._jobs[job.id] = job
        self._forget_old()
        return job

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def discard(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def submit(self, job: Job, request: AttributionRequest, url_prefix: str) -> Future:
        job.model, job.request, job.total = request.model, request, request.path_points
        job.future = self.worker(request.model.name).submit(run_job, job, url_prefix)
        return job.future

    def worker(self, model: str) -> ThreadPoolExecutor:
        """The model's one thread: its Attributor is never used by two attributions at once."""
        with self._lock:
            if model not in self._workers:
                self._workers[model] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lam-{model}")
            return self._workers[model]

    def ahead(self, job: Job) -> int:
        """Unfinished jobs on the same model that were submitted before this one."""
        if job.finished or job.model is None:
            return 0
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.model is job.model and not j.finished
                       and j.created < job.created)

    def close(self) -> None:
        """Drop queued jobs, stop a running one at its next chunk, remove every file."""
        with self._lock:
            for job in self._jobs.values():
                job.cancel_event.set()
            for worker in self._workers.values():
                worker.shutdown(wait=False, cancel_futures=True)
        self._tmp.cleanup()

    def _forget_old(self) -> None:
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.finished), key=lambda j: j.created)
            old = done[:max(0, len(self._jobs) - self.keep)]
            for job in old:
                del self._jobs[job.id]
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)


def run_job(job: Job, url_prefix: str) -> None:
    """On the model's worker thread: attribute, publish the numbers, write the files, publish them."""
    from lam_trt.provenance import command_line
    from lam_trt.report import write_result

    if job.cancel_event.is_set():
        job.state = "cancelled"
        return
    req = job.request
    assert req is not None
    job.state = "preparing"
    try:
        result = req.model.attributor.attribute(req.image, progress=job.progress, **req.attribute_kwargs())
        result.meta["command"] = f"{command_line()} (POST {url_prefix})"  # how this result was asked for
        summary = result.to_dict()
        job.metrics = {key: summary[key] for key in EARLY_METRICS}
        job.metrics["timings_seconds"] = summary.get("timings_seconds")
        job.state = "rendering"
        job.panels = write_panels(result, job.folder / PANEL_DIR, url_prefix)
        summary = write_result(result, job.folder / RESULT_DIR, source_image=req.source_name)
        summary["urls"] = {name: f"{url_prefix}/{RESULT_DIR}/{name}" for name in summary["files"]}
        summary["urls"]["zip"] = f"{url_prefix}.zip"
        summary["panels"] = job.panels
        job.result, job.state = summary, "done"
    except Cancelled:
        job.state = "cancelled"
    except LamTrtError as e:
        job.fail(str(e), 400)
    except Exception as e:  # the server keeps serving; the trace goes to its log
        if job.cancel_event.is_set():  # the server is stopping and removed the job's folder
            job.state = "cancelled"
            return
        traceback.print_exc(file=sys.stderr)
        job.fail(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", 500)


def write_panels(result: LAMResult, folder: Path, url_prefix: str) -> list[dict[str, str]]:
    """The five LAM panels (render.panels, the same as in lam.png), one PNG each (fast zlib level:
    they only live as long as the server)."""
    from lam_trt.render import PANEL_TITLES, panels

    out = []
    for name, image in panels(result).items():
        atomic_write(folder / f"{name}.png", lambda p, a=image: Image.fromarray(np.asarray(a)).save(p, format="PNG",
                                                                                          compress_level=1))
        title = result.method.upper() if name == "saliency" else PANEL_TITLES.get(name, name)  # as lam.png
        out.append({"name": name, "title": title,
                    "url": f"{url_prefix}/{PANEL_DIR}/{name}.png"})
    return out
