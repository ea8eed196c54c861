"""The service's commands: `defectlens serve`, `models`, `keys`, `backup`, `restore`,
`deliveries` and `report`.

`defectlens.cli` calls `add_commands`; each handler opens the store from the settings
(`DEFECTLENS_HOME`, `DEFECTLENS_DATABASE_URL`) and calls one store or service function.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from defectlens.errors import InputError

EXIT_OK, EXIT_FAILURE = 0, 1
ROLE_CHOICES = ("line", "qa", "manager", "admin")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the service's commands to the `defectlens` command."""
    serve = commands.add_parser(
        "serve",
        help="run the inspection service (HTTP API, OpenAPI docs at /docs)",
        description="One process with one worker: every worker would load every station's "
        "model, so scale by running one service per line or edge box against a shared "
        "database instead. Settings: DEFECTLENS_* environment variables (see the README).",
    )
    serve.add_argument("--host", help="listen address (default: $DEFECTLENS_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: $DEFECTLENS_PORT or 8000)")
    serve.set_defaults(handler=_serve)

    models = commands.add_parser("models", help="model versions and which station runs which")
    models_commands = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = models_commands.add_parser("list", help="registered versions and their metrics")
    listing.set_defaults(handler=_models_list)
    promote = models_commands.add_parser(
        "promote",
        help="make a model version folder the active model of a station",
        description="Verifies and loads the folder, copies it into the workspace's models "
        "folder (so the service no longer needs the training folder), registers it, and "
        "records it as the station's active model (the station is created if new). Then waits "
        "until every service running on the workspace serves it (they look every "
        "DEFECTLENS_DEPLOYMENT_POLL_S seconds) and says when each swapped; exit status 1 if "
        "one did not in time or could not load it.",
    )
    promote.add_argument("model_dir", metavar="MODEL_DIR", help="a folder `defectlens train` wrote")
    promote.add_argument("--station", required=True, help="station id, e.g. line1-cam1")
    _add_wait_options(promote)
    promote.set_defaults(handler=_models_promote)
    rollback = models_commands.add_parser(
        "rollback",
        help="return a station to the model it ran before the current one",
        description="Then waits, as `promote` does, until every running service serves it.",
    )
    rollback.add_argument("--station", required=True, help="station id")
    _add_wait_options(rollback)
    rollback.set_defaults(handler=_models_rollback)

    keys = commands.add_parser("keys", help="API keys: create, list, revoke")
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = keys_commands.add_parser(
        "create",
        help="create a key; the key is printed once, on the last line",
        description="Roles: line (inspect), qa (also create stations, promote, roll back), "
        "manager (read results, stations, models), admin (everything).",
    )
    create.add_argument("--role", required=True, choices=ROLE_CHOICES)
    create.add_argument("--name", help="who or what uses it, e.g. line1-plc (default: the role)")
    create.add_argument(
        "--station",
        action="append",
        dest="stations",
        metavar="STATION",
        help="limit the key to this station; repeat for several (default: every station)",
    )
    create.add_argument(
        "--expires-in-days",
        type=float,
        metavar="DAYS",
        help="the key stops working after this many days (default: never)",
    )
    create.set_defaults(handler=_keys_create)
    keys_commands.add_parser(
        "list", help="every key with its stations, expiry and last use (never the key itself)"
    ).set_defaults(handler=_keys_list)
    revoke = keys_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", metavar="ID", type=int)
    revoke.set_defaults(handler=_keys_revoke)

    backup = commands.add_parser(
        "backup",
        help="copy the database, kept images, model versions, label files and dataset "
        "versions into a new folder",
        description="Safe while the service runs: the image files, model folders, label files "
        "and dataset versions copied are those the database copy's own rows name, so the "
        "backup is consistent. DEST must "
        "not exist; manifest.json lists every file with its sha256. PostgreSQL needs pg_dump.",
    )
    backup.add_argument("dest", metavar="DEST", help="the new backup folder")
    backup.set_defaults(handler=_backup)
    restore = commands.add_parser(
        "restore",
        help="restore a backup into DEFECTLENS_HOME and its database",
        description="Checks every file's sha256 first; refuses a workspace that already holds "
        "results, images, label files, dataset versions or the backup's model folders "
        "unless --force. Stop the service "
        "first. PostgreSQL needs pg_restore.",
    )
    restore.add_argument("source", metavar="SRC", help="a folder `defectlens backup` wrote")
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace the database, the images, labels and datasets folders and the "
        "backup's model folders",
    )
    restore.set_defaults(handler=_restore)

    deliveries = commands.add_parser(
        "deliveries",
        help="results to the MES: deliveries per sink, dead letters and their re-sending",
    )
    deliveries_commands = deliveries.add_subparsers(
        dest="deliveries_command", metavar="ACTION", required=True
    )
    listing = deliveries_commands.add_parser(
        "list", help="deliveries newest first, with their tries and last error"
    )
    listing.add_argument("--state", choices=("pending", "delivered", "dead"), default="dead")
    listing.add_argument("--sink", help="only this sink (webhook, mqtt, opcua)")
    listing.add_argument("--station", help="only this station")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(handler=_deliveries_list)
    retry = deliveries_commands.add_parser(
        "retry",
        help="send a dead letter again (a running service picks it up within "
        "DEFECTLENS_DELIVERY_POLL_S seconds)",
    )
    retry.add_argument("delivery_id", metavar="ID", type=int)
    retry.set_defaults(handler=_deliveries_retry)

    from defectlens.inference.line.commands import add_station_commands

    add_station_commands(commands)
    from defectlens.inference.label_commands import add_label_commands

    add_label_commands(commands)  # labels, datasets
    _add_report_command(commands)

    from defectlens.inference.qa_commands import add_qa_commands

    add_qa_commands(commands)  # jobs, shadow, compare


def _add_report_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report",
        help="defect-rate report: NG rate, first-pass yield, Pareto, p-charts, trend",
        description="Days are counted in DEFECTLENS_TIMEZONE and shifts come from "
        "DEFECTLENS_SHIFTS. html: one self-contained file (charts inline); csv: a folder "
        "with one CSV per table; pdf: the summary and each chart, a page each.",
    )
    report.add_argument("--from", dest="first", type=_date, metavar="DATE")
    report.add_argument("--to", dest="last", type=_date, metavar="DATE")
    report.add_argument("--line", help="only this line")
    report.add_argument("--station", help="only this station")
    report.add_argument(
        "--grain",
        choices=("shift", "day", "week", "month"),
        default="day",
        help="periods of the NG-rate chart and p-chart subgroups (default: day)",
    )
    report.add_argument("--baseline-from", type=_date, metavar="DATE")
    report.add_argument(
        "--baseline-to",
        type=_date,
        metavar="DATE",
        help="baseline period (default: as many days just before --from)",
    )
    report.add_argument("--format", choices=("html", "csv", "pdf"), default="html")
    report.add_argument("--lang", choices=("en", "zh"), default="en")
    report.add_argument("--out", type=Path, help="file (html, pdf) or folder (csv)")
    report.add_argument("--rules", action="store_true", help="mark Western Electric run rules")
    report.add_argument(
        "--daily",
        action="store_true",
        help="the daily report (for cron): the previous plant day (or --day) to "
        "DEFECTLENS_REPORT_DIR and by e-mail (DEFECTLENS_SMTP_*), once a day however often run",
    )
    report.add_argument("--day", type=_date, metavar="DATE", help="with --daily: this day")
    report.set_defaults(handler=_report)


def _date(text: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _report(args: argparse.Namespace) -> int:
    from defectlens.inference.reports.render import html_report, write_csv, write_pdf
    from defectlens.inference.reports.report import ReportRequest, build_report
    from defectlens.inference.store import open_database
    from defectlens.settings import Settings

    if args.daily:
        return _daily_report(args)
    if args.first is None or args.last is None or args.out is None:
        raise InputError("give --from, --to and --out (or --daily)")
    if (args.baseline_from is None) != (args.baseline_to is None):
        raise InputError("give both --baseline-from and --baseline-to, or neither")
    settings = Settings()
    request = ReportRequest(
        args.first,
        args.last,
        args.line,
        args.station,
        args.grain,
        args.baseline_from,
        args.baseline_to,
        run_rules=args.rules,
    )
    database = open_database(settings.resolved_database_url)
    try:
        report = build_report(database, settings, request)
    finally:
        database.close()
    out: Path = args.out
    if args.format == "csv":
        for path in write_csv(report, out):
            print(path)
        return EXIT_OK
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "pdf":
        write_pdf(report, out)
    else:
        out.write_text(html_report(report, args.lang), encoding="utf-8")
    print(out)
    return EXIT_OK


def _daily_report(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from defectlens.inference.reports.daily import due_day, send_daily
    from defectlens.inference.store import open_database
    from defectlens.settings import Settings

    settings = Settings()
    day = args.day or due_day(datetime.now(UTC), settings.timezone, 0)
    database = open_database(settings.resolved_database_url)
    try:
        outcome = send_daily(database, settings, day, actor="cli")
    finally:
        database.close()
    if not outcome.sent:
        print(f"the report of {day} was sent before; nothing to do")
        return EXIT_OK
    print(outcome.folder)
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from defectlens.inference.api.app import create_app
    from defectlens.inference.line.commands import check_stations_file
    from defectlens.inference.service import ServiceSettings
    from defectlens.logs import configure_logging, uvicorn_log_config

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = ServiceSettings(**overrides)
    check_stations_file()  # a wrong station is named with its file and line: exit 2
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        access_log=False,  # the app logs each request itself, with its request id
        log_config=uvicorn_log_config(settings.log_format, settings.log_level),
    )
    return EXIT_OK


def _store() -> Any:
    from defectlens.inference.service import ServiceSettings
    from defectlens.inference.store import Store, open_database

    settings = ServiceSettings()
    database = open_database(settings.resolved_database_url, timeout_s=settings.database_timeout_s)
    return Store(database, instance=settings.instance_id)


def _models_list(args: argparse.Namespace) -> int:
    from defectlens.inference.service.deployments import deployed_versions

    versions = deployed_versions(_store())
    if not versions:
        print("no model versions registered; `defectlens models promote MODEL_DIR --station ID`")
        return EXIT_OK
    print(
        f"{'id':>4}  {'name':<16} {'version':<26} {'AUROC':>6} {'escape':>7} {'FRR':>6}  stations"
    )
    for deployed in versions:
        version, metrics = deployed.version, deployed.version.metrics
        print(
            f"{version.id:>4}  {version.name:<16} {version.version:<26} "
            f"{_figure(metrics.get('image_auroc')):>6} {_figure(metrics.get('escape_rate')):>7} "
            f"{_figure(metrics.get('false_reject_rate')):>6}  {', '.join(deployed.stations) or '-'}"
        )
    return EXIT_OK


def _models_promote(args: argparse.Namespace) -> int:
    from defectlens.inference.service import ServiceSettings
    from defectlens.inference.service.deployments import deploy_model_dir
    from defectlens.inference.service.inspection import STATION_ID_PATTERN

    if not re.fullmatch(STATION_ID_PATTERN, args.station):
        raise InputError(
            f"--station {args.station!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    _check_wait(args)
    folder = Path(args.model_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such model version folder")
    deployment = deploy_model_dir(
        _store(), ServiceSettings().models_dir, folder, args.station, actor="cli"
    )
    version = deployment.model_version
    print(
        f"station {deployment.station_id}: {version.name} {version.version} "
        f"(model version {version.id}, {version.path}) is active"
    )
    return _wait_for_services(args, deployment)


def _models_rollback(args: argparse.Namespace) -> int:
    _check_wait(args)
    deployment = _store().rollback(args.station, actor="cli")
    version = deployment.model_version
    print(f"station {deployment.station_id}: back to {version.name} {version.version}")
    return _wait_for_services(args, deployment)


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the running services to swap (default: 30)",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for the running services"
    )


def _check_wait(args: argparse.Namespace) -> None:
    if not args.wait >= 0:
        raise InputError(f"--wait {args.wait:g}: give a number of seconds, 0 or more")


def _wait_for_services(args: argparse.Namespace, deployment: Any) -> int:
    """Wait until every service running on the workspace serves the deployment's model, and
    say when each did; 1 if one could not load it, does not poll or did not swap in time."""
    from defectlens.inference.service import ServiceSettings
    from defectlens.inference.service.instances import run_dir, running_instances, wait_for_model

    version, station = deployment.model_version, deployment.station_id
    model = f"{version.name} {version.version}"
    if args.no_wait:
        return EXIT_OK
    folder = run_dir(ServiceSettings().home)
    running, stale = running_instances(folder)
    for status in stale:
        seen = f"{status.updated_at:%Y-%m-%d %H:%M:%S} UTC"
        print(f"{status.name} last reported at {seen}: not running (ignored)")
    if not running:
        print(f"no service is running on this workspace; it will serve {model} when it starts")
        return EXIT_OK
    print(f"waiting up to {args.wait:g} s for {len(running)} running service(s) to swap")
    failures = 0
    outcomes = wait_for_model(
        folder, running, station, f"{version.name}/{version.version}", version.path, args.wait
    )
    for outcome in outcomes:
        name, after = outcome.instance.name, f"{outcome.after_s:.1f} s"
        if outcome.outcome == "swapped":
            print(f"{name} swapped after {after}")
            continue
        if outcome.outcome == "stopped":
            print(f"{name} stopped; it will serve {model} when it starts")
            continue
        failures += 1
        if outcome.outcome == "failed":
            print(f"{name} could not swap: {outcome.problem}")
        elif outcome.outcome == "not polling":
            print(
                f"{name} does not look for promotions (DEFECTLENS_DEPLOYMENT_POLL_S=0): "
                f"restart it to serve {model}"
            )
        else:
            print(f"{name} has not swapped after {args.wait:g} s; its log says why")
    return EXIT_FAILURE if failures else EXIT_OK


def _keys_create(args: argparse.Namespace) -> int:
    expires_at = None
    if args.expires_in_days is not None:
        if not 0 < args.expires_in_days <= 36500:
            raise InputError(
                f"--expires-in-days {args.expires_in_days:g}: give a number of days above 0 "
                "and at most 36500, or leave it out for a key that does not expire"
            )
        expires_at = datetime.now(UTC) + timedelta(days=args.expires_in_days)
    key_id, key = _store().create_key(
        args.role,
        args.name or args.role,
        actor="cli",
        stations=args.stations,
        expires_at=expires_at,
    )
    scope = f"stations {', '.join(args.stations)}" if args.stations else "every station"
    until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    print(f"created API key {key_id} (role {args.role}, {scope}{until}); it is shown only now:")
    print(key)
    return EXIT_OK


def _keys_list(args: argparse.Namespace) -> int:
    keys = _store().list_keys()
    if not keys:
        print("no API keys; `defectlens keys create --role ROLE`")
        return EXIT_OK
    print(
        f"{'id':>4}  {'prefix':<9} {'role':<8} {'name':<24} {'created':<17} {'expires':<17} "
        f"{'last used':<17} {'revoked':<17} stations"
    )
    for key in keys:
        stations = ", ".join(key.stations) if key.stations is not None else "all"
        print(
            f"{key.id:>4}  {key.prefix:<9} {key.role:<8} {key.name:<24} "
            f"{_minute(key.created_at):<17} {_minute(key.expires_at):<17} "
            f"{_minute(key.last_used_at):<17} {_minute(key.revoked_at):<17} {stations}"
        )
    return EXIT_OK


def _minute(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else "-"


def _keys_revoke(args: argparse.Namespace) -> int:
    key = _store().revoke_key(args.key_id, actor="cli")
    print(f"API key {key.id} ({key.role}, {key.name}) revoked")
    return EXIT_OK


def _backup(args: argparse.Namespace) -> int:
    import sys

    from defectlens.inference.store.backup import backup_workspace, not_included_lines
    from defectlens.settings import Settings

    dest = Path(args.dest)
    manifest = backup_workspace(Settings(), dest)
    counts = manifest.counts
    print(
        f"backup {dest}: {counts.results} results, {counts.images} image rows "
        f"({counts.image_files} files), {counts.model_versions} model versions "
        f"({counts.model_files} files), {counts.samples} label samples "
        f"({counts.label_files} label files), {counts.dataset_versions} dataset versions "
        f"({counts.dataset_files} files)"
    )
    for line in not_included_lines(manifest, dest):
        print(line, file=sys.stderr)
    return EXIT_OK


def _restore(args: argparse.Namespace) -> int:
    import sys

    from defectlens.inference.store.backup import not_included_lines, restore_workspace
    from defectlens.settings import Settings

    settings = Settings()
    manifest = restore_workspace(settings, Path(args.source), force=args.force)
    counts = manifest.counts
    print(
        f"restored {args.source} (taken {manifest.created_at:%Y-%m-%d %H:%M} UTC) into "
        f"{settings.home}: {counts.results} results, {counts.image_files} image files, "
        f"{len(manifest.models)} model versions, {counts.label_files} label files, "
        f"{len(manifest.datasets)} dataset versions"
        + ("" if manifest.carries_labels else "; a version 1 backup: labels/, datasets/ untouched")
    )
    for line in not_included_lines(manifest, Path(args.source)):
        print(line, file=sys.stderr)
    return EXIT_OK


def _figure(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _deliveries_list(args: argparse.Namespace) -> int:
    from defectlens.inference.service.deliveries import list_deliveries

    store = _store()
    try:
        records = list_deliveries(store, args.state, args.sink, args.station, args.limit)
    finally:
        store.db.close()
    if not records:
        print(f"no {args.state} deliveries")
    for record in records:
        print(
            f"{record.id:>8}  {record.state:<9} {record.sink:<8} {record.station:<12} "
            f"{record.result_id}  tries {record.attempts}  {record.last_error or ''}".rstrip()
        )
    return EXIT_OK


def _deliveries_retry(args: argparse.Namespace) -> int:
    from defectlens.inference.service.deliveries import retry_delivery

    store = _store()
    try:
        record = retry_delivery(store, args.delivery_id)
    finally:
        store.db.close()
    print(f"delivery {record.id} (result {record.result_id} to {record.sink}) will be sent again")
    return EXIT_OK
