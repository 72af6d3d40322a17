"""Operational routes, never behind the API key: health, ping, metrics, liveness, readiness."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from llmserve.http.state import app_state

_MIB = 1024 * 1024


@get("/health")
async def health(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The seed README's health body; 200 whenever the server is up."""
    state = app_state(request.app)
    return {
        "status": "healthy",
        "uptime_seconds": int(state.uptime_seconds()),
        "total_requests": state.metrics.total_requests,
        "cache_hit_rate": state.engine.stats().cache_hit_rate,
        "memory_usage_mb": state.metrics.rss_bytes() // _MIB,
    }


@get("/ping")
async def ping() -> dict[str, str]:
    """Connectivity check; touches nothing."""
    return {"status": "ok"}


@get("/livez")
async def livez() -> dict[str, str]:
    """Liveness: the event loop answers."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """Readiness: 200 once the model is loaded, 503 before."""
    if app_state(request.app).engine.stats().loaded:
        return Response(content={"status": "ready"})
    return Response(content={"status": "loading"}, status_code=503)


@get("/metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus exposition (OpenMetrics when the scraper asks for it)."""
    state = app_state(request.app)
    body, content_type = state.metrics.exposition(
        state.engine.stats(), request.headers.get("accept")
    )
    # As a header, not media_type: Litestar would append a second charset to text/plain.
    return Response(content=body, headers={"Content-Type": content_type})


OPS_ROUTES = [health, ping, livez, readyz, metrics]
