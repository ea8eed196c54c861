"""Probes and figures: /healthz (the process answers), /readyz (models loaded, database
reachable), /metrics (Prometheus). Open without a key, for orchestrators and scrapers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from defectlens.inference.api.dependencies import Service
from defectlens.inference.api.schemas import Health, Readiness, StationReadiness
from defectlens.inference.api.state import line_of
from defectlens.inference.service import InspectionService
from defectlens.inference.service.deliveries import delivery_backlog, delivery_problems

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up and answering."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(service: Service, request: Request) -> JSONResponse:
    """200 when the database answers, every station with a promoted model has it loaded and
    the images' disk has room and no MES sink has failed for longer than
    DEFECTLENS_SINK_DOWN_READY_S; 503 with the reasons otherwise. Also says whether
    authentication is disabled."""
    report = await run_in_threadpool(readiness, service)
    line = line_of(request)
    if line is not None and (down := line.problems()):  # a line source that is down
        report = report.model_copy(update={"ready": False, "problems": report.problems + down})
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.ready else 503)


@router.get("/metrics", response_class=Response)
def metrics(service: Service) -> Response:
    """Prometheus text format: requests by route and status, latencies, verdicts per
    station, model time, parts waiting, free disk, refused keys, and per MES sink the
    backlog, dead letters, the oldest waiting result's age and the delivery lag."""
    service.free_disk_bytes()
    delivery_backlog(service)
    return Response(service.metrics.exposition(), media_type="text/plain; version=0.0.4")


def readiness(service: InspectionService) -> Readiness:
    problems: list[str] = []
    database = "ok"
    stations: list[StationReadiness] = []
    free = service.free_disk_bytes()
    if free < service.settings.min_free_disk_bytes:
        problems.append(
            f"the images' disk ({service.settings.images_dir}) has {free} bytes free, under "
            f"DEFECTLENS_MIN_FREE_DISK_BYTES ({service.settings.min_free_disk_bytes}): NG "
            "parts cannot be kept"
        )
    if not service.database.ping():
        database = f"cannot reach the database at {service.database.url}"
        problems.append(database)
    else:
        promoted = {d.station_id for d in service.store.active_deployments()}
        for status in service.registry.statuses(sorted(promoted)):
            ready = status.model is not None
            service.metrics.stations_ready.labels(status.station).set(1 if ready else 0)
            stations.append(
                StationReadiness(
                    station=status.station, model=status.model, ready=ready, problem=status.problem
                )
            )
            if not ready:
                problems.append(f"station {status.station}: {status.problem}")
        if not promoted:
            problems.append("no station has a model promoted; nothing can be inspected yet")
        problems += delivery_problems(service)
    return Readiness(
        ready=not problems,
        database=database,
        auth="disabled" if service.settings.auth_disabled else "enabled",
        free_disk_bytes=free,
        stations=stations,
        problems=problems,
    )
