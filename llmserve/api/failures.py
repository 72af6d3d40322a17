"""The one exception handler: every error leaves as an OpenAI error envelope.

LLMServeError knows its own status and envelope. Litestar's own exceptions (unknown route, wrong
method, body too large) are translated here, and anything else is a 500 with a generic message:
the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from attrs import field, frozen
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
)
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE

from llmserve.errors import LLMServeError, TooManyRequests

log = logging.getLogger("llmserve.http")  # the logger name is part of the log format

INTERNAL_ERROR_MESSAGE = (
    "The server had an error while processing your request. Sorry about that! "
    "The server log has the details."
)


@frozen
class ErrorReply:
    """The HTTP form of an error: status, OpenAI envelope, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(factory=dict)


def _envelope(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def internal_error_envelope() -> dict[str, Any]:
    """The envelope of an unexpected failure; the details go to the log only."""
    return _envelope(INTERNAL_ERROR_MESSAGE, "server_error", "internal_error")


def error_reply(exc: BaseException, *, method: str, path: str) -> ErrorReply:
    """How ``exc``, raised while serving ``method path``, is answered."""
    if isinstance(exc, LLMServeError):
        headers = {}
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after_s)
        return ErrorReply(exc.status, exc.envelope(), headers)
    if isinstance(exc, NotFoundException):
        return ErrorReply(
            404, _envelope(f"Invalid URL ({method} {path})", "invalid_request_error", "not_found")
        )
    if isinstance(exc, MethodNotAllowedException):
        return ErrorReply(
            405,
            _envelope(
                f"Method {method} is not allowed for {path}.",
                "invalid_request_error",
                "method_not_allowed",
            ),
            dict(exc.headers or {}),
        )
    if isinstance(exc, HTTPException) and exc.status_code == HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        return ErrorReply(
            413,
            _envelope(
                "The request body is too large for this server.",
                "invalid_request_error",
                "request_too_large",
            ),
        )
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        return ErrorReply(
            exc.status_code,
            _envelope(exc.detail, "invalid_request_error", None),
            dict(exc.headers or {}),
        )
    return ErrorReply(500, internal_error_envelope())


def log_failure(request: Request[Any, Any, Any], exc: Exception, status: int) -> None:
    """Log a failed request: a traceback for the unexpected, a line for a server error."""
    if not isinstance(exc, LLMServeError | HTTPException):
        log.error(
            "unhandled error serving %s %s",
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"status": status},
        )
    elif status >= 500:
        log.warning(
            "%s %s failed: %s",
            request.method,
            request.url.path,
            exc,
            extra={"status": status},
        )


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Litestar exception handler for ``Exception``: the OpenAI envelope for everything."""
    reply = error_reply(exc, method=request.method, path=request.url.path)
    log_failure(request, exc, reply.status)
    return Response(content=reply.body, status_code=reply.status, headers=reply.headers)
