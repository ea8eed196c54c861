"""The QA loop's commands: `defectlens jobs list|start|cancel|logs`, `defectlens shadow
start|stop|show` and `defectlens compare CANDIDATE --station S`.

Each opens the store from the settings (`DEFECTLENS_HOME`, `DEFECTLENS_DATABASE_URL`) and
calls one service function; a running service picks up what they change at its next poll.
`defectlens worker` (it needs the training side) is in `defectlens/cli.py`.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import Any

from defectlens.errors import InputError

EXIT_OK, EXIT_FAILURE = 0, 1
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTOR = "cli"


def add_qa_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `jobs`, `shadow` and `compare` to the `defectlens` command."""
    jobs = commands.add_parser(
        "jobs",
        help="training jobs run by a worker: list, start, cancel, logs",
        description="A job trains a model version from a recipe and a dataset version in a "
        "worker process (`defectlens worker`; on SQLite `defectlens serve` runs one itself). "
        "The version is imported and registered, never promoted.",
    )
    actions = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="jobs newest first, with their stage or outcome")
    listing.add_argument("--status", choices=JOB_STATUSES)
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=_jobs_list)
    start = actions.add_parser("start", help="queue a retrain; prints the job id last")
    start.add_argument("recipe", metavar="RECIPE", help="a shipped recipe's name or a YAML file")
    start.add_argument(
        "--data", required=True, help="a dataset version id or a folder inside the workspace"
    )
    start.add_argument("--station", help="the station the model is for")
    start.add_argument("--name", help="the model's name (default: the recipe's)")
    start.add_argument(
        "--wait",
        action="store_true",
        help="follow the job until it ends; status 1 unless it succeeded",
    )
    start.set_defaults(handler=_jobs_start)
    cancel = actions.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id", metavar="ID", type=int)
    cancel.set_defaults(handler=_jobs_cancel)
    logs = actions.add_parser("logs", help="the last lines of a job's log")
    logs.add_argument("job_id", metavar="ID", type=int)
    logs.add_argument("--lines", type=int, default=200)
    logs.set_defaults(handler=_jobs_logs)

    shadow = commands.add_parser(
        "shadow",
        help="run a candidate model beside a station's model on live parts: start, stop, show",
        description="The candidate runs after each part is answered, on a low-priority thread "
        "of the running service; verdicts and the line's latency are untouched. A running "
        "service starts or stops within DEFECTLENS_DEPLOYMENT_POLL_S seconds.",
    )
    shadow_actions = shadow.add_subparsers(dest="shadow_command", metavar="ACTION", required=True)
    begin = shadow_actions.add_parser("start", help="start a shadow run; prints its id last")
    begin.add_argument("--station", required=True)
    begin.add_argument(
        "--model-version", type=int, required=True, help="the candidate's id (`models list`)"
    )
    begin.add_argument("--sample", type=float, default=1.0, help="share of parts (default: all)")
    begin.add_argument("--hours", type=float, default=8.0, help="how long (default: 8)")
    begin.set_defaults(handler=_shadow_start)
    end = shadow_actions.add_parser("stop", help="stop a shadow run")
    end.add_argument("run_id", metavar="ID", type=int)
    end.set_defaults(handler=_shadow_stop)
    show = shadow_actions.add_parser(
        "show", help="a run's agreement and its disagreements; without ID, the runs"
    )
    show.add_argument("run_id", metavar="ID", type=int, nargs="?")
    show.set_defaults(handler=_shadow_show)

    compare = commands.add_parser(
        "compare",
        help="a candidate against a station's production model on the same held-out parts",
        description="Runs both models (ONNX Runtime) on the station's labelled parts, or on a "
        "dataset version's test split with --data, and prints AUROC, escape and false-reject "
        "rates and F1 at each model's own threshold, and the parts whose verdict changed.",
    )
    compare.add_argument(
        "candidate", metavar="CANDIDATE", help="a model version id, or a version folder"
    )
    compare.add_argument("--station", required=True)
    compare.add_argument("--data", help="a dataset version id or folder (default: the labels)")
    compare.add_argument("--roc", type=Path, metavar="FILE", help="also write the ROC curves (SVG)")
    compare.set_defaults(handler=_compare)


def _open() -> tuple[Any, Any]:
    from defectlens.inference.service import ServiceSettings
    from defectlens.inference.store import Store, open_database

    settings = ServiceSettings()
    database = open_database(settings.resolved_database_url, timeout_s=settings.database_timeout_s)
    return Store(database, instance=settings.instance_id), settings


def _job_line(job: Any) -> str:
    if job.status == "running":
        where = f"{job.stage or 'starting'} {job.percent or 0:.0f}%"
    elif job.status == "succeeded":
        where = f"model version {job.model_version_id}"
    else:
        where = (job.error or "").splitlines()[0][:80] if job.error else ""
    return (
        f"{job.id:>5}  {job.status:<10} {job.created_at:%Y-%m-%d %H:%M}  "
        f"{job.recipe_source:<16} {job.data:<24} {where}"
    ).rstrip()


def _jobs_list(args: argparse.Namespace) -> int:
    store, _ = _open()
    found = store.list_jobs(args.status, args.limit)
    if not found:
        print("no training jobs; `defectlens jobs start RECIPE --data DATA`")
    for job in found:
        print(_job_line(job))
    return EXIT_OK


def _jobs_start(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from defectlens.inference.service.jobs import (
        JobRequest,
        LocalWorker,
        start_job,
        uses_local_worker,
    )

    store, settings = _open()
    try:
        request = JobRequest(
            recipe=args.recipe, data=args.data, station=args.station, name=args.name
        )
    except ValidationError as error:
        problems = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in error.errors())
        raise InputError(problems) from None
    job = start_job(store, settings, request, ACTOR)
    if job.status == "failed":
        print(f"job {job.id} failed: {job.error}")
        return EXIT_FAILURE
    runner = (
        "the running `defectlens serve` starts a local worker for it, or run `defectlens worker`"
        if uses_local_worker(settings)
        else "a `defectlens worker` on any machine of the database runs it"
    )
    if not args.wait:
        print(f"queued training job {job.id}: {runner}")
        print(job.id)
        return EXIT_OK
    print(f"queued training job {job.id}", flush=True)
    # On SQLite, a worker of this command's own runs it (beside a service's, if one runs).
    worker = LocalWorker(settings) if uses_local_worker(settings) else None
    try:
        if worker is not None:
            worker.ensure_running()
        return _follow(store, job.id)
    finally:
        if worker is not None:
            worker.stop()


def _follow(store: Any, job_id: int) -> int:
    shown = None
    while True:
        job = store.get_job(job_id)
        line = _job_line(job)
        if line != shown:
            print(line, flush=True)
            shown = line
        if job.status in ("succeeded", "failed", "cancelled"):
            if job.error:
                print(job.error)
            return EXIT_OK if job.status == "succeeded" else EXIT_FAILURE
        time.sleep(1.0)


def _jobs_cancel(args: argparse.Namespace) -> int:
    from defectlens.inference.service.jobs import cancel_job

    store, _ = _open()
    job = cancel_job(store, args.job_id, ACTOR)
    state = "cancelled" if job.status == "cancelled" else "asked to stop (its worker stops it)"
    print(f"training job {job.id} {state}")
    return EXIT_OK


def _jobs_logs(args: argparse.Namespace) -> int:
    from defectlens.inference.service.jobs import job_log

    store, _ = _open()
    for line in job_log(store, args.job_id, args.lines):
        print(line)
    return EXIT_OK


def _shadow_start(args: argparse.Namespace) -> int:
    from defectlens.inference.service.shadow import begin_shadow

    store, _ = _open()
    run, _engine = begin_shadow(
        store, args.station, args.model_version, args.sample, args.hours, ACTOR
    )
    print(
        f"shadow run {run.id}: model version {run.model_version_id} beside station "
        f"{run.station}, {run.sample_fraction:.0%} of parts, until {run.until:%Y-%m-%d %H:%M} UTC"
    )
    print(run.id)
    return EXIT_OK


def _shadow_stop(args: argparse.Namespace) -> int:
    store, _ = _open()
    run = store.stop_shadow_run(args.run_id, ACTOR)
    print(f"shadow run {run.id} on station {run.station} stopped")
    return EXIT_OK


def _shadow_show(args: argparse.Namespace) -> int:
    store, _ = _open()
    if args.run_id is None:
        for run in store.list_shadow_runs():
            state = "on" if run.active else "ended"
            print(
                f"{run.id:>5}  {run.station:<16} model version {run.model_version_id:<5} "
                f"{state:<6} seen {run.seen:<7} skipped {run.skipped}"
            )
        return EXIT_OK
    figures = store.shadow_figures(args.run_id)
    run = figures.run
    rate = figures.agreement_rate
    print(f"shadow run {run.id}: model version {run.model_version_id} beside station {run.station}")
    print(f"  parts seen        {run.seen}")
    print(f"  shadowed          {figures.shadowed}")
    print(f"  skipped (busy)    {run.skipped}")
    print(f"  agreement         {'-' if rate is None else f'{rate:.1%}'}")
    print(f"  candidate NG, line OK   {figures.candidate_ng_production_ok}")
    print(f"  candidate OK, line NG   {figures.candidate_ok_production_ng}")
    for d in figures.disagreements:
        print(
            f"  {d.result_id}  line {d.production_verdict} {d.production_score:.3f}  "
            f"candidate {d.candidate_verdict} {d.candidate_score:.3f}  {d.serial or ''}".rstrip()
        )
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from defectlens.inference.service.compare import compare_now, roc_svg
    from defectlens.inference.service.deployments import import_model_dir, register_model_dir

    store, settings = _open()
    if args.candidate.isdigit():
        candidate_id = int(args.candidate)
    else:
        folder = Path(args.candidate)
        if not folder.is_dir():
            raise InputError(f"CANDIDATE {args.candidate}: neither a model version id nor a folder")
        candidate_id = register_model_dir(store, import_model_dir(settings.models_dir, folder)).id
    comparison = compare_now(
        store,
        settings,
        args.station,
        candidate_id,
        "dataset" if args.data else "labels",
        args.data,
        ACTOR,
        say=partial(print, flush=True),
    )
    if comparison.status != "succeeded":
        print(f"comparison {comparison.id} failed: {comparison.error}")
        return EXIT_FAILURE
    for line in comparison_table(comparison.figures):
        print(line)
    if args.roc is not None:
        args.roc.write_text(roc_svg(comparison.figures), encoding="utf-8")
        print(f"ROC curves: {args.roc}")
    return EXIT_OK


def comparison_table(figures: dict[str, Any]) -> list[str]:
    """The figures side by side, as the CLI prints them."""
    models = figures.get("models", {})
    production, candidate = figures["production"], figures["candidate"]

    def name(key: str) -> str:
        model = models.get(key, {})
        return f"{model.get('name', key)} {model.get('version', '')}".strip()

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    rows = [
        ("AUROC", num(production["auroc"]), num(candidate["auroc"])),
        ("escape rate", pct(production["escape_rate"]), pct(candidate["escape_rate"])),
        (
            "false-reject rate",
            pct(production["false_reject_rate"]),
            pct(candidate["false_reject_rate"]),
        ),
        ("F1", num(production["f1"]), num(candidate["f1"])),
        ("threshold", num(production["threshold"]), num(candidate["threshold"])),
    ]
    lines = [
        f"on {figures['parts']} held-out parts ({figures['good']} good, "
        f"{figures['defective']} defective)",
        f"  {'':<18} {'production':>14} {'candidate':>14}",
    ]
    lines += [f"  {label:<18} {p:>14} {c:>14}" for label, p, c in rows]
    lines.append(f"  production: {name('production')}; candidate: {name('candidate')}")
    lines.append(f"  parts whose verdict changed: {figures['changed_count']}")
    for change in figures["changed"][:20]:
        right = "candidate right" if change["candidate_right"] else "production right"
        lines.append(
            f"    {change['part']}  label {change['label']}  production "
            f"{change['production']['verdict']}  candidate {change['candidate']['verdict']}  "
            f"({right})"
        )
    return lines
