"""ModelRegistry: several models behind the one Engine protocol, loaded on use, unloaded idle.

Each configured model is an Engine of its own (a LlamaEngine: one model, one worker). The
registry routes a request by the model's name or an alias, loads a model on first use (or at
start, ``preload``), and keeps memory bounded::

    request ─ name/alias ─> _Model ── state: unloaded → loading → loaded → unloading → unloaded
                              │         one load task per model; concurrent requests share it
                              ├ in_flight: requests holding it (never unloaded while > 0)
                              └ Engine (start = load, stop = unload)

- at most ``max_loaded`` models in memory: when another must load, the least recently used
  idle one is unloaded; when every one is busy, the load waits for one to go idle, up to
  ``busy_wait_s``, then the request gets 503;
- a model idle for its ``keep_alive`` seconds is unloaded by a sweeper task;
- with a MemoryGuard, a load that would not fit the memory limit beside the loaded models
  unloads idle ones first, as for max_loaded; when the busy ones leave no room it waits as
  above, then the request gets 503 insufficient_memory (never the OOM killer).

With one model, every name routes to it (as llama-server does); with several, an unknown name
is ModelNotFound and a request that names no model goes to the first, the default.
Nothing here imports llama_cpp: tests drive it with FakeEngines and an injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from attrs import define, field, frozen

from llmserve.config import Settings, served_models
from llmserve.engine.protocol import (
    CacheSnapshot,
    Embeddings,
    Engine,
    EngineStats,
    Generation,
    GenerationRequest,
    ModelInfo,
    ModelStats,
    TokenEvent,
)
from llmserve.errors import ConfigError, InsufficientMemory, ModelNotFound, ServiceUnavailable
from llmserve.models.budget import MemoryGuard, ModelNeed, estimate_model

log = logging.getLogger(__name__)

# How long a load waits for room while every loaded model is busy, before answering 503.
BUSY_WAIT_S = 60.0
# How often the sweeper looks for models idle past their keep_alive.
SWEEP_INTERVAL_S = 1.0


class State(enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"


@frozen
class ModelSpec:
    """One model of the registry: its engine, and how it is routed, loaded and kept."""

    engine: Engine
    aliases: tuple[str, ...] = ()
    preload: bool = False  # load at start; readiness waits for it
    keep_alive: float | None = None  # seconds idle before it is unloaded; None: never
    need: ModelNeed | None = None  # its memory estimate; None: not checked


@define
class _Model:
    """The registry's book-keeping for one model; touched only on the event loop's thread."""

    spec: ModelSpec
    id: str
    state: State = State.UNLOADED
    transition: asyncio.Future[None] | None = None  # the load or unload under way
    in_flight: int = 0  # requests holding the model: waiting for its load, or generating
    pending: int = 0  # of those, the ones waiting for its load
    last_used: float = 0.0  # registry clock at the last request's start or end
    loads: int = 0
    load_failures: int = 0
    unloads: dict[str, int] = field(factory=dict)

    def idle(self) -> bool:
        return self.state is State.LOADED and self.in_flight == 0


class HeldGeneration:
    """A generation of one model of the registry; the model stays loaded until it ends."""

    def __init__(self, inner: Generation, model_id: str, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release = release
        self._released = False
        self.model_id = model_id

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        try:
            async for event in self._inner:
                yield event
        finally:
            self._release_once()

    def cancel(self) -> None:
        self._inner.cancel()
        self._release_once()

    def _release_once(self) -> None:
        if not self._released:
            self._released = True
            self._release()


class ModelRegistry:
    """Serves several models as one Engine; see the module docstring."""

    def __init__(
        self,
        specs: Sequence[ModelSpec],
        *,
        max_loaded: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        busy_wait_s: float = BUSY_WAIT_S,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
        memory: MemoryGuard | None = None,
    ) -> None:
        if not specs:
            raise ConfigError("invalid config: no model to serve")
        self._models = [_Model(spec, spec.engine.model_id) for spec in specs]
        self._by_name: dict[str, _Model] = {}
        for model in self._models:
            for name in (model.id, *model.spec.aliases):
                if self._by_name.setdefault(name, model) is not model:
                    raise ConfigError(f"invalid config: two models are named {name!r}")
        self._max_loaded = max_loaded
        self._clock = clock
        self._busy_wait_s = busy_wait_s
        self._sweep_interval_s = sweep_interval_s
        self._memory = memory
        self._changed = asyncio.Event()  # set, then replaced, whenever room may have freed up
        self._started = False
        self._stopped = False  # from stop() on, requests load nothing
        self._sweeper: asyncio.Task[None] | None = None

    # -- the Engine protocol ------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._models[0].id

    def models(self) -> Sequence[ModelInfo]:
        return [info for model in self._models for info in model.spec.engine.models()]

    def stats(self) -> EngineStats:
        per_model = [(model, model.spec.engine.stats()) for model in self._models]
        return EngineStats(
            running=sum(stats.running for _, stats in per_model),
            waiting=sum(stats.waiting + model.pending for model, stats in per_model),
            cache_hit_rate=_hit_rate([s for m, s in per_model if m.state is State.LOADED]),
            loaded=self._started,
            cache=_sum_caches([stats.cache for _, stats in per_model]),
            draft_tokens=sum(stats.draft_tokens for _, stats in per_model),
            draft_accepted=sum(stats.draft_accepted for _, stats in per_model),
            models=tuple(
                ModelStats(
                    id=model.id,
                    loaded=model.state is State.LOADED,
                    running=stats.running,
                    waiting=stats.waiting + model.pending,
                    loads=model.loads,
                    load_failures=model.load_failures,
                    unloads=dict(model.unloads),
                    cache=stats.cache,
                    kv=stats.kv,
                    draft_tokens=stats.draft_tokens,
                    draft_accepted=stats.draft_accepted,
                    replicas=stats.replicas,
                )
                for model, stats in per_model
            ),
        )

    def served_id(self, model: str | None) -> str:
        return self._route(model).id

    async def resolve(self, model: str | None) -> str:
        chosen = self._route(model)
        await self._wait_loaded(chosen)
        chosen.last_used = self._clock()
        return chosen.id

    def tool_format(self, model: str | None = None) -> str:
        return self._route(model).spec.engine.tool_format()

    def tool_syntax(self, model: str | None = None) -> str:
        return self._route(model).spec.engine.tool_syntax()

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        model: str | None = None,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        # resolve() loaded the model; an engine keeps its template across an unload, so a
        # model unloaded since still renders (its submit loads it again).
        return self._route(model).spec.engine.render_chat(
            messages, tools=tools, variables=variables
        )

    async def submit(self, request: GenerationRequest) -> HeldGeneration:
        chosen = self._hold(request.model)
        try:
            await self._wait_loaded(chosen)
            generation = await chosen.spec.engine.submit(request)
        except BaseException:
            self._release(chosen)
            raise
        return HeldGeneration(generation, chosen.id, lambda: self._release(chosen))

    async def embed(
        self, inputs: Sequence[str | tuple[int, ...]], model: str | None = None
    ) -> Embeddings:
        async with self._holding(model) as chosen:
            return await chosen.spec.engine.embed(inputs)

    async def tokenize_text(
        self, text: str, *, add_special: bool, model: str | None = None
    ) -> list[int]:
        async with self._holding(model) as chosen:
            return await chosen.spec.engine.tokenize_text(text, add_special=add_special)

    async def token_pieces(self, tokens: Sequence[int], model: str | None = None) -> list[bytes]:
        async with self._holding(model) as chosen:
            return await chosen.spec.engine.token_pieces(tokens)

    async def start(self) -> None:
        """Load the preloaded models, one after the other; then the registry is ready."""
        self._stopped = False
        for model in self._models:
            if model.spec.preload:
                await self._ensure_loaded(model)
        self._started = True
        if any(model.spec.keep_alive is not None for model in self._models):
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="model-sweeper")

    async def stop(self) -> None:
        self._stopped = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        # A load cannot be interrupted: let loads and unloads under way end, then unload all.
        while pending := [m.transition for m in self._models if m.transition is not None]:
            await asyncio.gather(*pending, return_exceptions=True)
        for model in self._models:
            if model.state is State.LOADED:
                model.state = State.UNLOADED
                await model.spec.engine.stop()

    # -- the registry's own -------------------------------------------------------------------

    @property
    def specs(self) -> tuple[ModelSpec, ...]:
        return tuple(model.spec for model in self._models)

    async def unload_idle(self) -> None:
        """Unload every model idle for its keep_alive; what the sweeper does each second."""
        now = self._clock()
        unloads = [
            self._begin_unload(model, "idle")
            for model in self._models
            if model.spec.keep_alive is not None
            and model.idle()
            and now - model.last_used >= model.spec.keep_alive
        ]
        if unloads:
            await asyncio.gather(*(asyncio.shield(unload) for unload in unloads))

    def _hold(self, name: str | None) -> _Model:
        """The model for ``name``, never unloaded from now until ``_release``."""
        chosen = self._route(name)
        chosen.in_flight += 1
        chosen.last_used = self._clock()
        return chosen

    @contextlib.asynccontextmanager
    async def _holding(self, name: str | None) -> AsyncIterator[_Model]:
        """The model for ``name``, loaded, and held for the block."""
        chosen = self._hold(name)
        try:
            await self._wait_loaded(chosen)
            yield chosen
        finally:
            self._release(chosen)

    def _route(self, name: str | None) -> _Model:
        if len(self._models) == 1 or name is None:
            return self._models[0]
        model = self._by_name.get(name)
        if model is None:
            served = ", ".join(m.id for m in self._models)
            raise ModelNotFound(
                f"The model '{name}' does not exist; this server serves: {served}.", param="model"
            )
        return model

    async def _wait_loaded(self, model: _Model) -> None:
        if model.state is State.LOADED:
            return
        if self._stopped:
            # A request that arrived before the stop (a drain's grace period over) must not
            # load the model back.
            raise ServiceUnavailable("the server is shutting down")
        model.pending += 1
        try:
            await self._ensure_loaded(model)
        finally:
            model.pending -= 1

    async def _ensure_loaded(self, model: _Model) -> None:
        while model.state is not State.LOADED:
            if model.transition is None:
                model.transition = asyncio.ensure_future(self._load(model))
            # Shielded: a request that goes away must not cancel a load others wait for.
            await asyncio.shield(model.transition)

    async def _load(self, model: _Model) -> None:
        try:
            await self._make_room(model)
            log.info("model load started", extra={"model": model.id})
            started = time.monotonic()
            try:
                await model.spec.engine.start()
            except BaseException as exc:
                model.state = State.UNLOADED
                model.load_failures += 1
                log.error("model load failed: %s", exc, extra={"model": model.id})
                with contextlib.suppress(Exception):
                    await model.spec.engine.stop()  # whatever the failed load left in memory
                raise
            model.state = State.LOADED
            model.loads += 1
            model.last_used = self._clock()
            log.info(
                "model load finished",
                extra={"model": model.id, "load_s": round(time.monotonic() - started, 3)},
            )
        finally:
            model.transition = None
            self._notify()

    async def _make_room(self, model: _Model) -> None:
        """Return once ``model`` may load without going over max_loaded or the memory limit;
        mark it loading."""
        deadline: float | None = None
        while True:
            others = [m for m in self._models if m is not model and m.state is not State.UNLOADED]
            full = self._max_loaded is not None and len(others) >= self._max_loaded
            short = None if full else self._memory_short(model, others)
            if not full and short is None:
                break
            if short is not None and not others:
                raise short  # it does not fit even alone: waiting cannot help
            idle = [m for m in others if m.idle()]
            if idle:
                victim = min(idle, key=lambda m: m.last_used)
                await asyncio.shield(self._begin_unload(victim, "lru"))
                continue
            # Every other model in memory is busy, loading or unloading: wait for a change.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._busy_wait_s if deadline is None else deadline
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                if short is not None:
                    raise short from None
                busy = ", ".join(m.id for m in others)
                raise ServiceUnavailable(
                    f"cannot load the model '{model.id}': max_loaded_models = "
                    f"{self._max_loaded} models are loaded and busy ({busy}); retry shortly"
                ) from None
        model.state = State.LOADING

    def _memory_short(self, model: _Model, others: Sequence[_Model]) -> InsufficientMemory | None:
        """Why ``model`` cannot load beside ``others`` for lack of memory; None if it can."""
        need = model.spec.need
        if self._memory is None or need is None:
            return None
        beside = [m.spec.need for m in others if m.spec.need is not None]
        return self._memory.check_load(need, beside)

    def _begin_unload(self, model: _Model, reason: str) -> asyncio.Future[None]:
        model.state = State.UNLOADING
        model.transition = asyncio.ensure_future(self._unload(model, reason))
        return model.transition

    async def _unload(self, model: _Model, reason: str) -> None:
        idle_s = self._clock() - model.last_used
        try:
            await model.spec.engine.stop()
        except Exception as exc:
            log.error("model unload failed", exc_info=exc, extra={"model": model.id})
        finally:
            model.state = State.UNLOADED
            model.transition = None
            model.unloads[reason] = model.unloads.get(reason, 0) + 1
            self._notify()
        log.info(
            "model unloaded",
            extra={"model": model.id, "reason": reason, "idle_s": round(idle_s, 1)},
        )

    def _release(self, model: _Model) -> None:
        model.in_flight -= 1
        model.last_used = self._clock()
        if model.in_flight == 0:
            self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self.unload_idle()
            except Exception as exc:  # the sweeper must outlive one bad unload
                log.error("idle model sweep failed", exc_info=exc)


def _hit_rate(loaded: Sequence[EngineStats]) -> float:
    """The loaded models' cache hit rates, weighted by how many prompts each looked up."""
    if not loaded:
        return 0.0
    weights = [stats.cache.hits + stats.cache.misses for stats in loaded]
    if sum(weights) == 0:
        return sum(stats.cache_hit_rate for stats in loaded) / len(loaded)
    return sum(s.cache_hit_rate * w for s, w in zip(loaded, weights, strict=True)) / sum(weights)


def _sum_caches(snapshots: Sequence[CacheSnapshot]) -> CacheSnapshot:
    def tiers(name: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for snapshot in snapshots:
            for tier, value in getattr(snapshot, name).items():
                total[tier] = total.get(tier, 0) + value
        return total

    return CacheSnapshot(
        hits=sum(s.hits for s in snapshots),
        misses=sum(s.misses for s in snapshots),
        tokens_saved=sum(s.tokens_saved for s in snapshots),
        evictions=tiers("evictions"),
        bytes=tiers("bytes"),
        entries=tiers("entries"),
    )


def registry_from_settings(
    settings: Settings,
    make_engine: Callable[[Settings], Engine],
    *,
    memory: MemoryGuard | None = None,
) -> ModelRegistry:
    """The registry of the configured models (``[[models]]``, else ``[model]``).

    ``make_engine`` builds one model's engine from settings whose ``[model]`` is that model
    (a LlamaEngine, which resolves, and may pull, the model file now). With ``memory``, each
    load is checked against the memory limit, for the models whose GGUF file is at hand.
    """
    served = served_models(settings)
    specs = []
    for entry in served:
        own = attrs.evolve(settings, model=entry, models=())
        if len(served) > 1 and settings.cache.disk_dir is not None:
            # Each model's prefix cache keeps its own disk budget in its own directory.
            disk_dir = Path(settings.cache.disk_dir) / cache_folder_name(entry.name or "model")
            own = attrs.evolve(own, cache=attrs.evolve(own.cache, disk_dir=str(disk_dir)))
        keep_alive = settings.server.keep_alive if entry.keep_alive is None else entry.keep_alive
        specs.append(
            ModelSpec(
                engine=make_engine(own),
                aliases=entry.aliases,
                preload=entry.preload,
                keep_alive=None if keep_alive is None or keep_alive < 0 else float(keep_alive),
                need=estimate_model(own) if memory is not None else None,
            )
        )
    return ModelRegistry(specs, max_loaded=settings.server.max_loaded_models, memory=memory)


def cache_folder_name(name: str) -> str:
    """The folder of a model's disk cache, under ``[cache] disk_dir``, for any configured name.

    Names are free text (``org/model``, ``..``), and a folder named by one could land outside
    the cache or inside another model's. The folder keeps the name's ``[A-Za-z0-9._-]``
    characters, never starts with a dot (so never ``.`` or ``..``), and ends with a hash of the
    whole name: distinct names get distinct folders, on case-insensitive file systems too.
    """
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:64] or "model"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{readable}-{digest}"
