"""Per-request bookkeeping: request id, one log line, and the request metrics.

An ASGI middleware rather than hooks in the routes, so the duration covers a stream up to its
last byte and the status is the one the client got, errors included. Routes report token counts
through the ``RequestRecord`` this middleware puts in the scope.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, cast

from attrs import define

from llmserve.engine.protocol import TokenEvent
from llmserve.http.state import app_state
from llmserve.logs import request_id_var

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("llmserve.http")

RECORD_KEY = "llmserve.record"
REQUEST_ID_HEADER = "x-request-id"
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Only inference routes count as requests; probes and scrapes would drown the numbers.
_COUNTED_PREFIX = "/v1/"


@define
class RequestRecord:
    """What a route learned about its request, for the log line and the token counters."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    finish_reason: str | None = None

    def add(self, event: TokenEvent) -> None:
        self.completion_tokens += event.tokens
        if event.finish_reason is not None:
            self.finish_reason = event.finish_reason
        if event.usage is not None:
            # The final usage is exact; the running count is for cancelled requests.
            self.prompt_tokens = event.usage.prompt_tokens
            self.completion_tokens = event.usage.completion_tokens
            self.cached_tokens = event.usage.cached_tokens


def record_of(request: Request[Any, Any, Any]) -> RequestRecord:
    """The record of this request (a throwaway one outside the middleware, e.g. in a test)."""
    scope = cast("dict[str, Any]", request.scope)
    record = scope.get(RECORD_KEY)
    if record is None:
        record = scope[RECORD_KEY] = RequestRecord()
    return cast("RequestRecord", record)


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1")
            return text if _CLIENT_REQUEST_ID.fullmatch(text) else None
    return None


def observe_requests(app: ASGIApp) -> ASGIApp:
    """Litestar middleware factory: wrap every route with the request bookkeeping."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        state = app_state(scope["litestar_app"])
        started = state.clock.monotonic()
        request_id = _client_request_id(scope) or state.ids.request_id()
        token = request_id_var.set(request_id)
        record = RequestRecord()
        cast("dict[str, Any]", scope)[RECORD_KEY] = record
        status = 500  # if nothing was sent, the server failed

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            duration_ms = (state.clock.monotonic() - started) * 1000.0
            endpoint = scope.get("path_template") or scope["path"]
            counted = endpoint.startswith(_COUNTED_PREFIX)
            if counted:
                model = state.engine.model_id
                state.metrics.observe_request(
                    endpoint=endpoint, model=model, status=status, duration_ms=duration_ms
                )
                state.metrics.observe_tokens(
                    model=model, prompt=record.prompt_tokens, generated=record.completion_tokens
                )
            log.log(
                logging.INFO if counted else logging.DEBUG,
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(duration_ms, 1),
                    "prompt_tokens": record.prompt_tokens,
                    "completion_tokens": record.completion_tokens,
                    "cached_tokens": record.cached_tokens,
                    "finish_reason": record.finish_reason,
                },
            )
            request_id_var.reset(token)

    return middleware
