"""conf/ against the real Prometheus tools: promtool checks, and a live scrape of llmserve.

Needs Debian's ``prometheus`` package (``prometheus`` and ``promtool`` on PATH; .ci/run installs
it). Without it these tests skip on a workstation and fail in CI (``CI`` set).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmserve.engine.fake import FakeEngine
from tests.support.doubles import fake_app
from tests.support.server import free_port, serve_app

CONF = Path(__file__).parents[2] / "conf"
SCRAPE_TIMEOUT_S = 60.0
SHIPPED_TARGET = '["localhost:8080"]'


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(name="promtool", scope="module")
def fixture_promtool() -> str:
    return _tool("promtool")


@pytest.fixture(name="prometheus_bin", scope="module")
def fixture_prometheus_bin() -> str:
    return _tool("prometheus")


def run_promtool(promtool: str, *args: str | Path) -> str:
    result = subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def dashboard_queries() -> list[str]:
    """The dashboard's PromQL, with Grafana's variables replaced by what they stand for."""
    dashboard = json.loads((CONF / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    return [
        re.sub(r"\$(job|instance|model)\b", ".*", q.replace("$__rate_interval", "1m"))
        for q in queries
    ]


def test_prometheus_config_is_valid(promtool: str) -> None:
    """promtool check config accepts conf/prometheus.yml (and the rule file it loads)."""
    run_promtool(promtool, "check", "config", CONF / "prometheus.yml")


def test_alert_rules_are_valid(promtool: str) -> None:
    """promtool check rules accepts conf/alerts.yml."""
    run_promtool(promtool, "check", "rules", CONF / "alerts.yml")


def test_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    """promtool test rules runs conf/alerts_test.yml: each alert fires when, and only when, due."""
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", CONF / "alerts_test.yml")


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Every Grafana panel query parses, checked as a recording rule by promtool."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": q}
                    for i, q in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    run_promtool(promtool, "check", "rules", path)


def scrape_config(target: str) -> str:
    """conf/prometheus.yml, pointed at ``target`` and scraping every second."""
    text = (CONF / "prometheus.yml").read_text()
    assert SHIPPED_TARGET in text
    assert "scrape_interval: 15s" in text
    return text.replace(SHIPPED_TARGET, f'["{target}"]').replace(
        "scrape_interval: 15s", "scrape_interval: 1s"
    )


@pytest.fixture(name="llmserve_url", scope="module")
def fixture_llmserve_url() -> Iterator[str]:
    """A live llmserve (over a FakeEngine) that has answered three /v1 requests."""
    with serve_app(fake_app(FakeEngine(queue_wait_s=0.05))) as base_url:
        for _ in range(3):
            httpx.post(f"{base_url}/v1/completions", json={"prompt": "x"}).raise_for_status()
        yield base_url


@pytest.fixture(name="prometheus_url", scope="module")
def fixture_prometheus_url(
    prometheus_bin: str, llmserve_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Prometheus scraping ``llmserve_url`` with conf/'s files; killed afterwards."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    (tmp_path / "prometheus.yml").write_text(scrape_config(llmserve_url.removeprefix("http://")))
    shutil.copy(CONF / "alerts.yml", tmp_path / "alerts.yml")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    """The instant vector of ``promql``; empty while Prometheus is not up or has no sample."""
    try:
        response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql})
    except httpx.TransportError:
        return []
    if response.status_code == 503:  # still starting
        return []
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def eventually_query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while not (result := query(prometheus_url, promql)):
        assert time.monotonic() < deadline, f"Prometheus has no {promql} after the deadline"
        time.sleep(0.25)
    return result


def test_prometheus_scrapes_the_request_counter(prometheus_url: str) -> None:
    """Prometheus, run on conf/prometheus.yml, reads llm_engine_requests_total back: 3 OKs."""
    # Every labelled child exists at zero from the start, so ask for the ones that counted.
    (series,) = eventually_query(prometheus_url, 'llm_engine_requests_total{status="200"} > 0')
    assert series["metric"]["endpoint"] == "/v1/completions"
    assert series["metric"]["model"] == "fake-model"
    assert series["metric"]["job"] == "llmserve"
    assert float(series["value"][1]) == 3.0


def test_prometheus_reads_the_serving_histograms(prometheus_url: str) -> None:
    """The TTFT and queue wait histograms arrive with their model label."""
    eventually_query(prometheus_url, "llm_engine_requests_total")
    for name in ("llm_engine_time_to_first_token_seconds", "llm_engine_queue_wait_seconds"):
        (series,) = query(prometheus_url, f"{name}_count")
        assert (series["metric"]["model"], float(series["value"][1])) == ("fake-model", 3.0)


def test_prometheus_evaluates_every_dashboard_query(prometheus_url: str) -> None:
    """Each Grafana panel query runs on the live data without an error."""
    eventually_query(prometheus_url, "llm_engine_requests_total")
    for promql in dashboard_queries():
        query(prometheus_url, promql)  # asserts status success
