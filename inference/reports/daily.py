"""The daily report: the previous plant day's report written to a folder (HTML, PDF and a
CSV per table) and mailed by SMTP, once a day however often it is asked for and however
many services share the database.

The service asks from its background loop (`watch.py`) once the plant-time hour
DEFECTLENS_REPORT_DAILY_HOUR has passed; `defectlens report --daily` asks from cron. A day
is claimed in the audit log before it is sent (so a restart, or a second service on the same
database, does not send it again); a failed send is recorded there too and tried again at
the next ask. A crash between the claim and the send leaves that day unsent: it says so in
the log at the claim.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, select, text

from defectlens.errors import InputError
from defectlens.inference.reports.calendar import plant_zone
from defectlens.inference.reports.render import html_report, trend_sentence, write_csv, write_pdf
from defectlens.inference.reports.report import ReportRequest, build_report
from defectlens.inference.store import Database
from defectlens.inference.store.audit import record_audit
from defectlens.inference.store.tables import AuditLogRow
from defectlens.settings import Settings

log = logging.getLogger(__name__)

CLAIMED = "report.daily"
FAILED = "report.daily.failed"
LOCK = 0x64617930  # 'day0': PostgreSQL advisory lock of the claim
SMTP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DailyOutcome:
    day: date
    sent: bool
    """False: the day was already claimed (sent, or being sent by another service)."""
    folder: Path | None = None
    mailed_to: tuple[str, ...] = ()


def due_day(now: datetime, zone: str, hour: int) -> date:
    """The day whose report is due at `now`: yesterday (plant time) from `hour` on, before
    it the day before (so a service that was down at the hour still sends it)."""
    local = now.astimezone(plant_zone(zone))
    back = 1 if local.hour >= hour else 2
    return local.date() - timedelta(days=back)


def recipients(settings: Settings) -> tuple[str, ...]:
    """DEFECTLENS_REPORT_MAIL_TO as addresses; InputError for one that is not an address or
    addresses without DEFECTLENS_SMTP_HOST."""
    found = tuple(a.strip() for a in (settings.report_mail_to or "").split(",") if a.strip())
    for address in found:
        if "@" not in address or any(c.isspace() for c in address):
            raise InputError(f"DEFECTLENS_REPORT_MAIL_TO: {address!r} is not an e-mail address")
    if found and not settings.smtp_host:
        raise InputError(
            "DEFECTLENS_REPORT_MAIL_TO is set but DEFECTLENS_SMTP_HOST is not: set the mail "
            "server to send through"
        )
    return found


def _target(day: date) -> str:
    return f"report:{day.isoformat()}"


def claim(db: Database, day: date, actor: str) -> bool:
    """Claim `day`'s report for this caller: False if it was claimed before and that send
    did not fail."""
    with db.write() as session:
        if db.dialect == "postgresql":  # SQLite's write transactions are one at a time
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK})

        def count(action: str) -> int:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(AuditLogRow)
                    .where(AuditLogRow.action == action, AuditLogRow.target == _target(day))
                )
                or 0
            )

        if count(CLAIMED) > count(FAILED):
            return False
        record_audit(session, actor, CLAIMED, _target(day), {})
    return True


def write_report(db: Database, settings: Settings, day: date) -> tuple[Path, str, str]:
    """The day's report in `<reports_dir>/<day>/`: report.html (English), report-zh.html,
    report.pdf and csv/. Returns the folder, the English HTML and the day's figures in words."""
    report = build_report(db, settings, ReportRequest(day, day, grain="shift"))
    folder = settings.reports_dir / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    page = html_report(report, "en")
    for name, content in (("report.html", page), ("report-zh.html", html_report(report, "zh"))):
        temporary = folder / f".{name}.tmp"
        temporary.write_text(content, encoding="utf-8")
        temporary.replace(folder / name)
    temporary = folder / ".report.pdf.tmp"
    write_pdf(report, temporary)
    temporary.replace(folder / "report.pdf")
    write_csv(report, folder / "csv")
    total = report.total
    summary = (
        f"Parts {total.parts:,}, NG {total.ng:,}, NG rate {_pct(total.ng_rate)}, first-pass "
        f"yield {_pct(total.first_pass_yield)}. Against the day before: "
        f"{trend_sentence(report.trend)}."
    )
    return folder, page, summary


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def mail_report(
    settings: Settings, to: tuple[str, ...], day: date, folder: Path, summary: str
) -> None:
    """One message to `to`: the trend in words, the HTML report and the PDF attached."""
    message = EmailMessage()
    message["Subject"] = f"Defect-rate report {day.isoformat()}"
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(to)
    message.set_content(
        f"Defect-rate report for {day.isoformat()} ({settings.timezone}).\n\n{summary}\n\n"
        "The report is attached (HTML and PDF).\n"
    )
    for name, kind in (("report.html", ("text", "html")), ("report.pdf", ("application", "pdf"))):
        data = (folder / name).read_bytes()
        message.add_attachment(data, maintype=kind[0], subtype=kind[1], filename=name)
    host, port = settings.smtp_host or "", settings.smtp_port
    client: smtplib.SMTP
    if settings.smtp_tls == "ssl":
        client = smtplib.SMTP_SSL(
            host, port, timeout=SMTP_TIMEOUT_S, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_S)
    with client:
        if settings.smtp_tls == "starttls":
            client.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            client.login(settings.smtp_user, password)
        client.send_message(message)


def send_daily(db: Database, settings: Settings, day: date, actor: str = "service") -> DailyOutcome:
    """Write and mail `day`'s report unless it was done before (see the module's text).
    A failure is recorded (so the next ask tries again) and raised."""
    to = recipients(settings)
    if not claim(db, day, actor):
        return DailyOutcome(day, sent=False)
    log.info("daily report %s claimed; writing it", day, extra={"day": day.isoformat()})
    try:
        folder, _, summary = write_report(db, settings, day)
        if to:
            mail_report(settings, to, day, folder, summary)
    except Exception as error:
        with db.write() as session:
            record_audit(session, actor, FAILED, _target(day), {"error": str(error)[:500]})
        raise
    log.info(
        "daily report %s written to %s%s",
        day,
        folder,
        f" and mailed to {', '.join(to)}" if to else "",
        extra={"day": day.isoformat()},
    )
    return DailyOutcome(day, sent=True, folder=folder, mailed_to=to)
