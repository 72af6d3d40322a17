"""Snapshots of an engine's load and prefix cache: what /health and /metrics read.

They live in ops, below the engine, so metrics need nothing of the engine; the engine fills
them in (and ``engine.protocol`` re-exports them).
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import field, frozen


@frozen
class CacheSnapshot:
    """Prefix cache counters; ``tier``-keyed maps have "ram" and "disk"."""

    hits: int = 0
    misses: int = 0
    tokens_saved: int = 0
    evictions: Mapping[str, int] = field(factory=dict)
    bytes: Mapping[str, int] = field(factory=dict)
    entries: Mapping[str, int] = field(factory=dict)


@frozen
class KvSnapshot:
    """The KV cells of a model's llama context: in use by running requests, and in all.

    llama.cpp keeps KV per token (one cell each), so a "block" is one cell and the context's
    cells are its blocks. Cells a finished request left behind for prefix reuse are not in
    use: the next request overwrites them whenever it needs the room.
    """

    used: int = 0
    cells: int = 0  # 0 while no context exists (model not loaded)

    @property
    def utilisation(self) -> float:
        """Cells in use over cells of the context, 0-1 (0 without a context)."""
        return min(self.used / self.cells, 1.0) if self.cells else 0.0


@frozen
class ReplicaStats:
    """One llama context of a model served by several (``[model] replicas``)."""

    index: int
    running: int = 0
    waiting: int = 0
    kv: KvSnapshot = field(factory=KvSnapshot)


@frozen
class ModelStats:
    """One model of an engine that serves several (a ModelRegistry)."""

    id: str
    loaded: bool = False  # in memory now
    running: int = 0
    waiting: int = 0  # for a slot, or for the model's load
    loads: int = 0
    load_failures: int = 0
    unloads: Mapping[str, int] = field(factory=dict)  # by reason: idle, lru
    cache: CacheSnapshot = field(factory=CacheSnapshot)
    kv: KvSnapshot = field(factory=KvSnapshot)
    draft_tokens: int = 0  # speculative decoding: tokens drafted, and accepted by the model
    draft_accepted: int = 0
    replicas: tuple[ReplicaStats, ...] = ()  # its contexts while loaded; running etc. are sums


@frozen
class EngineStats:
    """A snapshot for /health and /metrics; ``models`` is empty for a one-model engine."""

    running: int = 0
    waiting: int = 0
    cache_hit_rate: float = 0.0
    loaded: bool = False
    cache: CacheSnapshot = field(factory=CacheSnapshot)
    kv: KvSnapshot = field(factory=KvSnapshot)  # of the one model; registries: per model
    draft_tokens: int = 0  # speculative decoding: tokens drafted, and accepted by the model
    draft_accepted: int = 0
    models: tuple[ModelStats, ...] = ()
    replicas: tuple[ReplicaStats, ...] = ()  # of the one model; registries: per model


def per_model(stats: EngineStats, model_id: str) -> tuple[ModelStats, ...]:
    """The models of a snapshot: a registry's, or a one-model engine as its own one model."""
    if stats.models:
        return stats.models
    return (
        ModelStats(
            id=model_id,
            loaded=stats.loaded,
            running=stats.running,
            waiting=stats.waiting,
            cache=stats.cache,
            kv=stats.kv,
            draft_tokens=stats.draft_tokens,
            draft_accepted=stats.draft_accepted,
            replicas=stats.replicas,
        ),
    )
