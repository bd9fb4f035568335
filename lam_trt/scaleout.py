"""Scale-out: a batch's rows from a Ray cluster, through Ray Data with one actor per GPU or CPU slot.

Each actor holds one Attributor (one ONNX Runtime session per input size, reused across images)
and turns images into exactly the rows ``lam_trt.batch.rows.image_rows`` makes on one machine; the
driver appends them to the results file as they arrive, so resume works the same way. The model
and image paths must be readable on every node (a shared filesystem), with lam-trt installed there.
Ray is an optional extra (``pip install 'lam-trt[ray]'``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from lam_trt.batch.rows import BatchParams, Key, Row, image_rows
from lam_trt.batch.run import BatchOutcome, BatchPlan, run_batch
from lam_trt.errors import InputError, LamTrtError

RAY_MISSING = "--ray needs Ray, an optional extra: pip install 'lam-trt[ray]'"


class ScaleOutError(LamTrtError):
    """The Ray cluster could not be reached or a worker failed (rows written so far are kept)."""


def require_ray() -> Any:
    """The ray module (with Ray Data), or a one-line InputError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the extra is ray[data]; plain ray lacks it
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


class RowMaker:
    """A Ray Data actor: one Attributor for its whole life, images in, JSON rows out."""

    def __init__(self, model: str, params: str, provider: str, threads: int | None, cache_dir: str | None):
        from lam_trt.attributor import Attributor

        self.attributor = Attributor(model, provider=provider, cache_dir=cache_dir, threads=threads)
        self.params = BatchParams.from_dict(json.loads(params))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        rows: list[str] = []
        for image, done in zip(batch["image"], batch["done"]):
            keys = {tuple(k) for k in json.loads(str(done))}
            rows.extend(json.dumps(r) for r in image_rows(self.attributor, str(image), self.params, keys))
        return {"row": rows}


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray, connected to ``address`` (None: Ray's default, RAY_ADDRESS or a new local instance).
    An already initialised Ray is reused and left running; one started here is shut down."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    _probe(address)
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ScaleOutError(f"cannot connect to Ray at {address or 'the default address'}: {_gist(e)}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def run_batch_on_ray(plan: BatchPlan, address: str | None = None,
                     on_row: Callable[[Row], None] | None = None) -> BatchOutcome:
    """``run_batch`` with the rows from a Ray cluster, connected to before anything is written."""
    with ray_session(address):
        return run_batch(plan, on_row, rows_from=_plan_rows)


def _plan_rows(plan: BatchPlan, done: set[Key]) -> Iterator[Row]:
    by_image: dict[str, list[Key]] = {}
    for key in done:
        by_image.setdefault(key[0], []).append(key)
    jobs = [(image, by_image.get(os.path.realpath(image), [])) for image in plan.images]
    yield from ray_rows(plan.model, jobs, plan.params, plan.provider, plan.cache_dir)


def ray_rows(model: str | os.PathLike, jobs: Sequence[tuple[str, Sequence[Key]]], params: BatchParams,
             provider: str = "auto", cache_dir: str | None = None) -> Iterator[Row]:
    """Rows of every (image, keys of its rows already done) job, from the Ray cluster this process
    is connected to (see ``ray_session``), in job order."""
    ray = require_ray()
    if not jobs:
        return
    slots, resources = actor_slots(ray.cluster_resources(), provider, len(jobs))
    items = [{"image": image, "done": json.dumps([list(k) for k in done])} for image, done in jobs]
    kwargs = {"model": str(model), "params": json.dumps(params.to_dict()), "provider": provider,
              "threads": 1 if "num_cpus" in resources else None, "cache_dir": cache_dir}
    try:
        with _data_context(ray):
            dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                RowMaker, fn_constructor_kwargs=kwargs, batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=slots), **resources)
            for item in dataset.iter_rows():
                yield json.loads(item["row"])
    except ray.exceptions.RayError as e:
        raise ScaleOutError(f"the Ray batch stopped ({_gist(e)}); rerun the same command to continue") from None


def actor_slots(resources: dict[str, float], provider: str, jobs: int) -> tuple[int, dict[str, int]]:
    """(actors, resources per actor): one per GPU unless the CPU is asked for, else one per CPU,
    never more actors than images."""
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if provider != "cpu" and gpus > 0:
        return max(1, min(gpus, jobs)), {"num_gpus": 1}
    return max(1, min(cpus, jobs)), {"num_cpus": 1}


def _probe(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable HOST:PORT (ray.init would retry for minutes)."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray-address must be HOST:PORT, ray://HOST:PORT, auto or local; got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ScaleOutError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


@contextlib.contextmanager
def _data_context(ray: Any) -> Iterator[None]:
    """Rows in input order, and no Ray Data progress bars or INFO lines, for this run only."""
    ctx = ray.data.DataContext.get_current()
    logger = logging.getLogger("ray.data")
    saved = ctx.execution_options.preserve_order, ctx.enable_progress_bars, logger.level
    ctx.execution_options.preserve_order, ctx.enable_progress_bars = True, False
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars, level = saved
        logger.setLevel(level)


def _gist(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


__all__ = ["RAY_MISSING", "RowMaker", "ScaleOutError", "actor_slots", "ray_rows", "ray_session", "require_ray",
           "run_batch_on_ray"]
