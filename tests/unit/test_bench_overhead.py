"""perf/overhead.py: wrk's output read into numbers, the completion script, the workload wiring."""

from __future__ import annotations

import http.server
import json
import math
import threading
from pathlib import Path

import pytest

from perf import overhead
from perf.overhead import (
    WrkResult,
    completion_script,
    duration_ms,
    parse_wrk,
    route_exists,
    summarize_overhead,
)
from perf.servers import OVERHEAD, ServerConfig, llama_server_spec, serves
from perf.table import TableShape, rows_for

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/health
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.12ms    1.40ms  25.32ms   80.11%
    Req/Sec     5.16k   512.33     6.10k    71.00%
  Latency Distribution
     50%    2.90ms
     75%    3.60ms
     90%    4.50ms
     99%   12.31ms
  102734 requests in 10.00s, 19.01MB read
Requests/sec:  10271.65
Transfer/sec:      1.90MB
"""

WRK_ERRORS = """\
  Latency Distribution
     50%  812.00us
     99%    1.91s
  48 requests in 8.00s, 9.01KB read
  Socket errors: connect 0, read 1, write 0, timeout 8
  Non-2xx or 3xx responses: 3
Requests/sec:      6.05
"""


def test_wrk_output_gives_rate_percentiles_and_count() -> None:
    """Requests/sec, p50, p99 and the request count come out of wrk --latency's report."""
    result = parse_wrk(WRK_OUTPUT, "GET /health", 32)
    assert result.requests_per_s == pytest.approx(10271.65)
    assert result.p50_ms == pytest.approx(2.9)
    assert result.p99_ms == pytest.approx(12.31)
    assert result.requests == 102734
    assert result.ok


def test_wrk_errors_and_non_2xx_make_a_run_not_ok() -> None:
    """Socket errors (timeouts included) and non-2xx answers are counted and fail the run."""
    result = parse_wrk(WRK_ERRORS, "POST /v1/completions (1 token)", 8)
    assert (result.socket_errors, result.non_2xx) == (9, 3)
    assert result.p50_ms == pytest.approx(0.812)
    assert result.p99_ms == pytest.approx(1910.0)
    assert not result.ok


def test_wrk_output_without_a_rate_is_an_error() -> None:
    """A wrk that failed to run (no Requests/sec line) is reported, not read as zero."""
    with pytest.raises(ValueError, match="Requests/sec"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n", "GET /ping", 32)


@pytest.mark.parametrize(
    ("text", "ms"), [("640.00us", 0.64), ("1.5ms", 1.5), ("2.00s", 2000.0), ("1.00m", 60000.0)]
)
def test_wrk_durations_are_read_in_milliseconds(text: str, ms: float) -> None:
    """wrk's us / ms / s / m suffixes all become milliseconds."""
    assert duration_ms(text) == pytest.approx(ms)


def test_completion_script_posts_a_one_token_completion_with_the_peer_extras() -> None:
    """The Lua script sends a JSON body with max_tokens 1 and the server's extra_body."""
    script = completion_script("m", {"repeat_penalty": 1.0})
    assert 'wrk.method = "POST"' in script
    body_literal = script.split("wrk.body = ", 1)[1].strip()
    body = json.loads(json.loads(body_literal))
    assert body == {
        "model": "m",
        "prompt": "Hello",
        "max_tokens": 1,
        "temperature": 0,
        "repeat_penalty": 1.0,
    }


def test_overhead_runs_on_llmserve_and_llama_server_only() -> None:
    """The one-request-at-a-time llama_cpp.server has no probe routes to compare."""
    assert serves("llmserve", OVERHEAD)
    assert serves("llama_server", OVERHEAD)
    assert not serves("llama_cpp_server", OVERHEAD)


def _result(name: str, rate: float, p99: float, *, non_2xx: int = 0) -> WrkResult:
    return WrkResult(name, 32, 1000, rate, 1.0, p99, non_2xx=non_2xx)


def test_overhead_summary_takes_medians_over_runs_of_good_results() -> None:
    """Requests/s and p99 are medians over the runs; a run with errors does not count."""
    runs = [
        [_result("GET /health", 9000.0, 6.0)],
        [_result("GET /health", 11000.0, 8.0)],
        [_result("GET /health", 1.0, 900.0, non_2xx=5)],
    ]
    summary = summarize_overhead(runs)
    assert summary["overhead.health.requests_per_s"] == pytest.approx(10000.0)
    assert summary["overhead.health.p99_ms"] == pytest.approx(7.0)
    assert math.isnan(summary["overhead.ping.requests_per_s"])  # never measured: NaN, not 0


def test_overhead_rows_appear_in_the_table_when_the_workload_ran() -> None:
    """Each measured request gets a requests/s and a p99 row, only with the overhead workload."""
    keys = [row.key for row in rows_for(TableShape(workloads=(OVERHEAD,)))]
    assert "overhead.models.requests_per_s" in keys
    assert "overhead.completion.p99_ms" in keys
    assert not any(k.startswith("overhead.") for k in (r.key for r in rows_for(TableShape())))


def test_completions_are_measured_after_a_discarded_warm_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh server's first requests are its cold start: wrk warms it up first, unmeasured."""
    calls: list[tuple[str, float]] = []

    def fake_wrk(
        wrk: str, url: str, name: str, connections: int, seconds: float, script: object = None
    ) -> WrkResult:
        calls.append((name, seconds))
        return parse_wrk(WRK_OUTPUT, name, connections)

    monkeypatch.setattr(overhead, "run_wrk", fake_wrk)
    monkeypatch.setattr(overhead, "route_exists", lambda url: True)
    results = overhead.run_overhead("wrk", "http://127.0.0.1:1", "m", {}, 8.0, lambda line: None)
    names = [name for name, _ in calls]
    assert names[-2:] == ["warm-up", "POST /v1/completions (1 token)"]
    assert calls[-2][1] == overhead.COMPLETION_WARMUP_S
    assert "warm-up" not in [r.name for r in results]
    assert results[-1].name == "POST /v1/completions (1 token)"


def test_a_route_the_server_does_not_have_is_skipped_not_failed() -> None:
    """llama-server answers /ping with 404: the route is left out instead of failing the run."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert route_exists(base + "/health")
        assert not route_exists(base + "/ping")
    finally:
        server.shutdown()
        server.server_close()


def test_llama_server_is_started_with_its_metrics_route() -> None:
    """llama-server serves /metrics only with --metrics: without it the scrape row is 404s."""
    config = ServerConfig(Path("m.gguf"), 2, 4096, 8, llama_server_bin=Path("llama-server"))
    spec = llama_server_spec(config, 8080, OVERHEAD)
    assert "--metrics" in spec.command
