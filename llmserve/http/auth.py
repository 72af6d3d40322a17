"""Bearer-key guard for /v1: on only when ``server.api_key`` is set; ops routes stay open."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from llmserve.errors import AuthenticationFailed
from llmserve.http.state import app_state

MISSING_KEY = (
    "Missing API key. Provide it in an Authorization header using Bearer auth "
    "(Authorization: Bearer YOUR_KEY)."
)
INCORRECT_KEY = "Incorrect API key provided."


def check_bearer(authorization: str | None, api_key: str) -> None:
    """Raise AuthenticationFailed unless ``authorization`` is ``Bearer <api_key>``."""
    if not authorization:
        raise AuthenticationFailed(MISSING_KEY)
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise AuthenticationFailed(MISSING_KEY)
    # Constant-time, on bytes: compare_digest refuses non-ASCII str.
    if not hmac.compare_digest(presented.strip().encode(), api_key.encode()):
        raise AuthenticationFailed(INCORRECT_KEY)


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: enforce the configured API key, if any."""
    api_key = app_state(connection.app).settings.server.api_key
    if api_key:
        check_bearer(connection.headers.get("authorization"), api_key)
