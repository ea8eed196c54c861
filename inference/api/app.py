"""The inspection service as a FastAPI app: `create_app(settings)`.

The lifespan opens the store (migrated), loads each station's active model, and runs two
background loops: picking up promotions made outside this process, and image retention.
Run it with `defectlens serve` (one worker: each worker process would load every model).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager

import anyio
from fastapi import FastAPI

from defectlens import __version__
from defectlens.inference.api.auth import KeyCache
from defectlens.inference.api.deployments import sync_engines
from defectlens.inference.api.errors import install_error_handlers
from defectlens.inference.api.metrics import MetricsMiddleware, ServiceMetrics
from defectlens.inference.api.routers import health, inspect, models, results
from defectlens.inference.api.settings import ServiceSettings
from defectlens.inference.api.state import ServiceState, verify_key
from defectlens.inference.engine_registry import EngineRegistry
from defectlens.inference.store import Store, open_database

log = logging.getLogger(__name__)

AUTH_DISABLED_WARNING = (
    "AUTHENTICATION IS DISABLED (DEFECTLENS_AUTH_DISABLED=true): every caller is admin "
    "without a key. Use this only in a lab, never on a plant network."
)


def open_state(settings: ServiceSettings, metrics: ServiceMetrics) -> ServiceState:
    """Open the store and load every station's active model (a failing model marks only its
    station unavailable)."""
    database = open_database(settings.resolved_database_url)
    store = Store(database)
    registry = EngineRegistry(
        threads=settings.threads,
        spin=settings.onnx_spinning,
        split_overlapping=settings.onnx_split_overlapping,
    )
    sync_engines(store, registry)
    keys = KeyCache(lambda key: verify_key(store, key), settings.key_cache_s)
    inspections = ThreadPoolExecutor(settings.max_concurrent_inspections, "inspect")
    return ServiceState(settings, database, store, registry, metrics, keys, inspections)


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between the garbage collector's young-generation passes while serving
(Python's default is 700, a pass every request or two here)."""


@contextmanager
def serving_gc() -> Iterator[None]:
    """The garbage collector set up for serving, as long servers do: what startup built
    (imports, loaded models, the store) is frozen out of every later pass, and young passes
    run less often. Memory is still freed by reference counting as before; only cyclic
    garbage waits longer. Each part costs less for it (interleaved A/B rounds at 1 client)."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The app for `settings` (default: from the environment and defectlens.yaml)."""
    settings = settings if settings is not None else ServiceSettings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auth_disabled:
            log.warning(AUTH_DISABLED_WARNING)
        state = await anyio.to_thread.run_sync(open_state, settings, metrics)
        app.state.service = state
        loops = []
        if settings.deployment_poll_s > 0:
            loops.append(_every(settings.deployment_poll_s, _sync_deployments, state))
        if settings.retention_max_age_days is not None or settings.retention_max_bytes is not None:
            loops.append(_every(settings.retention_interval_s, _apply_retention, state))
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            with serving_gc():
                yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Inspections in flight finish and store their results before the store closes.
            await anyio.to_thread.run_sync(state.inspections.shutdown)
            state.database.close()

    app = FastAPI(
        title="defectlens inspection service",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(inspect.InspectLane, metrics=metrics)  # added last: the outer one
    for router in (inspect.router, results.router, models.router, health.router):
        app.include_router(router)
    return app


async def _every(
    seconds: float, work: Callable[[ServiceState], Awaitable[None]], state: ServiceState
) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await work(state)
        except Exception:  # a background pass must not end the loop; the next one retries
            log.exception("background task %s failed", work.__name__)


async def _sync_deployments(state: ServiceState) -> None:
    changed = await anyio.to_thread.run_sync(sync_engines, state.store, state.registry)
    if changed:
        log.info("picked up %d model change(s) made outside this service", changed)


async def _apply_retention(state: ServiceState) -> None:
    settings = state.settings
    outcome = await anyio.to_thread.run_sync(
        lambda: state.store.apply_retention(
            settings.images_dir, settings.retention_max_age_days, settings.retention_max_bytes
        )
    )
    if outcome.get("deleted"):
        log.info("retention deleted %(deleted)d images (%(freed_bytes)d bytes)", outcome)


_DESCRIPTION = """
Per-part visual inspection on ONNX Runtime. Send each part's image to `POST /v1/inspect`
with its station (and line, product, serial, camera, capture time); the answer is the
stored result: verdict, score, threshold, defect boxes, model version, timings.

**Keys and roles.** Send an API key as `X-API-Key` or `Authorization: Bearer`.
`line`: inspect, read results. `qa`: also create stations, promote and roll back models.
`manager`: read results, stations and models. `admin`: everything. No key: 401; a role
that may not call a route: 403. `/healthz`, `/readyz` and `/metrics` need no key.

**Errors** are JSON `{"detail": "..."}` naming what is wrong; client mistakes are 4xx and
store nothing.
"""
