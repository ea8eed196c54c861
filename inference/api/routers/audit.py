"""The audit log: who promoted, rolled back, started or cancelled a training job, started or
stopped a shadow run, created or revoked a key, and when. `qa` and `manager` read it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from defectlens.errors import InputError
from defectlens.inference.api.auth import Caller, Role
from defectlens.inference.api.dependencies import Service, require
from defectlens.inference.api.schemas import MAX_ROW_ID

router = APIRouter(prefix="/v1/audit", tags=["audit"])

QA_READ: frozenset[Role] = frozenset({"qa", "manager"})
AuditReader = Annotated[Caller, Depends(require(QA_READ, "read the audit log"))]


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    """Who: the API key (`key:ID`), `cli`, or `auth-disabled`."""
    action: str
    """promote, rollback, job.start, job.cancel, shadow.start, shadow.stop, compare.start,
    key.create, key.revoke, ..."""
    target: str
    """What: `station:ID`, `job:ID`, `key:ID`."""
    detail: dict[str, Any]


@router.get("", response_model=list[AuditEntryOut])
def audit_log(
    service: Service,
    caller: AuditReader,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[
        str | None, Query(max_length=64, description="`shadow` matches shadow.start and .stop")
    ] = None,
    target: Annotated[str | None, Query(max_length=256)] = None,
    station: Annotated[str | None, Query(max_length=64, description="target station:ID")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryOut]:
    """Audit entries newest first, filtered; page on with `before_id` = the last id seen."""
    if station is not None:
        if target is not None:
            raise InputError("give station or target, not both")
        target = f"station:{station}"
    entries = service.store.audit_entries(
        target, limit, actor=actor, action=action, since=since, until=until, before_id=before_id
    )
    return [AuditEntryOut.model_validate(entry) for entry in entries]
