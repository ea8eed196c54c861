"""The QA loop's background parts of a running service: the shadow runner (candidate models
beside stations' models) and, on SQLite, the local training worker. The app's lifespan
starts them, polls them and stops them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from defectlens.inference.service.compare import fail_stale_comparisons
from defectlens.inference.service.jobs import start_local_worker
from defectlens.inference.service.shadow import start_shadow_runner

if TYPE_CHECKING:
    from defectlens.inference.service.core import InspectionService

log = logging.getLogger(__name__)


def start_qa_loop(service: InspectionService) -> None:
    """Start the shadow runner, and the local worker if jobs are waiting for it."""
    start_shadow_runner(service)
    service.local_worker = start_local_worker(service.store, service.settings)


def poll_qa_loop(service: InspectionService) -> None:
    """Follow shadow runs started or stopped elsewhere, store the parts counted, fail the
    comparisons a stopped service left running, and run the local worker again if it died
    while jobs wait."""
    if service.shadow is not None:
        service.shadow.sync()
    fail_stale_comparisons(service.store)
    worker = service.local_worker
    if worker is not None and worker.pid is None and service.store.list_jobs("queued", 1):
        log.warning("the local training worker is not running and jobs wait: starting it")
        worker.ensure_running()


def stop_qa_loop(service: InspectionService) -> None:
    """Stop the shadow thread (its counts stored) and the local worker (a job it runs is
    interrupted and says so)."""
    if service.shadow is not None:
        service.shadow.close()
    if service.local_worker is not None:
        service.local_worker.stop()
