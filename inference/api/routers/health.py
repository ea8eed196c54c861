"""Probes and figures: /healthz (the process answers), /readyz (models loaded, database
reachable), /metrics (Prometheus). Open without a key, for orchestrators and scrapers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from defectlens.inference.api.dependencies import State
from defectlens.inference.api.schemas import Health, Readiness, StationReadiness
from defectlens.inference.api.state import ServiceState

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up and answering."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: State) -> JSONResponse:
    """200 when the database answers and every station with a promoted model has it loaded;
    503 with the reasons otherwise. Also says whether authentication is disabled."""
    report = await run_in_threadpool(readiness, state)
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.ready else 503)


@router.get("/metrics", response_class=Response)
def metrics(state: State) -> Response:
    """Prometheus text format: requests by route and status, latencies, verdicts per
    station, model time."""
    return Response(state.metrics.exposition(), media_type="text/plain; version=0.0.4")


def readiness(state: ServiceState) -> Readiness:
    problems: list[str] = []
    database = "ok"
    stations: list[StationReadiness] = []
    if not state.database.ping():
        database = f"cannot reach the database at {state.database.url}"
        problems.append(database)
    else:
        promoted = {d.station_id for d in state.store.active_deployments()}
        for status in state.registry.statuses(sorted(promoted)):
            ready = status.model is not None
            state.metrics.stations_ready.labels(status.station).set(1 if ready else 0)
            stations.append(
                StationReadiness(
                    station=status.station, model=status.model, ready=ready, problem=status.problem
                )
            )
            if not ready:
                problems.append(f"station {status.station}: {status.problem}")
        if not promoted:
            problems.append("no station has a model promoted; nothing can be inspected yet")
    return Readiness(
        ready=not problems,
        database=database,
        auth="disabled" if state.settings.auth_disabled else "enabled",
        stations=stations,
        problems=problems,
    )
