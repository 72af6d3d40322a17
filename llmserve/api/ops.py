"""Operational routes: health, ping, metrics, liveness, readiness.

They stay open even with API keys set (probes and scrapers carry none), except ``/metrics``
with ``[server] metrics_require_key``; ``metrics_enabled = false`` removes it.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler

from llmserve.api.guards import require_api_key
from llmserve.api.lifecycle import Phase
from llmserve.api.state import AppState, app_state
from llmserve.config import ServerSettings
from llmserve.engine.protocol import EngineStats, ModelStats
from llmserve.ops.stats import per_model

_MIB = 1024 * 1024


def _phase(state: AppState, stats: EngineStats | None = None) -> Phase:
    """The lifecycle's phase, but loading while the engine reports no model."""
    phase = state.lifecycle.phase
    if phase is Phase.READY and not (stats or state.engine.stats()).loaded:
        return Phase.LOADING
    return phase


@get("/health")
async def health(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The seed README's health body, plus ``models``; 200 whenever the process serves.

    ``status`` is ``healthy`` once the model serves, else the phase: loading, draining, failed.
    ``models``: each served model's running and waiting requests, and those of each of its
    replicas (llama contexts) while it is loaded.
    """
    state = app_state(request.app)
    # One engine snapshot per call (status and hit rate from the same one); the RSS is sampled
    # at most once a second (Metrics.rss_bytes), so a probe storm costs no /proc reads.
    stats = state.engine.stats()
    phase = _phase(state, stats)
    return {
        "status": "healthy" if phase is Phase.READY else phase.value,
        "uptime_seconds": int(state.uptime_seconds()),
        "total_requests": state.metrics.total_requests,
        "cache_hit_rate": stats.cache_hit_rate,
        "memory_usage_mb": state.metrics.rss_bytes() // _MIB,
        "models": [_model_health(m) for m in per_model(stats, state.engine.model_id)],
    }


def _model_health(model: ModelStats) -> dict[str, Any]:
    return {
        "id": model.id,
        "loaded": model.loaded,
        "running": model.running,
        "waiting": model.waiting,
        "replicas": [
            {"replica": r.index, "running": r.running, "waiting": r.waiting} for r in model.replicas
        ],
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
    """Readiness: 200 while the model serves; 503 while it loads, after a failed load, and
    from SIGTERM on (draining), so that a load balancer sends new requests elsewhere."""
    phase = _phase(app_state(request.app))
    return Response(
        content={"status": phase.value}, status_code=200 if phase is Phase.READY else 503
    )


async def require_metrics_key(
    connection: ASGIConnection[Any, Any, Any, Any], route: BaseRouteHandler
) -> None:
    """Litestar guard: the API key, when ``[server] metrics_require_key`` asks for it."""
    if app_state(connection.app).settings.server.metrics_require_key:
        require_api_key(connection, route)


@get("/metrics", guards=[require_metrics_key])
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus exposition (OpenMetrics when the scraper asks for it)."""
    state = app_state(request.app)
    body, content_type = state.metrics.exposition(
        state.engine.stats(), request.headers.get("accept"), model=state.engine.model_id
    )
    # As a header, not media_type: Litestar would append a second charset to text/plain.
    return Response(content=body, headers={"Content-Type": content_type})


def ops_routes(server: ServerSettings) -> list[HTTPRouteHandler]:
    """The operational routes this server exposes."""
    routes = [health, ping, livez, readyz]
    return [*routes, metrics] if server.metrics_enabled else routes
