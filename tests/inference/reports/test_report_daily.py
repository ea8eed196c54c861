"""The daily report and the drift watch: the day due in the plant's zone, files written,
the mail through a real SMTP server (aiosmtpd on loopback), once a day however often asked
(a restart, a second service, cron), a failed send tried again; the drift on /metrics."""

from __future__ import annotations

import email
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from report_seed import Seed
from sqlalchemy import insert

from defectlens.cli import main
from defectlens.errors import InputError
from defectlens.inference.api.app import create_app
from defectlens.inference.reports.daily import due_day, recipients, send_daily
from defectlens.inference.reports.watch import check_drift
from defectlens.inference.service.settings import ServiceSettings
from defectlens.inference.store import Database
from defectlens.inference.store.tables import ModelVersionRow
from defectlens.settings import Settings


@pytest.mark.parametrize(
    ("now", "zone", "hour", "day"),
    [
        (datetime(2026, 5, 12, 5, 59, tzinfo=UTC), "UTC", 6, date(2026, 5, 10)),
        (datetime(2026, 5, 12, 6, 0, tzinfo=UTC), "UTC", 6, date(2026, 5, 11)),
        # 23:30 UTC is 07:30 on the 13th in Shanghai: the 12th is due there
        (datetime(2026, 5, 12, 23, 30, tzinfo=UTC), "Asia/Shanghai", 6, date(2026, 5, 12)),
        (datetime(2026, 5, 12, 0, 30, tzinfo=UTC), "America/Chicago", 0, date(2026, 5, 10)),
    ],
)
def test_the_day_due(now: datetime, zone: str, hour: int, day: date) -> None:
    assert due_day(now, zone, hour) == day


def test_recipients_are_checked() -> None:
    settings = Settings(report_mail_to=" qa@plant.example , boss@plant.example", smtp_host="mx")
    assert recipients(settings) == ("qa@plant.example", "boss@plant.example")
    with pytest.raises(InputError, match="not an e-mail address"):
        recipients(Settings(report_mail_to="qa at plant", smtp_host="mx"))
    with pytest.raises(InputError, match="DEFECTLENS_SMTP_HOST"):
        recipients(Settings(report_mail_to="qa@plant.example"))


class Inbox:
    """What the SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def _seed_day(seed: Seed) -> None:
    for hour in range(0, 24, 3):
        seed(datetime(2026, 5, 11, hour, tzinfo=UTC), "NG" if hour == 9 else "OK")


def test_sent_once_a_day_and_again_after_a_failure(
    db: Database, seed: Seed, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    inbox, port = smtp
    _seed_day(seed)
    mail = {"report_mail_to": "qa@plant.example", "smtp_host": "127.0.0.1", "smtp_tls": "none"}
    settings = Settings(home=tmp_path, smtp_port=port, **mail)
    day = date(2026, 5, 11)
    outcome = send_daily(db, settings, day)
    assert outcome.sent and outcome.folder == tmp_path / "reports" / "2026-05-11"
    assert {p.name for p in outcome.folder.iterdir()} == {
        "report.html", "report-zh.html", "report.pdf", "csv",
    }  # fmt: skip
    assert (outcome.folder / "report.pdf").read_bytes().startswith(b"%PDF")
    assert "缺陷率报告" in (outcome.folder / "report-zh.html").read_text()
    (message,) = inbox.messages
    assert message["Subject"] == "Defect-rate report 2026-05-11"
    assert message["To"] == "qa@plant.example"
    names = {part.get_filename() for part in message.walk() if part.get_filename()}
    assert names == {"report.html", "report.pdf"}
    body = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    assert "Parts 8, NG 1, NG rate 12.5%" in str(body.get_payload())
    # Asked again (the next loop, a restarted service, cron): nothing more is sent.
    assert not send_daily(db, settings, day).sent
    assert len(inbox.messages) == 1
    # A day whose send fails is recorded, and sent at the next ask.
    broken = Settings(home=tmp_path, smtp_port=_free_port(), **mail)  # nothing listens
    with pytest.raises(OSError):
        send_daily(db, broken, date(2026, 5, 12))
    assert send_daily(db, settings, date(2026, 5, 12)).sent
    assert len(inbox.messages) == 2


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_the_cron_command(
    db: Database,
    seed: Seed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _seed_day(seed)
    monkeypatch.setenv("DEFECTLENS_DATABASE_URL", str(db.engine.url))
    monkeypatch.setenv("DEFECTLENS_REPORT_DIR", str(tmp_path / "out"))
    assert main(["report", "--daily", "--day", "2026-05-11"]) == 0
    assert (tmp_path / "out" / "2026-05-11" / "report.html").exists()
    assert main(["report", "--daily", "--day", "2026-05-11"]) == 0
    assert "was sent before" in capsys.readouterr().out
    assert main(["report", "--format", "html"]) == 2  # no period: a usage error


def test_the_drift_gauge_and_the_log(
    db: Database, seed: Seed, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for minute in range(10):  # every score far above the validation scores
        seed(datetime(2026, 5, 11, 8, minute, tzinfo=UTC), "OK", score=0.42)
    for minute, score in ((30, 0.02), (31, 0.07)):  # as validation: half in each bin
        seed(datetime(2026, 5, 11, 8, minute, tzinfo=UTC), "OK", score=score, model_version="v2")
    with db.write() as session:
        session.execute(
            insert(ModelVersionRow),
            [
                {
                    "name": "m",
                    "version": version,
                    "family": "anomaly",
                    "path": f"/models/m/{version}",
                    "sha256": "0" * 64,
                    "metrics": {"good_score_quantiles": [0.0, 0.1]},
                }
                for version in ("v1", "v2")
            ],
        )
    settings = ServiceSettings(
        home=tmp_path,
        database_url=db.engine.url.render_as_string(hide_password=False),
        deployment_poll_s=0,
        log_format="text",
        drift_alert=0.5,
    )
    with TestClient(create_app(settings)) as http:
        service = http.app.state.service  # type: ignore[attr-defined]
        with caplog.at_level(logging.WARNING):
            found = check_drift(service, now=datetime(2026, 5, 11, 20, tzinfo=UTC))
        assert [(h.model_version, h.alert) for h in found] == [("v1", True), ("v2", False)]
        metrics = http.get("/metrics").text
    assert 'defectlens_model_drift_alert{model="m",version="v1"} 1.0' in metrics
    assert 'defectlens_model_drift_alert{model="m",version="v2"} 0.0' in metrics
    assert 'defectlens_model_score_drift{model="m",version="v1"}' in metrics
    alerts = [r for r in caplog.records if "score drift" in r.getMessage()]
    assert len(alerts) == 1 and "m v1" in alerts[0].getMessage()
