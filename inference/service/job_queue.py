"""The job queue that carries training jobs to workers: Celery over kombu's SQLAlchemy
transport, so SQLite and PostgreSQL take one code path.

With PostgreSQL the queue's two tables live in the workspace's database, and a worker on
any machine that reaches it takes jobs (`defectlens worker`). With SQLite they live in a
file of their own, `<home>/jobs/queue.sqlite`: the transport takes SQLite's write lock on
every poll, which must never be the results database's. The queue carries only a job's id;
the job itself (recipe, data, progress, outcome) is a row of the store.
"""

from __future__ import annotations

import functools
from pathlib import Path

from celery import Celery
from sqlalchemy.engine import make_url

from defectlens.settings import Settings

TRAINING_QUEUE = "training"
TRAIN_TASK = "defectlens.train_job"
QUEUE_TABLES = {"queue_tablename": "job_queues", "message_tablename": "job_queue_messages"}


def jobs_dir(settings: Settings) -> Path:
    """`<home>/jobs`: each job's folder (log, recipe) and, on SQLite, the queue."""
    return settings.home / "jobs"


def broker_url(settings: Settings) -> str:
    """The queue's SQLAlchemy URL for kombu: the database on PostgreSQL, a file beside the
    jobs on SQLite."""
    database = make_url(settings.resolved_database_url)
    if database.get_backend_name() == "sqlite":
        return f"sqla+sqlite:///{(jobs_dir(settings) / 'queue.sqlite').resolve()}"
    return "sqla+" + database.render_as_string(hide_password=False)


def job_queue(settings: Settings) -> Celery:
    """The Celery app of the workspace's queue (one per broker URL in a process)."""
    url = broker_url(settings)
    if url.startswith("sqla+sqlite:"):
        jobs_dir(settings).mkdir(parents=True, exist_ok=True)
    return _app(url)


@functools.cache
def _app(url: str) -> Celery:
    app = Celery("defectlens", broker=url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,  # outcomes live in the store, not in a result backend
        task_acks_late=True,
        worker_prefetch_multiplier=1,  # a worker takes one job at a time
        task_default_queue=TRAINING_QUEUE,
        broker_transport_options=dict(QUEUE_TABLES),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app


def enqueue_training(settings: Settings, job_id: int) -> None:
    """Hand a stored, queued job to the workers."""
    job_queue(settings).send_task(TRAIN_TASK, args=[job_id], queue=TRAINING_QUEUE)
