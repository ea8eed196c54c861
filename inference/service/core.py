"""The inspection service: what every entry point calls to inspect a part, deploy a model or
keep the workspace tidy. It knows nothing of HTTP; `inference/api/` maps its errors.

`InspectionService.open(settings)` opens the store and loads each station's active model;
`inspect` runs a part on the service's inspection threads within the request timeout,
refusing parts beyond a bounded queue; `inspect_part` (in `inspection.py`) is the same
pipeline on the caller's own thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Self

from defectlens.errors import InspectionTimeout, Unavailable
from defectlens.inference.delivery import DeliveryWorker
from defectlens.inference.engine_registry import EngineRegistry
from defectlens.inference.service.deployments import sync_engines
from defectlens.inference.service.inspection import (
    Attempt,
    Inspected,
    PartMetadata,
    free_disk_bytes,
    inspect_part,
)
from defectlens.inference.service.instances import (
    InstanceStatus,
    instance_status,
    remove_status,
    run_dir,
    write_status,
)
from defectlens.inference.service.jobs import LocalWorker
from defectlens.inference.service.metrics import ServiceMetrics
from defectlens.inference.service.settings import ServiceSettings
from defectlens.inference.service.shadow import ShadowRunner
from defectlens.inference.store import Database, Store, open_database
from defectlens.logs import submit_with_context

log = logging.getLogger(__name__)


class InspectionService:
    """One running service: settings, the store, the loaded engines, metrics, and the
    threads that inspect parts."""

    def __init__(
        self,
        settings: ServiceSettings,
        database: Database,
        store: Store,
        registry: EngineRegistry,
        metrics: ServiceMetrics,
    ) -> None:
        self.settings = settings
        self.database = database
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.threads = ThreadPoolExecutor(settings.max_concurrent_inspections, "inspect")
        """The inspection threads: `max_concurrent_inspections` parts at a time."""
        self._count_lock = threading.Lock()
        self._waiting = 0
        """Parts accepted by `inspect` and not yet answered (queued or running)."""
        self._in_progress = 0
        """Parts between their decode and their stored result, on any thread."""
        self.delivery: DeliveryWorker | None = None
        """Delivers stored results to the MES sinks (`deliveries.start_delivery`)."""
        self.shadow: ShadowRunner | None = None
        """Runs candidate models beside stations' models (`shadow.start_shadow_runner`)."""
        self.local_worker: LocalWorker | None = None
        """On SQLite, the training worker process it runs (`jobs.start_local_worker`)."""
        self.started_at = datetime.now(UTC)

    @classmethod
    def open(cls, settings: ServiceSettings, metrics: ServiceMetrics | None = None) -> Self:
        """Open the store and load every station's active model (a model that fails to load
        marks only its station unavailable, with the reason on /readyz)."""
        database = open_database(
            settings.resolved_database_url, timeout_s=settings.database_timeout_s
        )
        try:
            store = Store(database, instance=settings.instance_id)
            registry = EngineRegistry(
                threads=settings.threads,
                spin=settings.onnx_spinning,
                single_thread_session=settings.onnx_split_overlapping,
            )
            sync_engines(store, registry)
        except BaseException:
            database.close()
            raise
        service = cls(settings, database, store, registry, metrics or ServiceMetrics())
        service.report_status()
        return service

    def close(self) -> None:
        """Remove this instance's status file (it no longer picks up promotions), let
        inspections in flight finish and store their results, then close the store."""
        try:
            remove_status(run_dir(self.settings.home), self.status())
        except OSError as exc:
            log.warning("could not remove this service's status file: %s", exc)
        self.threads.shutdown(wait=True)
        if self.delivery is not None:
            self.delivery.stop()
        self.database.close()

    async def inspect(
        self, data: bytes, metadata: PartMetadata, overlay: bool = False
    ) -> Inspected:
        """`inspect_part` on one of the inspection threads, within `request_timeout_s` (time
        spent queued counts; a part that times out while queued is never inspected).

        Raises `Unavailable` (503) at once when `max_queued_inspections` parts already wait
        for a thread, and `InspectionTimeout` (504) past the timeout, with nothing stored.
        The event loop never waits on a lock or the database here."""
        settings = self.settings
        with self._count_lock:
            limit = settings.max_concurrent_inspections + settings.max_queued_inspections
            if self._waiting >= limit:
                self.metrics.parts_refused.inc()
                raise Unavailable(
                    f"{self._waiting} parts are already waiting for inspection (the limit is "
                    f"{limit}: DEFECTLENS_MAX_CONCURRENT_INSPECTIONS + "
                    "DEFECTLENS_MAX_QUEUED_INSPECTIONS); retry shortly",
                    retry_after_s=1,
                )
            self._waiting += 1
            self.metrics.parts_waiting.set(self._waiting)
        try:
            return await self._run(data, metadata, overlay)
        finally:
            with self._count_lock:
                self._waiting -= 1
                self.metrics.parts_waiting.set(self._waiting)

    async def _run(self, data: bytes, metadata: PartMetadata, overlay: bool) -> Inspected:
        attempt = Attempt()
        timeout = self.settings.request_timeout_s
        # In the caller's context, so the thread's log lines carry the request id.
        queued = submit_with_context(
            self.threads, inspect_part, self, data, metadata, overlay, attempt
        )
        try:
            async with asyncio.timeout(timeout):
                # Cancelled at the timeout, the wrapper cancels `queued` if it is still
                # waiting for a thread: it never starts.
                return await asyncio.wrap_future(queued)
        except TimeoutError:
            if attempt.abandon():
                raise InspectionTimeout(
                    f"inspection took longer than {timeout:g} s (DEFECTLENS_REQUEST_TIMEOUT_S);"
                    " nothing was stored. Retry, or check the service's load"
                ) from None
            # The result is being stored: its outcome (bounded by the database timeout)
            # is the answer, so a stored part is never answered as lost.
            return await asyncio.wrap_future(queued)

    @contextmanager
    def part_in_progress(self) -> Iterator[None]:
        """Count one part from its decode to its stored result."""
        with self._count_lock:
            self._in_progress += 1
        try:
            yield
        finally:
            with self._count_lock:
                self._in_progress -= 1

    def others_in_progress(self) -> bool:
        """Whether another part is in progress besides the caller's: the model run then takes
        the single-threaded session (under load the parts' other steps fill the cores
        between runs, and a 2-thread run would only contend)."""
        return self._in_progress > 1

    def sync_deployments(self) -> int:
        """Load promotions made outside this process (the CLI, another instance), then say
        in the status file what each station serves (also when the pass fails, so a waiting
        `defectlens models promote` still sees this instance run)."""
        try:
            changed = sync_engines(self.store, self.registry)
        finally:
            self.report_status()
        if changed:
            log.info("picked up %d model change(s) made outside this service", changed)
        return changed

    def status(self) -> InstanceStatus:
        """This instance as its status file describes it: what each station serves."""
        registry = self.registry
        return instance_status(
            self.settings.instance_id,
            self.settings.deployment_poll_s,
            self.started_at,
            registry.statuses(registry.stations()),
        )

    def report_status(self) -> None:
        """Write `<home>/run/<instance id>.json` (`instances.py`), which the CLI reads to know
        which services run on the workspace and when they swap to a promoted model."""
        try:
            write_status(run_dir(self.settings.home), self.status())
        except OSError as exc:  # the service still serves; the CLI will not see it
            log.warning("could not write this service's status file: %s", exc)

    def tidy_images(self) -> dict[str, int]:
        """Apply the retention policy to this instance's images and sweep files a crash
        left without a stored result; also refreshes the free-disk figure."""
        settings = self.settings
        outcome: dict[str, int] = {}
        if settings.retention_max_age_days is not None or settings.retention_max_bytes is not None:
            outcome = self.store.apply_retention(
                settings.images_dir, settings.retention_max_age_days, settings.retention_max_bytes
            )
            if outcome.get("deleted"):
                log.info("retention deleted %(deleted)d images (%(freed_bytes)d bytes)", outcome)
        swept = self.store.sweep_orphan_files(settings.images_dir)
        if swept.get("deleted"):
            log.info("swept %d image files no stored result names", swept["deleted"])
        self.free_disk_bytes()
        return {**outcome, "orphans_deleted": swept.get("deleted", 0)}

    def free_disk_bytes(self) -> int:
        """Free bytes under the images folder (also set on /metrics)."""
        free = free_disk_bytes(self.settings.images_dir)
        self.metrics.free_disk.set(free)
        return free
