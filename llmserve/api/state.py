"""Typed application state, created in the lifespan."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from litestar import Litestar

    from llmserve.api.auth import KeyRing
    from llmserve.api.clock import Clock, IdFactory
    from llmserve.api.lifecycle import Lifecycle
    from llmserve.api.ratelimit import RateLimiter
    from llmserve.api.rendering import TemplateRenderer
    from llmserve.api.responses.store import ResponseStore
    from llmserve.config import Settings
    from llmserve.engine.protocol import Engine
    from llmserve.ops.metrics import Metrics

STATE_KEY = "llmserve"


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
    responses: ResponseStore  # stored Responses-API responses
    started_at: float  # clock.monotonic() when the server started

    def uptime_seconds(self) -> float:
        return self.clock.monotonic() - self.started_at


def app_state(app: Litestar) -> AppState:
    """The state the lifespan put on ``app``."""
    state: AppState = app.state[STATE_KEY]
    return state
