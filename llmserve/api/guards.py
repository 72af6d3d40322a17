"""Litestar guards of the /v1 routes: API keys first, then the rate limit.

They are the one place that reads the app state for it; ``auth`` and ``ratelimit`` get their
keys, limiter and headers as arguments.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from llmserve.api.ratelimit import client_of
from llmserve.api.state import app_state


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: enforce the configured API keys, if any."""
    keys = app_state(connection.app).keys
    if keys.enabled:
        keys.check(connection.headers.get("authorization"))


def limit_rate(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard, after the API-key guard: apply ``[server] rate_limit_rpm``, if set."""
    state = app_state(connection.app)
    if state.limiter is not None:
        state.limiter.acquire(client_of(connection, state.keys.enabled))
