"""The chart's inference routing and queue-based scaling: InferencePool, the endpoint picker's
configuration, KEDA's ScaledObject and the custom-metric HPA.

kubernetes-validate has no schema for custom resources: these are validated with jsonschema
against the upstream CRDs checked into tests/deploy/crds (see its README for sources).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry

from llmserve.ops.metrics import Metrics
from llmserve.ops.stats import EngineStats, KvSnapshot
from tests.deploy.conftest import CHART, Render, validate_strictly
from tests.deploy.manifests import RELEASE, container, find, kinds

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
    labels = find(documents, "Deployment", RELEASE)["spec"]["template"]["metadata"]["labels"]
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
        deployment = find(documents, "Deployment", RELEASE)
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
    deployment = find(documents, "Deployment", RELEASE)
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


def test_keda_and_the_hpa_together_are_refused(render_error: Callable[..., str]) -> None:
    """Two autoscalers on one Deployment would fight: the chart refuses to render both."""
    assert "choose one" in render_error(GATEWAY, set=("autoscaling.enabled=true",))


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


# --- The endpoint picker the chart runs itself (inferencePool.endpointPicker.deploy) ---

PICKER_KINDS = ["deployment", "role", "rolebinding", "service", "serviceaccount"]


def _picker(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The picker's resource of ``kind``: the one named as the pool's endpointPickerRef."""
    name = find(documents, "InferencePool")["spec"]["endpointPickerRef"]["name"]
    return find(documents, kind, name)


def _arg(container: dict[str, Any], flag: str) -> str:
    """The value following ``flag`` in a container's args."""
    args = container["args"]
    return str(args[args.index(flag) + 1])


def _epp(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = _picker(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    return found


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_endpoint_picker_mounts_the_picker_config_and_reads_it(render: Render) -> None:
    """The picker mounts the chart's EndpointPickerConfig ConfigMap and its --config-file
    names that ConfigMap's key inside the mount."""
    documents = render(GATEWAY)
    (config,) = [
        d for d in documents if d["kind"] == "ConfigMap" and "llmserve-plugins.yaml" in d["data"]
    ]
    spec = _picker(documents, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v.get("configMap")]
    assert volume["configMap"]["name"] == config["metadata"]["name"] == "llmserve-epp-config"
    epp = _epp(documents)
    (mount,) = [m for m in epp["volumeMounts"] if m["name"] == volume["name"]]
    config_file = Path(_arg(epp, "--config-file"))
    assert config_file.parent == Path(mount["mountPath"])
    assert config_file.name in config["data"]


@pytest.mark.parametrize("values", [GATEWAY, EVERYTHING], ids=["gateway", "everything"])
def test_endpoint_picker_service_is_the_pools_endpoint_picker_ref(
    render: Render, values: Path
) -> None:
    """The InferencePool's endpointPickerRef names the picker's Service and its port, which
    reaches the container port the picker serves ext-proc on (--grpc-port)."""
    documents = render(values)
    pool = find(documents, "InferencePool")
    validate(pool)
    reference = pool["spec"]["endpointPickerRef"]
    service = _picker(documents, "Service")
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == reference["port"]["number"]]
    assert port["appProtocol"] == "kubernetes.io/h2c"
    epp = _epp(documents)
    (target,) = [p for p in epp["ports"] if p["name"] == port["targetPort"]]
    assert target["containerPort"] == reference["port"]["number"]
    assert _arg(epp, "--grpc-port") == str(reference["port"]["number"])
    pods = _picker(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert _matches(service["spec"]["selector"], pods)


def test_endpoint_picker_serves_the_releases_pool(render: Render) -> None:
    """--pool-name/--pool-namespace/--pool-group name the InferencePool this release made."""
    documents = render(GATEWAY)
    pool = find(documents, "InferencePool")
    epp = _epp(documents)
    assert _arg(epp, "--pool-name") == pool["metadata"]["name"] == "llmserve"
    assert _arg(epp, "--pool-namespace") == "llm"
    assert _arg(epp, "--pool-group") == pool["apiVersion"].split("/")[0]
    assert epp["image"] == "ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0"


def _granted(role: dict[str, Any], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_endpoint_picker_rbac_reads_pods_and_inferencepools(render: Render) -> None:
    """The picker's ServiceAccount is bound to a Role that gets/watches/lists pods and
    inferencepools; one replica needs no leases."""
    documents = render(GATEWAY)
    deployment = _picker(documents, "Deployment")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert account == _picker(documents, "ServiceAccount")["metadata"]["name"]
    binding = _picker(documents, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "llm"}]
    role = find(documents, "Role", binding["roleRef"]["name"])
    assert binding["roleRef"]["kind"] == "Role"
    read = {"get", "watch", "list"}
    assert _granted(role, "", "pods") >= read
    assert _granted(role, "inference.networking.k8s.io", "inferencepools") >= read
    assert not _granted(role, "coordination.k8s.io", "leases")
    assert "--ha-enable-leader-election" not in _epp(documents)["args"]


def test_endpoint_picker_replicas_elect_a_leader(render: Render) -> None:
    """Two picker replicas run active-passive: leader election on, leases granted, and the
    probes ask the separate liveness and readiness services."""
    documents = render(EVERYTHING)
    epp = _epp(documents)
    assert "--ha-enable-leader-election" in epp["args"]
    role = _picker(documents, "Role")
    assert {"create", "update", "get"} <= _granted(role, "coordination.k8s.io", "leases")
    assert epp["livenessProbe"]["grpc"]["service"] == "liveness"
    assert epp["readinessProbe"]["grpc"]["service"] == "readiness"


def test_endpoint_picker_probes_ask_its_grpc_health_port(render: Render) -> None:
    """Liveness and readiness are gRPC health checks on the port --grpc-health-port opens."""
    epp = _epp(render(GATEWAY))
    (health,) = [p for p in epp["ports"] if p["name"] == "grpc-health"]
    assert _arg(epp, "--grpc-health-port") == str(health["containerPort"])
    for probe in (epp["livenessProbe"], epp["readinessProbe"]):
        assert probe["grpc"]["port"] == health["containerPort"]
    (metrics,) = [p for p in epp["ports"] if p["name"] == "metrics"]
    assert _arg(epp, "--metrics-port") == str(metrics["containerPort"])


def test_endpoint_picker_image_flags_and_resources_come_from_values(render: Render) -> None:
    """image, flags (as --name=value), resources and scheduling values reach the picker."""
    documents = render(EVERYTHING)
    epp = _epp(documents)
    assert epp["image"] == "registry.example.com/epp:v0.10.0-patched"
    assert epp["imagePullPolicy"] == "Always"
    assert {"--v=2", "--metrics-endpoint-auth=false"} <= set(epp["args"])
    assert epp["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"memory": "2Gi"},
    }
    spec = _picker(documents, "Deployment")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert spec["tolerations"][0]["value"] == "routing"
    assert spec["imagePullSecrets"] == [{"name": "registry"}]


@pytest.mark.parametrize("values", [GATEWAY, EVERYTHING], ids=["gateway", "everything"])
def test_server_selectors_never_match_the_endpoint_picker(render: Render, values: Path) -> None:
    """The picker's pods and Service carry labels of their own: the server's Service,
    PodDisruptionBudget, InferencePool and ServiceMonitor do not select them."""
    documents = render(values)
    picker_pods = _picker(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    server_pods = find(documents, "Deployment", RELEASE)["spec"]["template"]["metadata"]["labels"]
    selectors = [
        find(documents, "Service", RELEASE)["spec"]["selector"],
        find(documents, "InferencePool")["spec"]["selector"]["matchLabels"],
        find(documents, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert _matches(selector, server_pods)
        assert not _matches(selector, picker_pods)
    assert not _matches(_picker(documents, "Service")["spec"]["selector"], server_pods)
    monitor = find(documents, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert not _matches(monitor, _picker(documents, "Service")["metadata"]["labels"])


@pytest.mark.parametrize("kubernetes_version", ["1.25.0", "1.37.0"])
def test_endpoint_picker_manifests_validate_strictly(
    render_text: Callable[..., str], kubernetes_validate: Path, kubernetes_version: str
) -> None:
    """kubernetes-validate --strict accepts each of the picker's resources (gRPC probes
    included) on the oldest and newest Kubernetes the chart supports."""
    for values in (GATEWAY, EVERYTHING):
        text = render_text(values, extra=("--show-only", "templates/endpointpicker.yaml"))
        assert sorted(validate_strictly(kubernetes_validate, text, kubernetes_version)) == (
            PICKER_KINDS
        )


@pytest.mark.parametrize(
    "assignments",
    [
        ("inferencePool.enabled=true",),
        ("inferencePool.enabled=false", "inferencePool.endpointPicker.deploy=true"),
    ],
    ids=["pool-without-deploy", "deploy-without-pool"],
)
def test_endpoint_picker_is_not_rendered_without_deploy_and_pool(
    render: Render, assignments: tuple[str, ...]
) -> None:
    """Without both inferencePool.enabled and endpointPicker.deploy no picker resource
    renders: one Deployment, Service and ServiceAccount (the server's), no RBAC."""
    documents = render(set=assignments)
    for kind in ("Deployment", "Service", "ServiceAccount"):
        assert [d["metadata"]["name"] for d in documents if d["kind"] == kind] == [RELEASE]
    assert not {"Role", "RoleBinding"} & kinds(documents)


def test_endpoint_picker_restarts_when_its_config_changes(render: Render) -> None:
    """A changed scorer weight changes the picker's pod template (it reads its config once)."""

    def checksum(*assignments: str) -> str:
        deployment = _picker(render(GATEWAY, set=assignments), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() != checksum("inferencePool.scorers.prefixCache=5")
