"""Per-request bookkeeping: request id, one log line, the request metrics, in-flight count.

An ASGI middleware rather than hooks in the routes, so the duration covers a stream up to its
last byte and the status is the one the client got, errors included. Routes report each engine
event to the ``RequestRecord`` this middleware puts in the scope: it counts tokens and observes
the serving latencies (time to first token, inter-token latency, queue wait) as events arrive.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, cast

from attrs import define

from llmserve.api.clock import Clock
from llmserve.api.state import app_state
from llmserve.engine.protocol import TokenEvent
from llmserve.ops.logs import request_id_var

if TYPE_CHECKING:
    from litestar import Litestar, Request
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from llmserve.ops.metrics import Metrics

log = logging.getLogger("llmserve.http")  # the logger name is part of the log format

RECORD_KEY = "llmserve.record"
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Only inference routes count as requests; probes and scrapes would drown the numbers.
_COUNTED_PREFIX = "/v1/"


@define
class Latencies:
    """Observes one request's serving latencies, from the arrival times of its events."""

    metrics: Metrics
    model: str
    clock: Clock
    arrived: float  # clock.monotonic() when the request came in
    first_token_s: float | None = None
    _last_token_at: float | None = None

    def on_event(self, event: TokenEvent) -> None:
        if event.queue_wait_s is not None:
            self.metrics.observe_queue_wait(model=self.model, seconds=event.queue_wait_s)
        if event.tokens <= 0:
            return
        now = self.clock.monotonic()
        if self._last_token_at is None:
            self.first_token_s = now - self.arrived
            self.metrics.observe_first_token(model=self.model, seconds=self.first_token_s)
        else:
            # Tokens that arrive together share the gap since the previous arrival.
            gap = (now - self._last_token_at) / event.tokens
            self.metrics.observe_inter_token(model=self.model, seconds=gap, tokens=event.tokens)
        self._last_token_at = now


@define
class RequestRecord:
    """What a route learned about its request, for the log line and the metrics."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    draft_accepted: int = 0  # completion tokens from accepted speculative drafts
    finish_reason: str | None = None
    latencies: Latencies | None = None  # None outside the middleware
    model: str | None = None  # the model that serves it, once the route knows

    def serve_with(self, model: str) -> None:
        """Name the model serving this request: its metrics carry that label from now on."""
        self.model = model
        if self.latencies is not None:
            self.latencies.model = model

    def add(self, event: TokenEvent) -> None:
        if self.latencies is not None:
            self.latencies.on_event(event)
        self.completion_tokens += event.tokens
        if event.finish_reason is not None:
            self.finish_reason = event.finish_reason
        if event.usage is not None:
            # The final usage is exact; the running count is for cancelled requests.
            self.prompt_tokens = event.usage.prompt_tokens
            self.completion_tokens = event.usage.completion_tokens
            self.cached_tokens = event.usage.cached_tokens
            self.draft_accepted = event.usage.draft_accepted


def counted_endpoints(app: Litestar) -> list[str]:
    """The endpoint labels the request metrics will carry: each /v1 route's path template."""
    return [
        route.path_format for route in app.routes if route.path_format.startswith(_COUNTED_PREFIX)
    ]


def record_of(request: Request[Any, Any, Any]) -> RequestRecord:
    """The record of this request (a throwaway one outside the middleware, e.g. in a test)."""
    scope = cast("dict[str, Any]", request.scope)
    record = scope.get(RECORD_KEY)
    if record is None:
        record = scope[RECORD_KEY] = RequestRecord()
    return cast("RequestRecord", record)


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_HEADER_BYTES:
            text = value.decode("latin-1")
            return text if _CLIENT_REQUEST_ID.fullmatch(text) else None
    return None


def _log_fields(
    scope: Scope,
    status: int,
    model: str,
    duration_ms: float,
    record: RequestRecord,
    latencies: Latencies | None,
) -> dict[str, Any]:
    """The fields of a request's log line."""
    extra: dict[str, Any] = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "model": model,
        "duration_ms": round(duration_ms, 1),
        "tokens": record.prompt_tokens + record.completion_tokens,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cached_tokens": record.cached_tokens,
        "draft_accepted": record.draft_accepted,
        "finish_reason": record.finish_reason,
    }
    if latencies is not None and latencies.first_token_s is not None:
        extra["ttft_ms"] = round(latencies.first_token_s * 1000.0, 1)
    return extra


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
        counted = scope["path"].startswith(_COUNTED_PREFIX)
        # Until a route picks a model (and for requests refused before that), the default one.
        model = state.engine.model_id
        latencies = Latencies(state.metrics, model, state.clock, started) if counted else None
        record = RequestRecord(latencies=latencies)
        cast("dict[str, Any]", scope)[RECORD_KEY] = record
        status = 500  # if nothing was sent, the server failed

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        if counted:
            state.lifecycle.in_flight += 1
        try:
            await app(scope, receive, send_with_id)
        finally:
            if counted:
                state.lifecycle.in_flight -= 1
            duration_ms = (state.clock.monotonic() - started) * 1000.0
            endpoint = scope.get("path_template") or scope["path"]
            model = record.model or model
            if counted:
                state.metrics.observe_request(
                    endpoint=endpoint, model=model, status=status, duration_ms=duration_ms
                )
                state.metrics.observe_tokens(
                    model=model, prompt=record.prompt_tokens, generated=record.completion_tokens
                )
            level = logging.INFO if counted else logging.DEBUG
            # Probes and scrapes log at DEBUG, off by default: their line is not built at all.
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra=_log_fields(scope, status, model, duration_ms, record, latencies),
                )
            request_id_var.reset(token)

    return middleware
