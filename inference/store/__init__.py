"""The result store: SQL tables, Alembic migrations and the transactions the service calls.

db = open_database(settings.resolved_database_url, timeout_s=4.0)  # migrated to the latest
store = Store(db, instance="line1")      # its image rows; retention and the sweep go by them
store.save_result(
    result,
    images=[StoredImage("image", "2026/11/26/ID.png", 48211)],
    idempotency_key=key,                 # a retry raises DuplicatePart(.existing=stored result)
)
"""

from defectlens.inference.store.database import Database, open_database
from defectlens.inference.store.ids import new_result_id
from defectlens.inference.store.migrate import upgrade
from defectlens.inference.store.records import (
    ApiKey,
    AuditEntry,
    Deployment,
    ModelVersion,
    Station,
    StoredImage,
    VerifiedKey,
)
from defectlens.inference.store.results import MAX_PAGE, DuplicatePart, ResultExists
from defectlens.inference.store.store import Store
from defectlens.inference.store.tables import ROLES

__all__ = [
    "MAX_PAGE",
    "ROLES",
    "ApiKey",
    "AuditEntry",
    "Database",
    "Deployment",
    "DuplicatePart",
    "ModelVersion",
    "ResultExists",
    "Station",
    "Store",
    "StoredImage",
    "VerifiedKey",
    "new_result_id",
    "open_database",
    "upgrade",
]
