"""`Store`: every operation of the result store on one database, one module per concern.

Each operation is one transaction, all or nothing. Callers get `InspectionResult`s and the
frozen records of `records.py`, never ORM rows.
"""

from __future__ import annotations

from defectlens.inference.store.audit import AuditStore
from defectlens.inference.store.checks import check_instance
from defectlens.inference.store.comparisons import ComparisonStore
from defectlens.inference.store.database import Database
from defectlens.inference.store.deployments import DeploymentStore
from defectlens.inference.store.jobs import JobStore
from defectlens.inference.store.keys import KeyStore
from defectlens.inference.store.labels import LabelStore
from defectlens.inference.store.outbox import OutboxStore
from defectlens.inference.store.results import ResultStore
from defectlens.inference.store.retention import RetentionStore
from defectlens.inference.store.shadow import ShadowStore
from defectlens.inference.store.tables import DEFAULT_INSTANCE


class Store(
    ResultStore,
    DeploymentStore,
    KeyStore,
    LabelStore,
    AuditStore,
    RetentionStore,
    OutboxStore,
    JobStore,
    ShadowStore,
    ComparisonStore,
):
    """The result store's operations on one `Database`: results (`results.py`), stations,
    model versions and deployments (`deployments.py`), API keys (`keys.py`), labels
    (`labels.py`), the audit log (`audit.py`), image retention (`retention.py`), the
    outbox's deliveries (`outbox.py`), training jobs (`jobs.py`), shadow runs (`shadow.py`)
    and comparisons (`comparisons.py`)."""

    def __init__(self, database: Database, instance: str = DEFAULT_INSTANCE) -> None:
        """`instance` names this service among those sharing the database, each with its
        own image folder: the image rows it saves carry it, and its retention and orphan
        sweep consider only those. `InputError` if it is empty or over 64 characters."""
        check_instance(instance)
        self.db = database
        self.instance = instance
