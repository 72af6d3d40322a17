"""The chart's inference routing and queue-based scaling: InferencePool, the endpoint picker's
configuration, KEDA's ScaledObject and the custom-metric HPA.

kubernetes-validate has no schema for custom resources: these are validated with jsonschema
against the upstream CRDs checked into tests/deploy/crds (see its README for sources).
"""

from __future__ import annotations

import copy
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry

from llmserve.ops.metrics import Metrics
from llmserve.ops.stats import EngineStats, KvSnapshot
from tests.deploy.conftest import CHART, Render
from tests.deploy.manifests import container, find, kinds

CRDS = Path(__file__).with_name("crds")
GATEWAY = CHART / "values-inference-gateway.yaml"
EVERYTHING = Path(__file__).with_name("values-everything.yaml")
VALUES_FILES: list[Path | None] = [None, *sorted(CHART.glob("values-*.yaml")), EVERYTHING]
VALUES_IDS = ["default", *(p.stem for p in sorted(CHART.glob("values-*.yaml"))), "everything"]
ENGINE_LABEL = "llm-d.ai/engine-type"


def _closed(schema: Any) -> Any:
    """An openAPIV3Schema as the API server applies it: unknown fields of a structural object
    are refused (the server would prune them: a typo in a manifest would be lost silently)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if (
        "properties" in closed
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@cache
def _schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the closed schema of that version, for each checked-in CRD."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _closed(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def validate(document: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless ``document`` fits its kind's CRD."""
    schema = _schemas()[(document["apiVersion"], document["kind"])]
    jsonschema.validate(document, schema, cls=jsonschema.Draft7Validator)


def _custom(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] in {"InferencePool", "ScaledObject"}]


def _picker_config(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (config,) = [
        d for d in documents if d["kind"] == "ConfigMap" and "llmserve-plugins.yaml" in d["data"]
    ]
    return yaml.safe_load(config["data"]["llmserve-plugins.yaml"])


def test_checked_in_crds_are_the_versions_the_chart_renders() -> None:
    """tests/deploy/crds holds InferencePool v1 and ScaledObject v1alpha1."""
    assert ("inference.networking.k8s.io/v1", "InferencePool") in _schemas()
    assert ("keda.sh/v1alpha1", "ScaledObject") in _schemas()


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_rendered_custom_resources_validate_against_their_crds(
    render: Render, values: Path | None
) -> None:
    """Every InferencePool and ScaledObject the chart renders fits the upstream CRD schema."""
    for document in _custom(render(*(() if values is None else (values,)))):
        validate(document)


def test_inference_gateway_values_render_a_pool_and_a_scaled_object(render: Render) -> None:
    """values-inference-gateway.yaml: one InferencePool and one ScaledObject, both valid."""
    documents = render(GATEWAY)
    assert sorted(d["kind"] for d in _custom(documents)) == ["InferencePool", "ScaledObject"]
    assert "HorizontalPodAutoscaler" not in kinds(documents)  # KEDA makes its own


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("InferencePool", lambda d: d["spec"].update(bogus=1)),
        ("InferencePool", lambda d: d["spec"]["endpointPickerRef"].update(failureMode="Maybe")),
        ("InferencePool", lambda d: d["spec"].update(targetPorts=[])),
        ("ScaledObject", lambda d: d["spec"].update(minReplicaCount="two")),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0].pop("type")),
    ],
)
def test_crd_validation_rejects_broken_manifests(render: Render, kind: str, change: Any) -> None:
    """The CRD check is not vacuous: an unknown field, a bad enum or a missing field fails."""
    broken = copy.deepcopy(find(render(GATEWAY), kind))
    change(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_inference_pool_selects_the_deployment_pods_on_the_http_port(render: Render) -> None:
    """The pool's selector matches the pod template's labels; its port is the container's."""
    documents = render(GATEWAY)
    pool = find(documents, "InferencePool")["spec"]
    labels = find(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pool["selector"]["matchLabels"].items() <= labels.items()
    (port,) = container(documents)["ports"]
    assert pool["targetPorts"] == [{"number": port["containerPort"]}]
    assert pool["endpointPickerRef"] == {
        "kind": "Service",
        "name": "llmserve-epp",
        "port": {"number": 9002},
        "failureMode": "FailOpen",
    }


def test_endpoint_picker_service_defaults_to_the_release_name(render: Render) -> None:
    """Without endpointPicker.service the pool points at "<full name>-epp"."""
    pool = find(render(set=("inferencePool.enabled=true",)), "InferencePool")
    assert pool["spec"]["endpointPickerRef"]["name"] == "llmserve-epp"
    assert "InferencePool" not in kinds(render())


def test_pods_always_carry_the_engine_type_label(render: Render) -> None:
    """llm-d.ai/engine-type: llmserve is on the pods, not in the Deployment's selector."""
    for documents in (render(), render(GATEWAY)):
        deployment = find(documents, "Deployment")
        assert deployment["spec"]["template"]["metadata"]["labels"][ENGINE_LABEL] == "llmserve"
        assert ENGINE_LABEL not in deployment["spec"]["selector"]["matchLabels"]


def test_endpoint_picker_config_maps_its_metrics_to_exposed_llmserve_metrics(
    render: Render,
) -> None:
    """The picker's llmserve engine config names metrics a loaded llmserve really exposes,
    with the label names of its cache-config info metric."""
    config = _picker_config(render(GATEWAY))
    assert config["kind"] == "EndpointPickerConfig"
    (extractor,) = [p for p in config["plugins"] if p["type"] == "core-metrics-extractor"]
    parameters = extractor["parameters"]
    assert parameters["engineLabelKey"] == ENGINE_LABEL
    (engine,) = parameters["engineConfigs"]
    assert engine["name"] == parameters["defaultEngine"] == "llmserve"

    registry = CollectorRegistry()
    metrics = Metrics(registry, process_collectors=False)
    stats = EngineStats(running=1, loaded=True, kv=KvSnapshot(used=10, cells=100))
    metrics.refresh(stats, model="m")
    samples = {
        sample.name: sample.labels for family in registry.collect() for sample in family.samples
    }
    for key in ("queuedRequestsSpec", "runningRequestsSpec", "kvUsageSpec", "cacheInfoSpec"):
        assert engine[key] in samples, key
    info = samples[engine["cacheInfoSpec"]]
    assert info[engine["cacheBlockSizeLabelName"]] == "1"
    assert info[engine["cacheNumBlocksLabelName"]] == "100"
    profile = config["schedulingProfiles"][0]["plugins"]
    assert {p["pluginRef"] for p in profile} == {
        "queue-scorer",
        "kv-cache-utilization-scorer",
        "prefix-cache-scorer",
    }


def test_keda_scales_the_deployment_on_waiting_requests(render: Render) -> None:
    """The ScaledObject targets the Deployment (which then sets no replicas) with a Prometheus
    query summing llm_engine_requests_waiting over the release's pods."""
    documents = render(GATEWAY)
    scaled = find(documents, "ScaledObject")["spec"]
    deployment = find(documents, "Deployment")
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (2, 8)
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == (
        'sum(llm_engine_requests_waiting{namespace="llm", pod=~"llmserve-.*"})'
    )
    assert trigger["metadata"]["threshold"] == "2"
    assert trigger["metadata"]["serverAddress"].startswith("http://")
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600


def test_keda_query_can_be_replaced(render: Render) -> None:
    """keda.prometheus.query overrides the default query as it is."""
    query = 'sum(llm_engine_requests_waiting{service="x"})'
    scaled = find(render(GATEWAY, set=(f"keda.prometheus.query={query}",)), "ScaledObject")
    assert scaled["spec"]["triggers"][0]["metadata"]["query"] == query


def test_keda_and_the_hpa_together_are_refused(helm: Path, helm_env: dict[str, str]) -> None:
    """Two autoscalers on one Deployment would fight: the chart refuses to render both."""
    args = ["template", "llmserve", str(CHART), "-f", str(GATEWAY)]
    result = subprocess.run(
        [str(helm), *args, "--set", "autoscaling.enabled=true"],
        capture_output=True,
        text=True,
        env=helm_env,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert "choose one" in result.stderr


def test_custom_metric_hpa_scales_on_waiting_requests_per_pod(render: Render) -> None:
    """autoscaling.customMetric adds a Pods metric on llm_engine_requests_waiting (served by
    prometheus-adapter) with an average value per pod."""
    hpa = find(render(EVERYTHING), "HorizontalPodAutoscaler")
    pods = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods == [
        {
            "metric": {"name": "llm_engine_requests_waiting"},
            "target": {"type": "AverageValue", "averageValue": "3"},
        }
    ]
