"""conf/: the Grafana dashboard, the alerts and the README name only metrics the server exposes.

promtool and a real Prometheus check the same files in tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from llmserve.engine.fake import FakeEngine
from llmserve.engine.protocol import ReplicaStats
from llmserve.engine.registry import ModelRegistry, ModelSpec
from tests.support.doubles import fake_app

ROOT = Path(__file__).parents[2]
CONF = ROOT / "conf"
METRIC_NAME = re.compile(r"\bllm_engine_[a-z_]+")
# Suffixes Prometheus adds to a histogram's or a counter's series names.
SERIES_SUFFIXES = ("_bucket", "_count", "_sum")


def dashboard() -> dict[str, Any]:
    return json.loads((CONF / "grafana-dashboard.json").read_text())


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", ())]


@pytest.fixture(name="exposed", scope="module")
def fixture_exposed() -> set[str]:
    """The llm_engine_* series names of a server that has answered one request."""
    # Behind a registry, as `llmserve serve` serves even one model: its load metrics too; with
    # a replica, as a loaded model has, for the per-replica series.
    engine = FakeEngine(queue_wait_s=0.1, replicas=(ReplicaStats(index=0),))
    models = ModelRegistry([ModelSpec(engine, preload=True)])
    with TestClient(fake_app(models)) as client:
        client.post("/v1/completions", json={"prompt": "x"})
        text = client.get("/metrics").text
    # *_created series are switched off by `llmserve serve` (cli.py), not in this test process.
    return {name for name in METRIC_NAME.findall(text) if not name.endswith("_created")}


def test_dashboard_panels_have_unique_ids_and_queries() -> None:
    """Every panel has its own id; every graph panel queries Prometheus."""
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"] for t in panel["targets"])


def test_dashboard_queries_only_exposed_metrics(exposed: set[str]) -> None:
    """Each llm_engine_* name in a dashboard query is a series /metrics really has."""
    named = {name for expr in dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    assert named, "the dashboard queries no llm_engine_* metric"
    assert named <= exposed, named - exposed


def test_dashboard_shows_every_serving_metric(exposed: set[str]) -> None:
    """No llm_engine_* metric is left off the dashboard."""
    named = {name for expr in dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    families = {_family(name) for name in exposed}
    assert families <= {_family(name) for name in named}


def test_alerts_use_only_exposed_metrics(exposed: set[str]) -> None:
    """Each llm_engine_* name in conf/alerts.yml is a series /metrics really has."""
    named = set(METRIC_NAME.findall((CONF / "alerts.yml").read_text()))
    assert named <= exposed, named - exposed


def test_readme_lists_every_metric(exposed: set[str]) -> None:
    """The README's Monitoring section names every llm_engine_* metric family."""
    readme = (ROOT / "README.md").read_text()
    monitoring = readme.split("## Monitoring", 1)[1].split("\n## ", 1)[0]
    listed = {_family(name) for name in METRIC_NAME.findall(monitoring)}
    assert {_family(name) for name in exposed} <= listed


def _family(name: str) -> str:
    for suffix in SERIES_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name
