"""The audit log: who promoted, rolled back, created or revoked what, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from defectlens.inference.store.checks import check_row
from defectlens.inference.store.database import Database
from defectlens.inference.store.records import AuditEntry
from defectlens.inference.store.tables import AuditLogRow, utc_now


def record_audit(
    session: Session, actor: str, action: str, target: str, detail: dict[str, Any]
) -> None:
    """Add an audit entry to the transaction of `session` (it stands or falls with it)."""
    row = AuditLogRow(actor=actor, action=action, target=target, detail=detail, at=utc_now())
    check_row(row)
    session.add(row)


class AuditStore:
    """Reading the audit log (entries are written by the operations they record)."""

    db: Database

    def audit_entries(
        self,
        target: str | None = None,
        limit: int = 100,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        """The newest audit entries first, optionally for one target (e.g. `station:S1`), one
        actor, one action (`shadow` also matches `shadow.start` and `shadow.stop`), a time
        window [since, until) and, to page on, ids below `before_id`."""
        query = select(AuditLogRow).order_by(AuditLogRow.id.desc()).limit(limit)
        if target is not None:
            query = query.where(AuditLogRow.target == target)
        if actor is not None:
            query = query.where(AuditLogRow.actor == actor)
        if action is not None:
            query = query.where(
                or_(
                    AuditLogRow.action == action,
                    AuditLogRow.action.startswith(f"{action}.", autoescape=True),
                )
            )
        if since is not None:
            query = query.where(AuditLogRow.at >= since)
        if until is not None:
            query = query.where(AuditLogRow.at < until)
        if before_id is not None:
            query = query.where(AuditLogRow.id < before_id)
        with self.db.read() as session:
            return [AuditEntry.of(row) for row in session.scalars(query)]
