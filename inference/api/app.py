"""The inspection service as a FastAPI app: `create_app(settings)`.

The lifespan opens the `InspectionService` (the store, migrated, and each station's active
model) and runs two background loops: picking up promotions made outside this process (and
reporting what it serves in its status file, `service/instances.py`), and tidying the image
folder (retention, orphan files, free disk). Routes only map HTTP to the service. Run it
with `defectlens serve` (one worker: each worker process would load every model).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from types import ModuleType
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.types import ASGIApp

from defectlens import __version__
from defectlens.inference.api.accounting import RequestAccounting
from defectlens.inference.api.auth import KeyCache
from defectlens.inference.api.dependencies import verify_key
from defectlens.inference.api.docs import install_docs
from defectlens.inference.api.errors import install_error_handlers
from defectlens.inference.api.guard import RequestGuard
from defectlens.inference.api.request_id import RequestIdMiddleware
from defectlens.inference.api.routers import (
    audit,
    compare,
    datasets,
    deliveries,
    health,
    inspect,
    jobs,
    labels,
    models,
    reports,
    results,
    shadow,
    stations,
)
from defectlens.inference.line.runner import start_line
from defectlens.inference.reports.watch import REPORT_CHECK_S, watch_reports
from defectlens.inference.service import InspectionService, ServiceSettings
from defectlens.inference.service.deliveries import start_delivery
from defectlens.inference.service.instances import HEARTBEAT_S
from defectlens.inference.service.metrics import ServiceMetrics
from defectlens.inference.service.qa_loop import poll_qa_loop, start_qa_loop, stop_qa_loop
from defectlens.inference.web import install_web

log = logging.getLogger(__name__)

AUTH_DISABLED_WARNING = (
    "AUTHENTICATION IS DISABLED (DEFECTLENS_AUTH_DISABLED=true): every caller is admin "
    "without a key. Use this only in a lab, never on a plant network."
)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The app for `settings` (default: from the environment and defectlens.yaml)."""
    settings = settings if settings is not None else ServiceSettings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auth_disabled:
            log.warning(AUTH_DISABLED_WARNING)
        service = await anyio.to_thread.run_sync(InspectionService.open, settings, metrics)
        app.state.service = service
        try:
            start_delivery(service)  # results to the MES sinks, in threads of its own
            start_qa_loop(service)  # shadow runs; on SQLite, the local training worker
            # The stations file's sources and PLC links (inference/line/), a thread each.
            line = app.state.line = await anyio.to_thread.run_sync(start_line, service)
        except BaseException:  # e.g. the PLC port is taken: stop what started, then fail
            await anyio.to_thread.run_sync(service.close)
            raise
        app.state.keys = KeyCache(lambda key: verify_key(service.store, key), settings.key_cache_s)
        loops = [_every(settings.retention_interval_s, service.tidy_images)]
        if settings.deployment_poll_s > 0:
            loops.append(_every(settings.deployment_poll_s, service.sync_deployments))
        else:  # no polling, but the status file still says that this instance runs
            loops.append(_every(HEARTBEAT_S, service.report_status))
        if line is not None:
            loops.append(_every(2.0, line.write_snapshot))
        qa_poll_s = settings.deployment_poll_s or HEARTBEAT_S
        loops.append(_every(qa_poll_s, lambda: poll_qa_loop(service)))  # shadow runs, worker
        loops.append(_every(REPORT_CHECK_S, partial(watch_reports, service)))  # drift, daily
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if line is not None:
                await anyio.to_thread.run_sync(line.stop)
            await anyio.to_thread.run_sync(stop_qa_loop, service)
            # Inspections in flight finish and store their results before the store closes.
            await anyio.to_thread.run_sync(service.close)

    app = _ServiceApp(
        title="defectlens inspection service",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from local files by install_docs
        redoc_url=None,
    )
    install_docs(app)
    install_error_handlers(app)
    # Added innermost first: the metrics count what the guard refuses. Outside both, the
    # request id (`_ServiceApp`).
    app.add_middleware(RequestGuard, settings=settings, metrics=metrics)
    app.add_middleware(RequestAccounting, metrics=metrics)
    routers: tuple[ModuleType, ...] = (
        inspect,
        results,
        models,
        stations,
        deliveries,
        reports,
        health,
    )
    routers += (jobs, shadow, compare, audit)  # the QA loop: retrain, shadow, compare, audit
    routers += (labels, datasets)  # the label store and dataset versions
    for module in routers:
        app.include_router(module.router)
    install_web(app)  # the QA pages, their sign-in and the review queue's API route
    return app


class _ServiceApp(FastAPI):
    """The request id wraps Starlette's last-resort error layer too, so an unexpected error's
    500 and its log line carry it (`add_middleware` stays inside that layer)."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(super().build_middleware_stack())


async def _every(seconds: float, work: Callable[[], Any]) -> None:
    """Run `work` in a worker thread every `seconds`, for as long as the service runs."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await anyio.to_thread.run_sync(work)
        except Exception:  # a background pass must not end the loop; the next one retries
            log.exception("background task %s failed", getattr(work, "__name__", work))


_DESCRIPTION = """
Per-part visual inspection on ONNX Runtime. Send each part's image to `POST /v1/inspect`
with its station (and line, product, serial, camera, capture time); the answer is the
stored result: verdict, score, threshold, defect boxes, model version, timings.

**Keys and roles.** Send an API key as `X-API-Key` or `Authorization: Bearer`.
`line`: inspect, read results. `qa`: also create stations, promote and roll back models,
read and re-send deliveries to the MES, read reports, label images, import and export
labels, freeze dataset versions (`/v1/labels`, `/v1/datasets`).
`manager`: read results, stations, models, reports, labels and dataset versions.
`admin`: everything. A key may be limited to
some stations and may expire. No key: 401; a role that may not call a route: 403.
`/healthz`, `/readyz` and `/metrics` need no key.

**Errors** are JSON `{"detail": "..."}` naming what is wrong; client mistakes are 4xx and
store nothing. 503 (with Retry-After) when too many parts wait or the store does not
answer, 507 when the disk is full.
"""
