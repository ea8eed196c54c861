"""The reports page and its JSON through the real app (roles, filters, languages), and a
real browser (headless Chromium) loading the page on seeded data and saving a screenshot."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from report_seed import Seed
from test_report_outputs import seed_fortnight

from defectlens.inference.api.app import create_app
from defectlens.inference.service.settings import ServiceSettings
from defectlens.inference.store import Database, Store

WEEK = {"from": "2026-05-11", "to": "2026-05-17"}


def _settings(db: Database, home: Path, **overrides: object) -> ServiceSettings:
    return ServiceSettings(
        home=home,
        database_url=db.engine.url.render_as_string(hide_password=False),
        timezone="Asia/Shanghai",
        deployment_poll_s=0,
        log_format="text",
        **overrides,
    )


@pytest.fixture
def client(db: Database, seed: Seed, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    seed_fortnight(seed)
    store = Store(db)
    keys = {role: store.create_key(role, f"test-{role}")[1] for role in ("line", "qa", "manager")}
    keys["S2-manager"] = store.create_key("manager", "scoped", stations=["S2"])[1]
    with TestClient(create_app(_settings(db, tmp_path / "home"))) as test_client:
        yield test_client, keys


def test_roles_filters_and_languages(client: tuple[TestClient, dict[str, str]]) -> None:
    http, keys = client
    assert http.get("/reports", params=WEEK).status_code == 401
    line = {"X-API-Key": keys["line"]}
    assert http.get("/reports", params=WEEK, headers=line).status_code == 403
    manager = {"X-API-Key": keys["manager"]}
    page = http.get("/reports", params=WEEK, headers=manager)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Defect-rate report" in page.text and "<svg" in page.text and "<form" in page.text
    chinese = http.get("/reports", params={**WEEK, "lang": "zh"}, headers=manager)
    assert "缺陷率报告" in chinese.text and 'lang="zh-CN"' in chinese.text
    assert "不合格率 " in chinese.text and "基准期 " in chinese.text
    assert "in the baseline" not in chinese.text  # the trend sentence is translated too
    # The share hint says the link needs the key; the form never carries one.
    assert "signs in with a key that may read reports" in page.text
    assert "有报告读取权限的密钥登录" in chinese.text
    assert 'name="key"' not in page.text and "api_key" not in page.text
    data = http.get("/v1/reports", params={**WEEK, "station": "S1"}, headers=manager).json()
    assert data["tables"]["summary"][0]["parts"] == 7 * 12 * 4
    assert data["trend"].startswith("NG rate")
    qa = {"X-API-Key": keys["qa"]}
    assert http.get("/v1/reports", params={**WEEK, "grain": "shift"}, headers=qa).status_code == 200
    assert http.get("/v1/reports", params={**WEEK, "grain": "hour"}, headers=qa).status_code == 422
    scoped = {"X-API-Key": keys["S2-manager"]}
    assert http.get("/v1/reports", params=WEEK, headers=scoped).status_code == 403
    assert (
        http.get("/v1/reports", params={**WEEK, "station": "S2"}, headers=scoped).status_code == 200
    )
    assert http.get("/reports", params=WEEK, headers=scoped).status_code == 403
    page = http.get("/reports", params={**WEEK, "station": "S2"}, headers=scoped)
    assert page.status_code == 200 and "Station S2" in page.text
    backwards = {"from": "2026-05-17", "to": "2026-05-11"}
    assert http.get("/v1/reports", params=backwards, headers=manager).status_code == 422


def test_both_routes_read_the_same_filters(client: tuple[TestClient, dict[str, str]]) -> None:
    http, _ = client
    paths = http.get("/openapi.json").json()["paths"]

    def query(path: str) -> set[str]:
        return {p["name"] for p in paths[path]["get"]["parameters"] if p["in"] == "query"}

    filters = {"from", "to", "line", "station", "grain", "rules"}
    assert query("/v1/reports") == filters
    assert query("/reports") == {*filters, "lang", "serial"}


def test_a_part_traced_by_serial_run_rules_and_model_health(
    client: tuple[TestClient, dict[str, str]], seed: Seed
) -> None:
    http, keys = client
    first = seed(datetime(2026, 5, 12, 1, 0, tzinfo=UTC), "NG", serial="TR-7", score=0.81)
    seed(
        datetime(2026, 5, 12, 2, 30, tzinfo=UTC),
        "OK",
        serial="TR-7",
        label=("NG", "scratch"),
        model_version="v2",
    )
    manager = {"X-API-Key": keys["manager"]}
    page = http.get("/reports", params={**WEEK, "serial": " TR-7 "}, headers=manager).text
    trace = page[page.index("<h2>Part TR-7</h2>") :].split("</table>")[0]
    # Newest first, in the plant's time (Shanghai, UTC+8), with the standing QA label.
    assert trace.index("2026-05-12 10:30:00") < trace.index("2026-05-12 09:00:00")
    assert "m v2" in trace and "NG scratch" in trace and "0.810" in trace
    assert "<img" not in trace and first not in trace  # no image kept: no link to one
    chinese = http.get("/reports", params={**WEEK, "serial": "TR-7", "lang": "zh"}, headers=manager)
    assert "<h2>零件 TR-7</h2>" in chinese.text and "质检标注" in chinese.text
    nothing = http.get("/reports", params={**WEEK, "serial": "NOPE"}, headers=manager).text
    assert "No inspection of this serial" in nothing
    scoped = {"X-API-Key": keys["S2-manager"]}  # TR-7 went through S1 only
    hidden = http.get(
        "/reports", params={**WEEK, "station": "S2", "serial": "TR-7"}, headers=scoped
    )
    assert "No inspection of this serial" in hidden.text and "TR-7</td>" not in hidden.text
    too_long = http.get("/reports", params={**WEEK, "serial": "x" * 129}, headers=manager)
    assert too_long.status_code == 422
    assert "Western Electric" not in page
    ruled = http.get("/reports", params={**WEEK, "rules": "true"}, headers=manager).text
    assert "Western Electric rules" in ruled and "points breaking a run rule" in ruled
    assert 'name="rules" value="true" checked' in ruled
    # Model health: v2 has one part; no model card with validation scores is registered.
    assert "Model health" in page and "no validation scores in its model card" in page
    health = http.get("/v1/reports", params=WEEK, headers=manager).json()["tables"]
    assert {(m["model_version"], m["parts"]) for m in health["model_health"]} >= {("v2", 1)}


@pytest.mark.parametrize(
    ("days", "named"),
    [
        ({"from": "0001-01-01", "to": "0001-01-02"}, "from"),
        ({"from": "9999-12-31", "to": "9999-12-31"}, "from"),
        ({"from": "2026-05-11", "to": "9999-12-31"}, "to"),
    ],
)
def test_days_out_of_range_are_the_callers_mistake(
    client: tuple[TestClient, dict[str, str]], days: dict[str, str], named: str
) -> None:
    # The ends of Python's calendar once overflowed in the window's UTC bounds (a 500).
    http, keys = client
    manager = {"X-API-Key": keys["manager"]}
    for route in ("/v1/reports", "/reports"):
        answer = http.get(route, params=days, headers=manager)
        assert answer.status_code == 422, (route, answer.text)
        assert answer.json()["detail"].startswith(f"{named} = {days[named]} is outside")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_browser_renders_the_page(db: Database, seed: Seed, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium (scripts/dev.sh installs it)")
    seed_fortnight(seed)
    port = _free_port()
    # A lab setting on loopback: a browser's address bar sends no API key header.
    app = create_app(_settings(db, tmp_path / "home", auth_disabled=True))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        shot = tmp_path / "reports.png"
        url = f"http://127.0.0.1:{port}/reports?from=2026-05-11&to=2026-05-17&lang=zh"
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'browser'}",
                f"--screenshot={shot}",
                "--window-size=1280,2000",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        assert shot.stat().st_size > 20_000  # a page with charts, not a blank or error page
    finally:
        server.should_exit = True
        thread.join(timeout=10)
