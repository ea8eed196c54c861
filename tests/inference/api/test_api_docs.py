"""The API's documentation pages work on a plant network without internet: every script and
style they load is served by the service itself."""

from __future__ import annotations

import re

from api_service import Service


def test_docs_and_redoc_load_only_local_assets(service: Service) -> None:
    for page in ("/docs", "/redoc"):
        response = service.client.get(page)  # no key: the documentation is open
        assert response.status_code == 200
        html = response.text
        assert "cdn" not in html.lower()
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets, html
        for asset in assets:
            assert asset.startswith("/docs-assets/"), asset
            fetched = service.client.get(asset)
            assert fetched.status_code == 200 and len(fetched.content) > 1000, asset
    assert service.client.get("/openapi.json").json()["paths"]["/v1/inspect"]
