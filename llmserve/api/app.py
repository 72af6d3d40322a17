"""create_app: the Litestar application, whose lifespan owns the engine."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from prometheus_client import CollectorRegistry

from llmserve.api.anthropic.routes import anthropic_router
from llmserve.api.auth import load_keys
from llmserve.api.clock import Clock, IdFactory, RandomIds, SystemClock
from llmserve.api.failures import handle_exception
from llmserve.api.lifecycle import Lifecycle, load_engine
from llmserve.api.observe import counted_endpoints, observe_requests
from llmserve.api.openai.routes import openai_router
from llmserve.api.openai.tokens import tokens_router
from llmserve.api.openapi import openapi_json
from llmserve.api.ops import ops_routes
from llmserve.api.ratelimit import RateLimiter
from llmserve.api.rendering import TemplateRenderer
from llmserve.api.responses.routes import responses_router
from llmserve.api.responses.store import ResponseStore
from llmserve.api.state import STATE_KEY, AppState
from llmserve.config import Settings
from llmserve.engine.protocol import Engine
from llmserve.models.budget import MemoryGuard
from llmserve.ops.metrics import Metrics
from llmserve.prompt.chat import ChatTemplate


def _build_engine(settings: Settings) -> Engine:
    # Imported here so that apps given a fake engine never import llama_cpp.
    from llmserve.engine.registry import registry_from_settings
    from llmserve.engine.service import LlamaEngine

    # Even one model goes through the registry: the same load metrics, logs, keep_alive and
    # memory check of each load.
    return registry_from_settings(
        settings,
        functools.partial(LlamaEngine.from_settings, templates=ChatTemplate.from_source),
        memory=MemoryGuard() if settings.server.memory_check else None,
    )


def create_app(
    settings: Settings,
    engine: Engine | None = None,
    *,
    clock: Clock | None = None,
    ids: IdFactory | None = None,
    registry: CollectorRegistry | None = None,
    lifecycle: Lifecycle | None = None,
) -> Litestar:
    """The server app. Without ``engine``, the lifespan builds the real one from ``settings``.

    Either way the app starts the engine in the background once it serves (probes answer while
    the model loads; ``lifecycle`` follows the load) and stops it on shutdown. Each app gets
    its own Prometheus registry unless one is given, so several apps can live in one process.
    """
    clock = clock or SystemClock()
    ids = ids or RandomIds()
    lifecycle = lifecycle if lifecycle is not None else Lifecycle()
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    rpm = settings.server.rate_limit_rpm
    keys = load_keys(settings.server)  # the key file is read now: a bad one stops the start
    origins = settings.server.cors_origins
    stored = settings.responses
    # Built with the app (its disk file read now), so it outlives a lifespan restart.
    responses = ResponseStore(stored.max_entries, stored.max_mb << 20, stored.disk_path)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        served = engine if engine is not None else _build_engine(settings)
        # Every model's series exist from the start, at zero, for dashboards and absent().
        metrics.initialise(
            models=[info.id for info in served.models()], endpoints=counted_endpoints(app)
        )
        renderer = TemplateRenderer()
        app.state[STATE_KEY] = AppState(
            settings=settings,
            engine=served,
            metrics=metrics,
            clock=clock,
            ids=ids,
            lifecycle=lifecycle,
            limiter=RateLimiter(rpm, clock) if rpm is not None else None,
            keys=keys,
            renderer=renderer,
            responses=responses,
            started_at=clock.monotonic(),
        )
        loading = asyncio.create_task(load_engine(served, lifecycle))
        try:
            yield
        finally:
            renderer.close()
            # A model load cannot be interrupted: let it end, then stop what it started.
            await loading
            await served.stop()

    return Litestar(
        route_handlers=[
            openai_router(),
            anthropic_router(),
            responses_router(),
            tokens_router(),
            *ops_routes(settings.server),
            openapi_json,
        ],
        # Off unless origins are configured: no CORS headers, so browsers block other origins.
        cors_config=CORSConfig(allow_origins=list(origins)) if origins else None,
        lifespan=[lifespan],
        middleware=[observe_requests],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=settings.server.max_body_mb << 20,
        # logs.py owns logging; our handler logs unexpected errors itself.
        logging_config=None,
        # The routes parse raw bodies with the codec; a generated schema would be empty:
        # /openapi.json serves the hand-written one (http/openapi.py).
        openapi_config=None,
        debug=False,
    )
