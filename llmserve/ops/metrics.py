"""Every Prometheus collector of llmserve, on an injected registry.

The four ``llm_engine_*`` names of the seed README are a public contract. Gauges that mirror the
engine or the process (running, waiting, cache hit rate, RSS) are refreshed at scrape time from
``EngineStats`` rather than kept in step on every request. The serving latencies (time to first
token, inter-token latency, queue wait) are observed as the events of a request arrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psutil
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from llmserve.ops.stats import CacheSnapshot, EngineStats, KvSnapshot, ModelStats, ReplicaStats
from llmserve.ops.stats import per_model as models_of

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
# Seconds from arrival to the first generated token: a cached prompt on a GPU to a long prefill
# behind a queue on a CPU.
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds between two generated tokens of one request: thousands of tokens/s to a few.
ITL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5)
# Seconds a request waited for a sequence slot: none at all to minutes behind a full queue.
QUEUE_WAIT_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# How long a sampled process number (RSS) or a scrape body of unchanged counts is reused. A probe
# or scraper polling thousands of times a second then costs a dictionary lookup, not a /proc
# read and a full encode each time; nobody reads RSS or CPU seconds at a finer grain.
SAMPLE_INTERVAL_S = 1.0


class CacheCollector:
    """The prefix cache's counters, read from the engine's last snapshot at scrape time.

    The engine owns the counts (the worker thread bumps them); a custom collector exposes
    them as true counters without mirroring every increment into prometheus_client.
    """

    def __init__(self) -> None:
        self.snapshots: Sequence[tuple[str, CacheSnapshot]] = ()  # by model

    def collect(self) -> Iterator[Metric]:
        for name, doc, attribute in (
            ("llm_engine_cache_hits", "Prompts that reused cached KV.", "hits"),
            ("llm_engine_cache_misses", "Prompts computed from scratch.", "misses"),
            (
                "llm_engine_cache_prompt_tokens_saved",
                "Prompt tokens whose KV was reused instead of computed.",
                "tokens_saved",
            ),
        ):
            counter = CounterMetricFamily(name, doc, labels=["model"])
            for model, s in self.snapshots:
                counter.add_metric([model], getattr(s, attribute))
            yield counter
        evictions = CounterMetricFamily(
            "llm_engine_cache_evictions", "Entries evicted, by tier.", labels=["model", "tier"]
        )
        size = GaugeMetricFamily(
            "llm_engine_cache_bytes", "Bytes of cached KV, by tier.", labels=["model", "tier"]
        )
        entries = GaugeMetricFamily(
            "llm_engine_cache_entries", "Cached entries, by tier.", labels=["model", "tier"]
        )
        for model, s in self.snapshots:
            for tier in ("ram", "disk"):
                evictions.add_metric([model, tier], s.evictions.get(tier, 0))
                size.add_metric([model, tier], s.bytes.get(tier, 0))
                entries.add_metric([model, tier], s.entries.get(tier, 0))
        yield from (evictions, size, entries)


class KvCollector:
    """KV-cache utilisation and cache layout per model, in the semantics of the Gateway API
    Inference Extension's model server protocol (what its endpoint picker scores on).

    ``llm_engine_kv_cache_usage_ratio``: cells held by running requests over the context's
    cells, 0-1 (vLLM's kv_cache_usage_perc). ``llm_engine_cache_config_info``: an info gauge
    (always 1) whose labels carry the layout: llama.cpp allocates KV per token, so
    ``block_size`` is 1 and ``num_blocks`` the context's cells. A model without a context
    (not loaded) reports utilisation 0 and no info series.
    """

    def __init__(self) -> None:
        self.snapshots: Sequence[tuple[str, KvSnapshot]] = ()  # by model

    def collect(self) -> Iterator[Metric]:
        usage = GaugeMetricFamily(
            "llm_engine_kv_cache_usage_ratio",
            "KV cells held by running requests over the context's cells (0-1).",
            labels=["model"],
        )
        info = GaugeMetricFamily(
            "llm_engine_cache_config_info",
            "KV cache layout: block_size tokens per block, num_blocks blocks (value always 1).",
            labels=["model", "block_size", "num_blocks"],
        )
        for model, kv in self.snapshots:
            usage.add_metric([model], kv.utilisation)
            if kv.cells:
                info.add_metric([model, "1", str(kv.cells)], 1)
        yield from (usage, info)


class SpecCollector:
    """Speculative decoding per model: tokens drafted, accepted, and the acceptance rate
    (llama-server names its counters ``spec_decode_*`` too), from the last snapshot."""

    def __init__(self) -> None:
        self.models: Sequence[ModelStats] = ()

    def collect(self) -> Iterator[Metric]:
        drafted = CounterMetricFamily(
            "llm_engine_spec_decode_draft_tokens",
            "Tokens drafted by speculative decoding.",
            labels=["model"],
        )
        accepted = CounterMetricFamily(
            "llm_engine_spec_decode_accepted_tokens",
            "Drafted tokens the model accepted (each saved one decode step).",
            labels=["model"],
        )
        rate = GaugeMetricFamily(
            "llm_engine_spec_decode_acceptance_rate",
            "Accepted over drafted tokens since start (0 before any draft).",
            labels=["model"],
        )
        for m in self.models:
            drafted.add_metric([m.id], m.draft_tokens)
            accepted.add_metric([m.id], m.draft_accepted)
            rate.add_metric([m.id], m.draft_accepted / m.draft_tokens if m.draft_tokens else 0.0)
        yield from (drafted, accepted, rate)


class ReplicaCollector:
    """Running and waiting requests of each llama context of each loaded model.

    The per-model gauges stay the sums (their label set is a contract of dashboards, alerts
    and the endpoint picker); these add the ``replica`` label beside them. A model not loaded
    has no replica series.
    """

    def __init__(self) -> None:
        self.snapshots: Sequence[tuple[str, Sequence[ReplicaStats]]] = ()  # by model

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "llm_engine_replica_requests_running",
            "Requests holding a sequence slot of one replica (llama context) of a model.",
            labels=["model", "replica"],
        )
        waiting = GaugeMetricFamily(
            "llm_engine_replica_requests_waiting",
            "Requests queued for a sequence slot of one replica (llama context) of a model.",
            labels=["model", "replica"],
        )
        for model, replicas in self.snapshots:
            for replica in replicas:
                running.add_metric([model, str(replica.index)], replica.running)
                waiting.add_metric([model, str(replica.index)], replica.waiting)
        yield from (running, waiting)


class ModelCollector:
    """Loads and unloads of the models of a registry, from the engine's last snapshot.

    Empty for an engine that serves one model without a registry (tests' FakeEngine).
    """

    def __init__(self) -> None:
        self.models: Sequence[ModelStats] = ()

    def collect(self) -> Iterator[Metric]:
        if not self.models:
            return
        loads = CounterMetricFamily(
            "llm_engine_model_loads", "Model loads that finished.", labels=["model"]
        )
        failures = CounterMetricFamily(
            "llm_engine_model_load_failures", "Model loads that failed.", labels=["model"]
        )
        unloads = CounterMetricFamily(
            "llm_engine_model_unloads",
            "Model unloads, by reason: idle (keep_alive) or lru (room for another model).",
            labels=["model", "reason"],
        )
        loaded = GaugeMetricFamily(
            "llm_engine_model_loaded", "1 while the model is in memory.", labels=["model"]
        )
        for m in self.models:
            loads.add_metric([m.id], m.loads)
            failures.add_metric([m.id], m.load_failures)
            for reason in ("idle", "lru"):
                unloads.add_metric([m.id, reason], m.unloads.get(reason, 0))
            loaded.add_metric([m.id], int(m.loaded))
        total = GaugeMetricFamily("llm_engine_models_loaded", "Models in memory.")
        total.add_metric([], sum(int(m.loaded) for m in self.models))
        yield from (loads, failures, unloads, loaded, total)


class Metrics:
    """The collectors of one app, plus the request count /health reports."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        process_collectors: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        sample_interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        self.registry = registry
        self._process = psutil.Process()
        self._total_requests = 0
        self._monotonic = monotonic
        self._sample_interval_s = sample_interval_s
        self._rss: tuple[float, int] | None = None  # (taken at, bytes)
        # Bumped by every observation: a scrape body is reused only while it stays the same.
        self._version = 0
        self._scrape: tuple[Any, bytes, str] | None = None  # (key, body, content type)
        self._scrape_at = 0.0
        # prometheus_client's labels() validates and hashes its arguments under a lock on
        # every call; the children of a label set never change, so each is looked up once.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._model_children: dict[tuple[str, str], Any] = {}
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
            ("model",),
            registry=registry,
        )
        self.requests_waiting = Gauge(
            "llm_engine_requests_waiting",
            "Requests queued for a sequence slot.",
            ("model",),
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "llm_engine_time_to_first_token_seconds",
            "Time from a request's arrival to its first generated token.",
            ("model",),
            buckets=TTFT_BUCKETS_S,
            registry=registry,
        )
        self.inter_token_latency = Histogram(
            "llm_engine_inter_token_latency_seconds",
            "Time between two generated tokens of one request.",
            ("model",),
            buckets=ITL_BUCKETS_S,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "llm_engine_queue_wait_seconds",
            "Time a request waited for a sequence slot.",
            ("model",),
            buckets=QUEUE_WAIT_BUCKETS_S,
            registry=registry,
        )
        self.cache = CacheCollector()
        registry.register(self.cache)
        self.kv = KvCollector()
        registry.register(self.kv)
        self.replicas = ReplicaCollector()
        registry.register(self.replicas)
        self.model_loads = ModelCollector()
        registry.register(self.model_loads)
        self.speculation = SpecCollector()
        registry.register(self.speculation)
        if process_collectors and registry is not REGISTRY:
            # The stock process/GC/platform metrics live on the global registry; an app with
            # its own registry still wants them on its /metrics.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

    def initialise(self, *, models: Sequence[str], endpoints: Sequence[str]) -> None:
        """Create the series of every label set known at start, at zero.

        A labelled collector has no series until its first observation, so a fresh server's
        dashboards would show no data and ``absent()`` alerts would fire. The models are
        every configured one (loaded or not); the endpoints are the counted /v1 routes. Of
        the request counter's statuses only 200 is known ahead: the others appear when sent.
        """
        for model in models:
            for endpoint in endpoints:
                self.requests.labels(endpoint=endpoint, model=model, status="200")
                self.request_duration.labels(endpoint=endpoint, model=model)
            for per_model in (
                self.prompt_tokens,
                self.generation_tokens,
                self.requests_running,
                self.requests_waiting,
                self.time_to_first_token,
                self.inter_token_latency,
                self.queue_wait,
            ):
                per_model.labels(model=model)

    @property
    def total_requests(self) -> int:
        return self._total_requests

    def observe_request(
        self, *, endpoint: str, model: str, status: int, duration_ms: float
    ) -> None:
        """Count one answered request and its duration."""
        self._total_requests += 1
        self._version += 1
        key = (endpoint, model, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(endpoint=endpoint, model=model, status=str(status)),
                self.request_duration.labels(endpoint=endpoint, model=model),
            )
        children[0].inc()
        children[1].observe(duration_ms)

    def _per_model(self, metric: Any, name: str, model: str) -> Any:
        """The child of a per-model collector ``name`` for ``model``, looked up once."""
        child = self._model_children.get((name, model))
        if child is None:
            child = self._model_children[name, model] = metric.labels(model=model)
        return child

    def observe_tokens(self, *, model: str, prompt: int, generated: int) -> None:
        """Count the tokens of one request."""
        self._version += 1
        if prompt:
            self._per_model(self.prompt_tokens, "prompt", model).inc(prompt)
        if generated:
            self._per_model(self.generation_tokens, "generated", model).inc(generated)

    def observe_first_token(self, *, model: str, seconds: float) -> None:
        """Record one request's time to first token."""
        self._version += 1
        self._per_model(self.time_to_first_token, "ttft", model).observe(seconds)

    def observe_inter_token(self, *, model: str, seconds: float, tokens: int = 1) -> None:
        """Record ``tokens`` gaps of ``seconds`` each between generated tokens."""
        self._version += 1
        histogram = self._per_model(self.inter_token_latency, "itl", model)
        for _ in range(tokens):
            histogram.observe(seconds)

    def observe_queue_wait(self, *, model: str, seconds: float) -> None:
        """Record how long one request waited for a slot."""
        self._version += 1
        self._per_model(self.queue_wait, "queue_wait", model).observe(seconds)

    def rss_bytes(self) -> int:
        """The process's resident set size, read at most once per sample interval."""
        now = self._monotonic()
        if self._rss is None or now - self._rss[0] >= self._sample_interval_s:
            self._rss = (now, int(self._process.memory_info().rss))
        return self._rss[1]

    def refresh(self, stats: EngineStats, *, model: str) -> None:
        """Set the gauges that mirror the engine and the process to their values now."""
        self.cache_hit_rate.set(stats.cache_hit_rate)
        # A registry reports each of its models; a one-model engine is its own one model.
        per_model = models_of(stats, model)
        for m in per_model:
            self.requests_running.labels(model=m.id).set(m.running)
            self.requests_waiting.labels(model=m.id).set(m.waiting)
        self.cache.snapshots = [(m.id, m.cache) for m in per_model]
        self.kv.snapshots = [(m.id, m.kv) for m in per_model]
        self.replicas.snapshots = [(m.id, m.replicas) for m in per_model]
        self.model_loads.models = stats.models
        self.speculation.models = per_model
        self.memory_usage.set(self.rss_bytes())

    def exposition(
        self, stats: EngineStats, accept: str | None, *, model: str
    ) -> tuple[bytes, str]:
        """The scrape body in the format ``accept`` asks for, and its content type.

        The last body is served again while nothing it shows can have changed: no observation
        since, the same engine snapshot and model, and younger than the sample interval (the
        process collectors' CPU seconds and GC counts move on their own; they may lag that long).
        """
        encoder, content_type = choose_encoder(accept or "")
        now = self._monotonic()
        key = (content_type, self._version, model, stats)
        cached = self._scrape
        if (
            cached is not None
            and now - self._scrape_at < self._sample_interval_s
            and cached[0] == key
        ):
            return cached[1], cached[2]
        self.refresh(stats, model=model)
        body = encoder(self.registry)
        self._scrape, self._scrape_at = (key, body, content_type), now
        return body, content_type
