"""What one running service holds: settings, the store, the loaded engines, metrics, keys.

Created by the app's lifespan and reached from routes through `Depends(get_state)`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

from fastapi import Request

from defectlens.inference.api.auth import ROLES, Caller, KeyCache, Role
from defectlens.inference.api.metrics import ServiceMetrics
from defectlens.inference.api.settings import ServiceSettings
from defectlens.inference.engine_registry import EngineRegistry
from defectlens.inference.store import Database, Store


@dataclass
class ServiceState:
    settings: ServiceSettings
    database: Database
    store: Store
    registry: EngineRegistry
    metrics: ServiceMetrics
    keys: KeyCache
    inspections: ThreadPoolExecutor
    """`max_concurrent_inspections` worker threads, each inspecting one part at a time;
    more parts queue for them."""


def service_state(request: Request) -> ServiceState:
    """The running service's state."""
    state: ServiceState = request.app.state.service
    return state


async def get_state(request: Request) -> ServiceState:
    """`service_state` as a FastAPI dependency (async, so it costs no thread hop)."""
    return service_state(request)


def verify_key(store: Store, key: str) -> Caller | None:
    """The caller a presented key belongs to, from the store (None if unknown or revoked)."""
    found = store.verify_key(key)
    if found is None:
        return None
    key_id, role = found
    if role not in ROLES:  # the table's CHECK constraint rules this out
        return None
    return Caller(role=cast(Role, role), name=f"key:{key_id}", key_id=key_id)
