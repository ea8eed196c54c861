"""Structured logs: one JSON line per record whatever a client put in the fields, the request
id on each line, and a logging setup that never writes a line twice."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from defectlens.logs import (
    MAX_FIELD_CHARS,
    MAX_MESSAGE_CHARS,
    JsonFormatter,
    TextFormatter,
    background_handler,
    configure_logging,
    current_request_id,
    flush_logs,
    reset_request_id,
    set_request_id,
    submit_with_context,
    uvicorn_log_config,
)


def record(
    message: str = "inspected %s",
    args: tuple[Any, ...] = ("part",),
    extra: dict[str, Any] | None = None,
    exc_info: Any = None,
) -> logging.LogRecord:
    """A record as `logger.info(message, *args, extra=extra)` makes it."""
    logger = logging.getLogger("defectlens.test")
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, message, args, exc_info, extra=extra
    )


def json_line(rec: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(rec)
    assert len(line.splitlines()) == 1, line  # splitlines also splits on \x85 and U+2028
    assert line.isascii()
    parsed: dict[str, Any] = json.loads(line)
    return parsed


class Unserialisable:
    def __repr__(self) -> str:
        return "<Unserialisable\nwith a newline>"


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


HOSTILE = [
    ("newline", 'A1\n{"level": "ERROR", "message": "forged"}'),
    ("carriage return", "A1\r\nforged"),
    ("quotes", 'A1", "level": "ERROR'),
    ("NUL and escape", "A1\x00\x1b[31mred"),
    ("unicode line breaks", "A1\u2028forged\x85forged\u2029"),
    ("backslashes", "A1\\n\\"),
    ("non-ASCII", "Teil-Nr. äöü 部品"),
]


@pytest.mark.parametrize(("label", "serial"), HOSTILE, ids=[label for label, _ in HOSTILE])
def test_a_hostile_field_stays_one_line_and_reads_back_as_sent(label: str, serial: str) -> None:
    entry = json_line(record(extra={"station": "line1-cam1", "serial": serial}))
    assert entry["serial"] == serial
    assert entry["station"] == "line1-cam1"


@pytest.mark.parametrize(("label", "serial"), HOSTILE, ids=[label for label, _ in HOSTILE])
def test_a_hostile_message_argument_stays_one_line(label: str, serial: str) -> None:
    entry = json_line(record("part %s inspected", (serial,)))
    assert entry["message"] == f"part {serial} inspected"
    assert entry["level"] == "INFO"


FIELD_VALUES: list[tuple[str, Any, Any]] = [
    ("int", 7, 7),
    ("float", 0.25, 0.25),
    ("bool", True, True),
    ("None", None, None),
    ("list", [1, "two"], [1, "two"]),
    ("tuple", (1, 2), [1, 2]),
    ("dict", {"model_ms": 3.5}, {"model_ms": 3.5}),
    ("datetime", datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "2024-05-01T12:00:00+00:00"),
    ("NaN", float("nan"), "nan"),
    ("infinity", float("inf"), "inf"),
    ("object", Unserialisable(), "<Unserialisable\nwith a newline>"),
    ("list of objects", [Unserialisable()], "[<Unserialisable\nwith a newline>]"),
    ("set", {1, 2}, "{1, 2}"),
    ("broken repr", BrokenRepr(), "<BrokenRepr without a usable repr>"),
    ("huge int", 10**5000, "<int of 16610 bits>"),
]


@pytest.mark.parametrize(
    ("label", "value", "expected"), FIELD_VALUES, ids=[r[0] for r in FIELD_VALUES]
)
def test_field_values(label: str, value: Any, expected: Any) -> None:
    assert json_line(record(extra={"value": value}))["value"] == expected


def test_long_values_are_cut_saying_by_how_much() -> None:
    long = "x" * 100_000
    entry = json_line(record(extra={"serial": long, "blob": [long], "thing": Unserialisable()}))
    cut = f"{'x' * MAX_FIELD_CHARS}...[{100_000 - MAX_FIELD_CHARS} more characters]"
    assert entry["serial"] == cut
    assert len(entry["blob"]) < MAX_FIELD_CHARS + 50  # its repr, cut
    assert entry["blob"].startswith("['xxx")
    assert len(json.dumps(entry)) < 4 * MAX_FIELD_CHARS
    message = json_line(record("part %s", (long,)))["message"]
    assert message.endswith(f"...[{100_005 - MAX_MESSAGE_CHARS} more characters]")


def test_a_line_has_time_level_logger_message_and_every_extra_field() -> None:
    rec = record(extra={"station": "line1-cam1", "serial": "SN-1", "result_id": 42})
    rec.created = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC).timestamp()
    assert json_line(rec) == {
        "time": "2024-05-01T12:00:00.123Z",
        "level": "INFO",
        "logger": "defectlens.test",
        "message": "inspected part",
        "station": "line1-cam1",
        "serial": "SN-1",
        "result_id": 42,
    }


def test_extra_fields_never_overwrite_the_line_s_own() -> None:
    entry = json_line(record(extra={"level": "DEBUG", "time": "forged", "exception": "x"}))
    assert entry["level"] == "INFO"
    assert entry["time"] != "forged"
    assert entry["extra_level"] == "DEBUG"
    assert entry["extra_time"] == "forged"
    assert entry["extra_exception"] == "x"


def test_uvicorn_s_coloured_copy_of_the_message_is_left_out() -> None:
    entry = json_line(record(extra={"color_message": "\x1b[32mstarted\x1b[0m"}))
    assert "color_message" not in entry


def test_the_exception_text_is_in_the_same_line() -> None:
    try:
        raise ValueError("bad serial\nsecond line")
    except ValueError:
        entry = json_line(record("failed", (), exc_info=sys.exc_info()))
    assert entry["exception"].startswith("Traceback (most recent call last)")
    assert "ValueError: bad serial\nsecond line" in entry["exception"]


@pytest.mark.parametrize("request_id", [None, "abc-123"])
def test_the_request_id_is_written_when_one_is_current(request_id: str | None) -> None:
    token = set_request_id(request_id)
    try:
        entry = json_line(record())
    finally:
        reset_request_id(token)
    assert entry.get("request_id") == request_id
    assert current_request_id() is None


def test_work_submitted_with_context_logs_the_submitter_s_request_id() -> None:
    token = set_request_id("part-7")
    try:
        with ThreadPoolExecutor(1) as threads:
            future = submit_with_context(
                threads, lambda serial: json_line(record(extra={"serial": serial})), serial="A1"
            )
            entry = future.result()
    finally:
        reset_request_id(token)
    assert (entry["request_id"], entry["serial"]) == ("part-7", "A1")


def test_an_explicit_request_id_is_written_escaped() -> None:
    entry = json_line(record(extra={"request_id": "job\n7"}))
    assert entry["request_id"] == "job\n7"


def test_text_lines_show_control_characters_escaped() -> None:
    token = set_request_id("abc-123")
    try:
        line = TextFormatter().format(
            record("part %s", ("A\nB\x00",), extra={"serial": "S\r\n1\u2028", "result_id": 3})
        )
    finally:
        reset_request_id(token)
    assert "\n" not in line and "\r" not in line and "\x00" not in line
    assert len(line.splitlines()) == 1
    assert line.endswith(r"[abc-123] part A\nB\x00 serial='S\r\n1\u2028' result_id=3")


def test_text_lines_without_a_request_id_or_fields() -> None:
    line = TextFormatter().format(record("ready", ()))
    assert line.endswith(" INFO    defectlens.test ready")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging replaces the root logger's handlers (pytest's capture among them):
    put back what was there."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    uvicorn = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    yield
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, (saved, propagate) in uvicorn.items():
        logging.getLogger(name).handlers[:] = saved
        logging.getLogger(name).propagate = propagate


def test_configure_logging_twice_writes_each_line_once(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logging.basicConfig(force=True)  # what `defectlens` itself sets up before a command runs
    configure_logging("text", "DEBUG")
    configure_logging("json", "INFO")
    logging.getLogger("defectlens.test").info("once", extra={"station": "line1-cam1"})
    logging.getLogger("defectlens.test").debug("below the level")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)
    flush_logs()
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == [
        "once",
        "Started server process [1]",
    ]
    assert json.loads(lines[0])["station"] == "line1-cam1"
    assert len(logging.getLogger().handlers) == 1


def test_loggers_made_before_the_setup_keep_logging(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_earlier = logging.getLogger("defectlens.test.earlier")
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("json")
    made_earlier.warning("still here")
    flush_logs()
    assert json.loads(stream.getvalue())["message"] == "still here"


def test_lines_written_by_the_background_thread_keep_their_request_id(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("json")
    token = set_request_id("req-1")
    try:
        logging.getLogger("defectlens.test").warning("inside")
    finally:
        reset_request_id(token)
    logging.getLogger("defectlens.test").warning("outside")
    flush_logs()
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["request_id"] == "req-1"
    assert "request_id" not in outside


def test_the_uvicorn_config_uses_the_same_formatter() -> None:
    config = uvicorn_log_config("text", "warning")
    assert config["handlers"]["defectlens"] == {"()": background_handler, "format": "text"}
    assert config["root"] == {"handlers": ["defectlens"], "level": "WARNING"}
    assert config["disable_existing_loggers"] is False
    assert all(logger["propagate"] for logger in config["loggers"].values())
