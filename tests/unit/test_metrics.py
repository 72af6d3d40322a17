"""Metrics: the collectors on an injected registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from llmserve.engine.protocol import EngineStats, KvSnapshot, ModelStats, ReplicaStats
from llmserve.ops.metrics import Metrics


@pytest.fixture(name="registry")
def fixture_registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture(name="metrics")
def fixture_metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_observed_request_is_counted_with_its_labels(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """observe_request adds one to the endpoint/model/status series."""
    metrics.observe_request(endpoint="/v1/completions", model="m", status=200, duration_ms=12.0)
    labels = {"endpoint": "/v1/completions", "model": "m", "status": "200"}
    assert value(registry, "llm_engine_requests_total", **labels) == 1.0


def test_total_requests_counts_every_observed_request(metrics: Metrics) -> None:
    """total_requests, for /health, is the sum over all series."""
    metrics.observe_request(endpoint="/a", model="m", status=200, duration_ms=1.0)
    metrics.observe_request(endpoint="/b", model="m", status=500, duration_ms=1.0)
    assert metrics.total_requests == 2


def test_duration_is_observed_in_milliseconds(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A 40 ms request falls in the 50 ms bucket, not the 25 ms one."""
    metrics.observe_request(endpoint="/e", model="m", status=200, duration_ms=40.0)
    bucket = "llm_engine_request_duration_ms_bucket"
    assert value(registry, bucket, endpoint="/e", model="m", le="25.0") == 0.0
    assert value(registry, bucket, endpoint="/e", model="m", le="50.0") == 1.0


def test_tokens_are_counted_per_model(metrics: Metrics, registry: CollectorRegistry) -> None:
    """Prompt and generated tokens accumulate in their counters."""
    metrics.observe_tokens(model="m", prompt=10, generated=3)
    metrics.observe_tokens(model="m", prompt=5, generated=2)
    assert value(registry, "llm_engine_prompt_tokens_total", model="m") == 15.0
    assert value(registry, "llm_engine_generation_tokens_total", model="m") == 5.0


def test_refresh_sets_gauges_from_engine_stats(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Running, waiting (per model) and cache hit rate mirror the engine's snapshot."""
    metrics.refresh(EngineStats(running=3, waiting=2, cache_hit_rate=0.5, loaded=True), model="m")
    assert value(registry, "llm_engine_requests_running", model="m") == 3.0
    assert value(registry, "llm_engine_requests_waiting", model="m") == 2.0
    assert value(registry, "llm_engine_cache_hit_rate") == 0.5


def test_refresh_sets_memory_to_the_process_rss(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """The memory gauge holds the process RSS in bytes."""
    metrics.refresh(EngineStats(), model="m")
    memory = value(registry, "llm_engine_memory_usage_bytes")
    assert memory is not None
    assert memory > 1024 * 1024


def test_two_apps_metrics_do_not_clash() -> None:
    """Each Metrics on its own registry registers the same names without a duplicate error."""
    Metrics(CollectorRegistry())
    Metrics(CollectorRegistry())


def test_process_collectors_are_added_to_a_private_registry(registry: CollectorRegistry) -> None:
    """A private registry still exposes the stock process metrics."""
    Metrics(registry)
    assert value(registry, "process_resident_memory_bytes") is not None


def test_exposition_speaks_openmetrics_when_asked(metrics: Metrics) -> None:
    """A scraper that accepts OpenMetrics gets it, with its content type and EOF marker."""
    body, content_type = metrics.exposition(
        EngineStats(), "application/openmetrics-text; version=1.0.0", model="m"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_time_to_first_token_is_a_histogram_per_model(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A 0.3 s first token falls in the 0.5 s bucket of its model, not the 0.25 s one."""
    metrics.observe_first_token(model="m", seconds=0.3)
    bucket = "llm_engine_time_to_first_token_seconds_bucket"
    assert value(registry, bucket, model="m", le="0.25") == 0.0
    assert value(registry, bucket, model="m", le="0.5") == 1.0


def test_inter_token_latency_counts_every_token(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Three tokens that arrived together are three observations of the shared gap."""
    metrics.observe_inter_token(model="m", seconds=0.02, tokens=3)
    assert value(registry, "llm_engine_inter_token_latency_seconds_count", model="m") == 3.0
    assert value(registry, "llm_engine_inter_token_latency_seconds_sum", model="m") == 0.06


def test_queue_wait_is_a_histogram_per_model(metrics: Metrics, registry: CollectorRegistry) -> None:
    """A queue wait is observed in seconds under its model."""
    metrics.observe_queue_wait(model="m", seconds=2.0)
    assert value(registry, "llm_engine_queue_wait_seconds_count", model="m") == 1.0
    assert value(registry, "llm_engine_queue_wait_seconds_bucket", model="m", le="2.5") == 1.0


def test_prefix_cache_counters_come_from_the_engine_snapshot() -> None:
    """Cache hits, misses, saved tokens, evictions, bytes and entries by tier are exported."""
    from prometheus_client import CollectorRegistry, generate_latest

    from llmserve.engine.protocol import CacheSnapshot, EngineStats
    from llmserve.ops.metrics import Metrics

    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    snapshot = CacheSnapshot(
        hits=3,
        misses=2,
        tokens_saved=900,
        evictions={"ram": 4, "disk": 1},
        bytes={"ram": 1000, "disk": 5000},
        entries={"ram": 2, "disk": 7},
    )
    metrics.refresh(EngineStats(cache=snapshot), model="m")
    text = generate_latest(metrics.registry).decode()
    assert 'llm_engine_cache_hits_total{model="m"} 3.0' in text
    assert 'llm_engine_cache_misses_total{model="m"} 2.0' in text
    assert 'llm_engine_cache_prompt_tokens_saved_total{model="m"} 900.0' in text
    assert 'llm_engine_cache_evictions_total{model="m",tier="disk"} 1.0' in text
    assert 'llm_engine_cache_bytes{model="m",tier="ram"} 1000.0' in text
    assert 'llm_engine_cache_entries{model="m",tier="disk"} 7.0' in text


def test_initialise_creates_every_known_series_at_zero(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Each model's (and model x endpoint's) series exist at zero before any request."""
    metrics.initialise(models=["a", "b"], endpoints=["/v1/completions", "/v1/chat/completions"])
    for model in ("a", "b"):
        for endpoint in ("/v1/completions", "/v1/chat/completions"):
            pair = {"endpoint": endpoint, "model": model}
            assert value(registry, "llm_engine_request_duration_ms_count", **pair) == 0.0
            assert value(registry, "llm_engine_requests_total", **pair, status="200") == 0.0
        for name in (
            "llm_engine_time_to_first_token_seconds_count",
            "llm_engine_inter_token_latency_seconds_count",
            "llm_engine_queue_wait_seconds_count",
            "llm_engine_prompt_tokens_total",
            "llm_engine_generation_tokens_total",
            "llm_engine_requests_running",
            "llm_engine_requests_waiting",
        ):
            assert value(registry, name, model=model) == 0.0, name


def test_initialised_series_count_later_observations(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """An initialised series is the same one a request then adds to."""
    metrics.initialise(models=["m"], endpoints=["/v1/completions"])
    metrics.observe_request(endpoint="/v1/completions", model="m", status=200, duration_ms=3.0)
    labels = {"endpoint": "/v1/completions", "model": "m"}
    assert value(registry, "llm_engine_request_duration_ms_count", **labels) == 1.0
    assert value(registry, "llm_engine_requests_total", **labels, status="200") == 1.0


def test_kv_cache_usage_is_cells_in_use_over_context_cells(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """llm_engine_kv_cache_usage_ratio is used/cells per model; 0 for a model without a context."""
    stats = EngineStats(
        models=(
            ModelStats(id="a", loaded=True, kv=KvSnapshot(used=1024, cells=4096)),
            ModelStats(id="b"),
        )
    )
    metrics.refresh(stats, model="a")
    assert value(registry, "llm_engine_kv_cache_usage_ratio", model="a") == 0.25
    assert value(registry, "llm_engine_kv_cache_usage_ratio", model="b") == 0.0


def test_cache_config_info_labels_one_token_blocks(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """llm_engine_cache_config_info carries block_size 1 and num_blocks = the context's cells,
    and has no series for a model that is not loaded."""
    stats = EngineStats(loaded=True, kv=KvSnapshot(used=0, cells=8192))
    metrics.refresh(stats, model="m")
    labels = {"model": "m", "block_size": "1", "num_blocks": "8192"}
    assert value(registry, "llm_engine_cache_config_info", **labels) == 1.0
    metrics.refresh(EngineStats(), model="m")
    assert value(registry, "llm_engine_cache_config_info", **labels) is None


def test_kv_utilisation_is_capped_at_one() -> None:
    """A snapshot read mid-step cannot report more than a full context."""
    assert KvSnapshot(used=5000, cells=4096).utilisation == 1.0
    assert KvSnapshot(used=5, cells=0).utilisation == 0.0


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rss_is_sampled_once_per_interval(registry: CollectorRegistry) -> None:
    """rss_bytes reads /proc again only once the sample interval has passed."""
    clock = FakeMonotonic()
    metrics = Metrics(registry, monotonic=clock, sample_interval_s=1.0)
    first = metrics.rss_bytes()
    reads: list[int] = []
    real = metrics._process.memory_info
    metrics._process.memory_info = lambda: reads.append(1) or real()  # type: ignore[method-assign]
    clock.now += 0.5
    assert metrics.rss_bytes() == first
    assert reads == []
    clock.now += 0.6
    assert metrics.rss_bytes() > 0
    assert reads == [1]


def test_scrape_body_is_reused_while_nothing_changed(registry: CollectorRegistry) -> None:
    """A second scrape within the interval, with no observation between, is the same body."""
    clock = FakeMonotonic()
    metrics = Metrics(registry, monotonic=clock)
    first, _ = metrics.exposition(EngineStats(), None, model="m")
    assert metrics.exposition(EngineStats(), None, model="m")[0] is first


def test_scrape_shows_an_observation_made_since_the_last_scrape(
    registry: CollectorRegistry,
) -> None:
    """An observation invalidates the reused body at once, within the interval."""
    clock = FakeMonotonic()
    metrics = Metrics(registry, monotonic=clock)
    metrics.exposition(EngineStats(), None, model="m")
    metrics.observe_request(endpoint="/v1/completions", model="m", status=200, duration_ms=3.0)
    body, _ = metrics.exposition(EngineStats(), None, model="m")
    assert (
        b'llm_engine_requests_total{endpoint="/v1/completions",model="m",status="200"} 1.0' in body
    )


def test_scrape_shows_a_changed_engine_snapshot(registry: CollectorRegistry) -> None:
    """A different engine snapshot (e.g. a request now running) is encoded afresh."""
    clock = FakeMonotonic()
    metrics = Metrics(registry, monotonic=clock)
    metrics.exposition(EngineStats(), None, model="m")
    body, _ = metrics.exposition(EngineStats(running=3, loaded=True), None, model="m")
    assert b'llm_engine_requests_running{model="m"} 3.0' in body


def test_scrape_body_is_encoded_afresh_after_the_interval(registry: CollectorRegistry) -> None:
    """Past the sample interval the process metrics are read again, even with no observation."""
    clock = FakeMonotonic()
    metrics = Metrics(registry, monotonic=clock, sample_interval_s=1.0)
    first, _ = metrics.exposition(EngineStats(), None, model="m")
    clock.now += 1.5
    assert metrics.exposition(EngineStats(), None, model="m")[0] is not first


def test_repeated_observations_accumulate_on_the_cached_child(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Label children looked up once still count every observation of their series."""
    for _ in range(3):
        metrics.observe_request(endpoint="/v1/x", model="m", status=429, duration_ms=1.0)
        metrics.observe_tokens(model="m", prompt=2, generated=5)
    labels = {"endpoint": "/v1/x", "model": "m", "status": "429"}
    assert value(registry, "llm_engine_requests_total", **labels) == 3.0
    assert value(registry, "llm_engine_generation_tokens_total", model="m") == 15.0
    assert value(registry, "llm_engine_request_duration_ms_count", endpoint="/v1/x", model="m") == 3


def test_speculative_decoding_counters_come_from_the_engine_snapshot() -> None:
    """Drafted and accepted tokens and the acceptance rate are exported per model."""
    from prometheus_client import CollectorRegistry, generate_latest

    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    metrics.refresh(EngineStats(draft_tokens=40, draft_accepted=30), model="m")
    text = generate_latest(metrics.registry).decode()
    assert 'llm_engine_spec_decode_draft_tokens_total{model="m"} 40.0' in text
    assert 'llm_engine_spec_decode_accepted_tokens_total{model="m"} 30.0' in text
    assert 'llm_engine_spec_decode_acceptance_rate{model="m"} 0.75' in text


def test_each_replica_has_its_running_and_waiting_series(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """llm_engine_replica_requests_* carry a replica label; the per-model gauges stay sums."""
    replicas = (ReplicaStats(index=0, running=3, waiting=2), ReplicaStats(index=1, running=1))
    metrics.refresh(EngineStats(running=4, waiting=2, loaded=True, replicas=replicas), model="m")
    running = "llm_engine_replica_requests_running"
    assert value(registry, running, model="m", replica="0") == 3.0
    assert value(registry, running, model="m", replica="1") == 1.0
    assert value(registry, "llm_engine_replica_requests_waiting", model="m", replica="0") == 2.0
    assert value(registry, "llm_engine_requests_running", model="m") == 4.0
    assert value(registry, "llm_engine_requests_waiting", model="m") == 2.0


def test_a_registrys_models_report_their_own_replicas(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """With several models, each model's replicas are labelled with that model; an unloaded
    model has no replica series."""
    loaded = ModelStats(id="a", loaded=True, running=1, replicas=(ReplicaStats(0, running=1),))
    stats = EngineStats(running=1, loaded=True, models=(loaded, ModelStats(id="b")))
    metrics.refresh(stats, model="a")
    assert value(registry, "llm_engine_replica_requests_running", model="a", replica="0") == 1.0
    assert value(registry, "llm_engine_replica_requests_running", model="b", replica="0") is None
