"""Structured logs: one JSON object a line (or escaped text for a terminal), each carrying the
id of the HTTP request it was written for.

The request id is a context variable: tasks and `asyncio.to_thread` / `anyio.to_thread`
workers see it, a plain `ThreadPoolExecutor.submit` does not (use `submit_with_context`).
Values sent by clients (a part's serial, a station id) are always escaped, so a newline or
quote in them can never start a second, forged line.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.config
import logging.handlers
import math
import queue
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextvars import ContextVar, Token, copy_context
from datetime import UTC, date, datetime
from typing import Any, Literal, ParamSpec, TypeVar

LogFormat = Literal["json", "text"]
P = ParamSpec("P")
T = TypeVar("T")

MAX_FIELD_CHARS = 1000
"""Longest string written for one structured field (longer ones are cut, saying how much)."""
MAX_MESSAGE_CHARS = 10_000
"""Longest message written; a message can quote a client's value at any length."""

_REQUEST_ID: ContextVar[str | None] = ContextVar("defectlens_request_id", default=None)

# Everything a LogRecord carries by itself; any other attribute came through `extra=`.
# `color_message` is uvicorn's copy of its message with terminal colour codes.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
    "request_id",
}
_CORE_KEYS = ("time", "level", "logger", "message", "request_id", "exception", "stack")


def current_request_id() -> str | None:
    """The id of the request being served in this context (None outside a request)."""
    return _REQUEST_ID.get()


def set_request_id(request_id: str | None) -> Token[str | None]:
    """Make `request_id` the current one; give the token to `reset_request_id` afterwards."""
    return _REQUEST_ID.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    """Restore the request id that was current before `set_request_id` returned `token`."""
    _REQUEST_ID.reset(token)


def submit_with_context(
    executor: Executor, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> Future[T]:
    """`executor.submit(fn, *args, **kwargs)` run in a copy of the caller's context variables,
    so the request id stays current, and on every line logged, on the pool's thread."""
    context = copy_context()

    def in_context() -> T:
        return context.run(fn, *args, **kwargs)

    return executor.submit(in_context)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ms), level, logger, message, request_id when set,
    every field passed with `extra=`, and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": _bounded(record.getMessage(), MAX_MESSAGE_CHARS),
        }
        request_id = _request_id(record)
        if request_id is not None:
            entry["request_id"] = _field(request_id)
        for key, value in _extra_fields(record):
            entry[f"extra_{key}" if key in _CORE_KEYS else key] = _field(value)
        exception = self._exception_text(record)
        if exception:
            entry["exception"] = exception
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii: besides quotes and control characters, the Unicode line breaks
        # (U+0085, U+2028, U+2029) are escaped too, which some log readers split lines on.
        return json.dumps(entry, ensure_ascii=True, allow_nan=False)

    def _exception_text(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return record.exc_text or ""


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id] message key='value' ...` for a person at a terminal;
    control characters in the message and fields are shown escaped, as `repr` does."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_utc_time(record), f"{record.levelname:<7}", record.name]
        request_id = _request_id(record)
        if request_id is not None:
            parts.append(f"[{_escaped(request_id)}]")
        parts.append(_escaped(_bounded(record.getMessage(), MAX_MESSAGE_CHARS)))
        parts.extend(f"{key}={_field(value)!r}" for key, value in _extra_fields(record))
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def uvicorn_log_config(format: LogFormat = "json", level: str = "INFO") -> dict[str, Any]:
    """The whole process's logging as a `logging.config.dictConfig` dict: one handler on the
    root logger (`background_handler`, writing to stderr in the chosen format), and uvicorn's
    loggers passing their lines to it. `configure_logging` applies it; give it to uvicorn as
    `log_config` too, since uvicorn applies its own logging config when it starts."""
    return {
        "version": 1,
        # Loggers created at import (every module's `log`) must keep logging.
        "disable_existing_loggers": False,
        "handlers": {"defectlens": {"()": background_handler, "format": format}},
        "root": {"handlers": ["defectlens"], "level": level.upper()},
        "loggers": {
            name: {"handlers": [], "level": "INFO", "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


class _Background(logging.handlers.QueueHandler):
    """Hands each record to `background_handler`'s thread, with the request id it was logged
    under (the thread that formats it has no request)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.request_id = _request_id(record)
        return super().prepare(record)


_listener: logging.handlers.QueueListener | None = None


def background_handler(format: LogFormat = "json") -> logging.Handler:
    """A handler whose records are formatted and written to stderr by a thread of their own,
    so a request never waits for its log line's JSON or the write; lines keep their order.
    The thread of an earlier call is stopped (its lines written first), and the last one at
    exit."""
    global _listener
    if _listener is None:
        atexit.register(flush_logs)
    else:
        _listener.stop()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, stream, respect_handler_level=False)
    _listener.start()
    return _Background(records)


def flush_logs() -> None:
    """Wait until every line logged so far is written."""
    if _listener is not None and _listener._thread is not None:
        _listener.stop()  # writes what is queued, then ends the thread
        _listener.start()


def configure_logging(format: LogFormat = "json", level: str = "INFO") -> None:
    """Send every log line to stderr in `format`, from `level` up. The root logger's handlers
    are replaced (also one a `logging.basicConfig` added), so calling this again changes the
    format or level without writing any line twice."""
    logging.config.dictConfig(uvicorn_log_config(format, level))


def _utc_time(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _request_id(record: logging.LogRecord) -> Any:
    """An id passed as `extra={"request_id": ...}`, else the current request's."""
    explicit = record.__dict__.get("request_id")
    return explicit if explicit is not None else current_request_id()


def _extra_fields(record: logging.LogRecord) -> list[tuple[str, Any]]:
    return [
        (key, value)
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    ]


def _field(value: Any) -> Any:
    """`value` as something `json.dumps` writes as it is, of bounded length: JSON's own types
    pass (strings cut), dates become ISO 8601, anything else its (cut) repr."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _bounded(value, MAX_FIELD_CHARS)
    if isinstance(value, int):
        # json.dumps refuses integers of more than about 4300 digits, repr too.
        return value if value.bit_length() <= 256 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, list | tuple | dict):
        try:
            text = json.dumps(value, ensure_ascii=True, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            if len(text) <= MAX_FIELD_CHARS:
                return json.loads(text)
    return _bounded(_repr(value), MAX_FIELD_CHARS)


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not lose the log line
        return f"<{type(value).__name__} without a usable repr>"


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters]"


def _escaped(text: str) -> str:
    """Control characters (and other unprintable ones) as `repr` writes them: \\n, \\x00."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
