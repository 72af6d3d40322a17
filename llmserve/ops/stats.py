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
    draft_tokens: int = 0  # speculative decoding: tokens drafted, and accepted by the model
    draft_accepted: int = 0


@frozen
class EngineStats:
    """A snapshot for /health and /metrics; ``models`` is empty for a one-model engine."""

    running: int = 0
    waiting: int = 0
    cache_hit_rate: float = 0.0
    loaded: bool = False
    cache: CacheSnapshot = field(factory=CacheSnapshot)
    draft_tokens: int = 0  # speculative decoding: tokens drafted, and accepted by the model
    draft_accepted: int = 0
    models: tuple[ModelStats, ...] = ()
