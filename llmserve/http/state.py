"""Typed application state, created in the lifespan, and the clock and id factories it holds."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Protocol

from attrs import frozen

if TYPE_CHECKING:
    from litestar import Litestar

    from llmserve.config import Settings
    from llmserve.engine.protocol import Engine
    from llmserve.http.auth import KeyRing
    from llmserve.http.lifecycle import Lifecycle
    from llmserve.http.ratelimit import RateLimiter
    from llmserve.http.rendering import TemplateRenderer
    from llmserve.metrics import Metrics

STATE_KEY = "llmserve"


class Clock(Protocol):
    """Wall time for ``created`` fields; monotonic time for durations and uptime."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class IdFactory(Protocol):
    """Ids of responses and requests, in OpenAI's prefixes."""

    def chat_completion_id(self) -> str: ...

    def completion_id(self) -> str: ...

    def request_id(self) -> str: ...

    def tool_call_id(self) -> str: ...


@frozen
class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@frozen
class RandomIds:
    """Unguessable ids: 96 random bits each."""

    def chat_completion_id(self) -> str:
        return f"chatcmpl-{secrets.token_hex(12)}"

    def completion_id(self) -> str:
        return f"cmpl-{secrets.token_hex(12)}"

    def request_id(self) -> str:
        return f"req_{secrets.token_hex(12)}"

    def tool_call_id(self) -> str:
        return f"call_{secrets.token_hex(12)}"


@frozen
class AppState:
    """Everything a request handler needs; one per running app."""

    settings: Settings
    engine: Engine
    metrics: Metrics
    clock: Clock
    ids: IdFactory
    lifecycle: Lifecycle
    limiter: RateLimiter | None  # None: no rate limit
    keys: KeyRing  # the accepted API keys; empty: /v1 is open
    renderer: TemplateRenderer  # chat templates, off the event loop
    started_at: float  # clock.monotonic() when the server started

    def uptime_seconds(self) -> float:
        return self.clock.monotonic() - self.started_at


def app_state(app: Litestar) -> AppState:
    """The state the lifespan put on ``app``."""
    state: AppState = app.state[STATE_KEY]
    return state
