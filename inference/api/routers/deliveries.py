"""Results to the MES: the outbox's deliveries by state (dead letters first of all) and the
re-sending of one. Open to qa and admin keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict

from defectlens.errors import NotFound
from defectlens.inference.api.auth import DEPLOY, Caller
from defectlens.inference.api.dependencies import Service, require, scoped_station
from defectlens.inference.api.schemas import MAX_ROW_ID
from defectlens.inference.service.deliveries import list_deliveries, retry_delivery

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])

Operator = Annotated[Caller, Depends(require(DEPLOY, "read or re-send deliveries to the MES"))]


class DeliveryOut(BaseModel):
    """One result's delivery to one sink."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    result_id: str
    sink: str
    station: str
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    """Tries so far (counted from zero again after a retry)."""
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None
    last_error: str | None
    """Why the last try failed."""


@router.get("", response_model=list[DeliveryOut])
def get_deliveries(
    service: Service,
    caller: Operator,
    state: Literal["pending", "delivered", "dead"] | None = None,
    sink: Annotated[str | None, Query(max_length=64)] = None,
    station: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryOut]:
    """Deliveries newest first; `state=dead` lists the dead letters, with their last error.
    A key limited to stations must name one of them (`station=`)."""
    station = scoped_station(caller, station)
    records = list_deliveries(service.store, state, sink, station, limit)
    return [DeliveryOut.model_validate(record) for record in records]


@router.post("/{delivery_id}/retry", response_model=DeliveryOut)
def post_retry(
    service: Service, caller: Operator, delivery_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
) -> DeliveryOut:
    """Send a dead letter again now (its tries counted from zero); 409 if it was delivered."""
    found = service.store.get_delivery(delivery_id)
    if found is None or not caller.may_use_station(found.station):  # not even whether it exists
        raise NotFound(f"delivery {delivery_id} not found")
    record = retry_delivery(service.store, delivery_id, service.delivery)
    return DeliveryOut.model_validate(record)
