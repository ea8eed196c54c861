"""The `Service` handle the API tests use: a running app, its store, a key per role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from defectlens.inference.service.settings import ServiceSettings
from defectlens.inference.store import Store

STATION = "s1"


@dataclass
class Service:
    """A running app and what the tests need to call it."""

    client: TestClient
    settings: ServiceSettings
    store: Store
    keys: dict[str, str]
    model_dirs: list[Path]

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}

    def inspect(
        self,
        image: bytes,
        role: str = "line",
        content_type: str = "image/png",
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> Any:
        """POST /v1/inspect with the image as the raw body and metadata as query parameters;
        `headers` are added to (or replace) the role's key and the content type."""
        params.setdefault("station", STATION)
        return self.client.post(
            "/v1/inspect",
            content=image,
            params={k: v for k, v in params.items() if v is not None},
            headers={**self.auth(role), "Content-Type": content_type, **(headers or {})},
        )

    def stored_count(self) -> int:
        return self.store.verdict_counts()["total"]

    def image_files(self) -> list[Path]:
        folder = self.settings.images_dir
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
