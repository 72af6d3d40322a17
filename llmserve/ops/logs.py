"""Structured logs: one JSON object per line on stderr, in the seed README's shape.

::

    {"timestamp": "2024-01-15T10:30:00.000Z", "level": "INFO", "message": "request done",
     "logger": "llmserve.http", "request_id": "req_123", "duration_ms": 45, "tokens": 150}

Extras passed with ``logger.info(..., extra={...})`` become top-level keys. The request id comes
from ``request_id_var``, which the HTTP layer sets per request; asyncio copies context into the
tasks a request starts, so engine logs carry it too. Never log API keys or prompts: the keys in
REDACTED_KEYS are replaced even when someone passes them by mistake.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

REDACTED_KEYS = frozenset(
    {"api_key", "api_keys", "authorization", "x-api-key", "x_api_key", "prompt", "messages"}
)
HANDLER_NAME = "llmserve-json"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

# Attributes every LogRecord has; whatever else a record carries came in through ``extra``.
# uvicorn adds color_message, a duplicate of the message for its own coloured formatter.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES:
                entry[key] = "[redacted]" if key.lower() in REDACTED_KEYS else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, *, access_log: bool = False) -> None:
    """Send every log record, uvicorn's included, to stderr as JSON at ``level`` and above.

    Idempotent: calling it again replaces the handler it installed and leaves others alone.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.name = HANDLER_NAME
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_number(level))
    for name in UVICORN_LOGGERS:
        # uvicorn's own handlers would print plain text next to ours; propagate to root instead.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)
    if not access_log:
        # One line per request drowns the useful lines; the HTTP layer logs requests itself.
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def level_number(level: str) -> int:
    """The logging level of a settings level name (case-insensitive; "warn" is "warning")."""
    name = level.strip().upper()
    number = logging.getLevelNamesMapping().get("WARNING" if name == "WARN" else name)
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
