"""Errors in Anthropic's envelope: ``{"type": "error", "error": {"type", "message"}}``.

The one place that maps llmserve's error tree (``errors.py``) to Anthropic's error types. The
status and message come from the same ``error_reply`` the OpenAI routes use, so both dialects
answer a failure with the same status, except an engine overload: 529 ``overloaded_error``,
which Anthropic clients retry (with ``retry-after``), where OpenAI clients get 429.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from llmserve.api.failures import ErrorReply, error_reply, internal_error_envelope, log_failure
from llmserve.errors import EngineOverloaded, LLMServeError, ServiceUnavailable

OVERLOADED = 529  # Anthropic's status for "overloaded, retry"

# Anthropic's error type of each status below 500; other 4xx are invalid requests.
_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def envelope(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def anthropic_reply(exc: BaseException, *, method: str, path: str) -> ErrorReply:
    """How ``exc``, raised while serving an Anthropic route, is answered."""
    reply = error_reply(exc, method=method, path=path)
    message = str(reply.body["error"]["message"])
    if isinstance(exc, EngineOverloaded):
        return ErrorReply(OVERLOADED, envelope("overloaded_error", message), reply.headers)
    if isinstance(exc, ServiceUnavailable):  # loading or draining: over soon, retry
        return ErrorReply(reply.status, envelope("overloaded_error", message), reply.headers)
    if reply.status >= 500:
        return ErrorReply(reply.status, envelope("api_error", message), reply.headers)
    type_ = _TYPES.get(reply.status, "invalid_request_error")
    return ErrorReply(reply.status, envelope(type_, message), reply.headers)


def stream_error(exc: Exception) -> dict[str, Any]:
    """The body of the ``error`` event of a stream that failed after its 200."""
    if isinstance(exc, LLMServeError):
        return anthropic_reply(exc, method="POST", path="/v1/messages").body
    return envelope("api_error", internal_error_envelope()["error"]["message"])


def handle_anthropic_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Litestar exception handler of the Anthropic routes: Anthropic's envelope for all."""
    reply = anthropic_reply(exc, method=request.method, path=request.url.path)
    log_failure(request, exc, reply.status)
    return Response(content=reply.body, status_code=reply.status, headers=reply.headers)
