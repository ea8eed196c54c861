"""The audit log: who promoted, rolled back, created or revoked what, and when."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
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

    def audit_entries(self, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries first, optionally for one target (e.g. `station:S1`)."""
        query = select(AuditLogRow).order_by(AuditLogRow.id.desc()).limit(limit)
        if target is not None:
            query = query.where(AuditLogRow.target == target)
        with self.db.read() as session:
            return [AuditEntry.of(row) for row in session.scalars(query)]
