"""JSON log lines: shape, request id, extras, redaction, levels, uvicorn routing."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from llmserve.ops.logs import (
    HANDLER_NAME,
    JsonFormatter,
    configure_logging,
    level_number,
    request_id_var,
)

LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(name="restore_logging", autouse=True)
def fixture_restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide loggers; put them back after each test."""
    saved = {
        name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers))
        for name in LOGGERS
    }
    propagate = {name: logging.getLogger(name).propagate for name in LOGGERS}
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate[name]


def format_record(message: str = "hello", **extra: Any) -> dict[str, Any]:
    record = logging.LogRecord("llmserve.test", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_line_has_the_seed_shape() -> None:
    """timestamp, level, message and logger are always there."""
    entry = format_record("Request processed successfully")
    assert entry["level"] == "INFO"
    assert entry["message"] == "Request processed successfully"
    assert entry["logger"] == "llmserve.test"
    assert set(entry) == {"timestamp", "level", "message", "logger"}


def test_timestamp_is_iso8601_utc_with_z() -> None:
    """Timestamps are UTC, ISO-8601, ending in Z."""
    timestamp = format_record()["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", timestamp)


def test_extras_become_top_level_keys() -> None:
    """extra={"duration_ms": ..., "tokens": ...} shows up as keys of the object."""
    entry = format_record(duration_ms=45, tokens=150)
    assert (entry["duration_ms"], entry["tokens"]) == (45, 150)


def test_request_id_comes_from_contextvar() -> None:
    """Inside a request the id set in request_id_var is on every line."""
    token = request_id_var.set("req_123")
    try:
        assert format_record()["request_id"] == "req_123"
    finally:
        request_id_var.reset(token)


def test_no_request_id_outside_requests() -> None:
    """Without a request the key is absent, not null."""
    assert "request_id" not in format_record()


def test_secret_extras_are_redacted() -> None:
    """An API key or prompt passed as an extra by mistake is not written."""
    entry = format_record(api_key="sk-secret", prompt="my secret question")
    assert entry["api_key"] == entry["prompt"] == "[redacted]"


def test_exception_stays_on_one_line() -> None:
    """A traceback is a JSON string field, not extra lines."""
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, exc_info=sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exception"]


def test_unserialisable_extra_is_stringified() -> None:
    """An extra JSON cannot encode is written with str(), not dropped with an error."""
    assert format_record(path=object())["path"].startswith("<object object")


def test_configure_logging_writes_json_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """After configure_logging, a log call is one JSON line on stderr."""
    configure_logging("info")
    logging.getLogger("llmserve.test").info("ready", extra={"tokens": 3})
    (entry,) = lines(capsys)
    assert (entry["message"], entry["tokens"]) == ("ready", 3)


def test_level_filters_lower_records(capsys: pytest.CaptureFixture[str]) -> None:
    """At warning, info lines are dropped and warnings kept."""
    configure_logging("warning")
    logger = logging.getLogger("llmserve.test")
    logger.info("dropped")
    logger.warning("kept")
    assert [entry["message"] for entry in lines(capsys)] == ["kept"]


def test_configure_logging_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """Configuring again replaces our handler instead of doubling every line."""
    configure_logging("info")
    configure_logging("debug")
    assert [h.name for h in logging.getLogger().handlers].count(HANDLER_NAME) == 1


def test_uvicorn_logs_go_through_json(capsys: pytest.CaptureFixture[str]) -> None:
    """uvicorn's error logger is routed to the JSON handler."""
    configure_logging("info")
    logging.getLogger("uvicorn.error").info("Started server process")
    (entry,) = lines(capsys)
    assert entry["logger"] == "uvicorn.error"


def test_uvicorn_access_log_is_off_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Per-request access lines are not written unless asked for."""
    configure_logging("info")
    logging.getLogger("uvicorn.access").info("GET / 200")
    assert capsys.readouterr().err == ""


def test_level_number_accepts_any_case() -> None:
    """Settings level names map to logging levels, case-insensitively."""
    assert level_number("Debug") == logging.DEBUG
    assert level_number("warn") == logging.WARNING
