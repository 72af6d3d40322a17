"""Every Prometheus collector of llmserve, on an injected registry.

The four ``llm_engine_*`` names of the seed README are a public contract. Gauges that mirror the
engine or the process (running, waiting, cache hit rate, RSS) are refreshed at scrape time from
``EngineStats`` rather than kept in step on every request.
"""

from __future__ import annotations

import psutil
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from llmserve.engine.protocol import EngineStats

# Milliseconds: from a cached short completion to a long generation on a slow CPU.
DURATION_BUCKETS_MS = (
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    30_000.0,
    60_000.0,
    120_000.0,
    300_000.0,
)


class Metrics:
    """The collectors of one app, plus the request count /health reports."""

    def __init__(self, registry: CollectorRegistry, *, process_collectors: bool = True) -> None:
        self.registry = registry
        self._process = psutil.Process()
        self._total_requests = 0
        self.requests = Counter(
            "llm_engine_requests",
            "Requests answered, by endpoint, model and HTTP status.",
            ("endpoint", "model", "status"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "llm_engine_request_duration_ms",
            "Time from request to the last byte of the response, in milliseconds.",
            ("endpoint", "model"),
            buckets=DURATION_BUCKETS_MS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "llm_engine_prompt_tokens",
            "Prompt tokens of finished requests.",
            ("model",),
            registry=registry,
        )
        self.generation_tokens = Counter(
            "llm_engine_generation_tokens",
            "Generated tokens, cancelled requests included.",
            ("model",),
            registry=registry,
        )
        self.cache_hit_rate = Gauge(
            "llm_engine_cache_hit_rate",
            "Fraction of prompt tokens served from the prefix cache.",
            registry=registry,
        )
        self.memory_usage = Gauge(
            "llm_engine_memory_usage_bytes",
            "Resident set size of the server process.",
            registry=registry,
        )
        self.requests_running = Gauge(
            "llm_engine_requests_running",
            "Requests holding a sequence slot.",
            registry=registry,
        )
        self.requests_waiting = Gauge(
            "llm_engine_requests_waiting",
            "Requests queued for a sequence slot.",
            registry=registry,
        )
        if process_collectors and registry is not REGISTRY:
            # The stock process/GC/platform metrics live on the global registry; an app with
            # its own registry still wants them on its /metrics.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

    @property
    def total_requests(self) -> int:
        return self._total_requests

    def observe_request(
        self, *, endpoint: str, model: str, status: int, duration_ms: float
    ) -> None:
        """Count one answered request and its duration."""
        self._total_requests += 1
        self.requests.labels(endpoint=endpoint, model=model, status=str(status)).inc()
        self.request_duration.labels(endpoint=endpoint, model=model).observe(duration_ms)

    def observe_tokens(self, *, model: str, prompt: int, generated: int) -> None:
        """Count the tokens of one request."""
        if prompt:
            self.prompt_tokens.labels(model=model).inc(prompt)
        if generated:
            self.generation_tokens.labels(model=model).inc(generated)

    def rss_bytes(self) -> int:
        return int(self._process.memory_info().rss)

    def refresh(self, stats: EngineStats) -> None:
        """Set the gauges that mirror the engine and the process to their values now."""
        self.cache_hit_rate.set(stats.cache_hit_rate)
        self.requests_running.set(stats.running)
        self.requests_waiting.set(stats.waiting)
        self.memory_usage.set(self.rss_bytes())

    def exposition(self, stats: EngineStats, accept: str | None) -> tuple[bytes, str]:
        """The scrape body in the format ``accept`` asks for, and its content type."""
        self.refresh(stats)
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
