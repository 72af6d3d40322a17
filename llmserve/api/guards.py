"""Litestar guards of the /v1 routes: API keys first, then the rate limit.

They are the one place that reads the app state for it; ``auth`` and ``ratelimit`` get their
keys, limiter and headers as arguments.

Each route group has one ``async`` guard doing all its checks: Litestar runs a sync guard in a
worker thread and copies the route handler for every guard it calls, which cost a cheap route
like ``/v1/models`` a third of its time (py-spy under wrk, issue 19). None of the checks blocks.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from llmserve.api.auth import MISSING_X_API_KEY, bearer_key
from llmserve.api.ratelimit import client_of
from llmserve.api.state import app_state


async def openai_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The OpenAI-dialect routes: ready, then the API key (Bearer), then the rate limit."""
    require_ready(connection, _)
    require_api_key(connection, _)
    limit_rate(connection, _)


async def anthropic_guard(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """The Anthropic routes: ready, then the key in ``x-api-key`` or as Bearer, then the limit."""
    require_ready(connection, _)
    require_api_key_or_x_api_key(connection, _)
    limit_rate_by_x_api_key(connection, _)


def require_ready(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: 503 service_unavailable while the model loads or the server drains."""
    app_state(connection.app).lifecycle.check_ready()


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: enforce the configured API keys, if any."""
    keys = app_state(connection.app).keys
    if keys.enabled:
        keys.check(connection.headers.get("authorization"))


def _anthropic_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    # Anthropic clients send x-api-key; gateways and ANTHROPIC_AUTH_TOKEN send Bearer.
    x_api_key = connection.headers.get("x-api-key", "").strip()
    return x_api_key or bearer_key(connection.headers.get("authorization"))


def require_api_key_or_x_api_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Litestar guard of the Anthropic routes: the same keys, in ``x-api-key`` or as Bearer."""
    keys = app_state(connection.app).keys
    if keys.enabled:
        keys.check_key(_anthropic_key(connection), missing=MISSING_X_API_KEY)


def limit_rate_by_x_api_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """``limit_rate`` for the Anthropic routes: a client is its key, however it was sent."""
    state = app_state(connection.app)
    if state.limiter is not None:
        key = _anthropic_key(connection) or ""
        state.limiter.acquire(client_of(connection, state.keys.enabled, key=key))


def limit_rate(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard, after the API-key guard: apply ``[server] rate_limit_rpm``, if set."""
    state = app_state(connection.app)
    if state.limiter is not None:
        state.limiter.acquire(client_of(connection, state.keys.enabled))
