"""The Helm chart: lint, strict schema validation of what it renders, and what the pods get.

No cluster runs here: `helm lint --strict`, `helm template` piped into `kubernetes-validate
--strict` (Kubernetes' own schemas, bundled) and checks of the rendered manifests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from llmserve.config import load_settings
from llmserve.models.resolve import resolve_model_path
from tests.deploy.conftest import CHART, ROOT, Render, chart_values, run_helm, validate_strictly
from tests.deploy.manifests import (
    RELEASE,
    config_toml,
    container,
    env_of,
    find,
    kinds,
    pod_spec,
)

SHIPPED = sorted(CHART.glob("values-*.yaml"))
EVERYTHING = Path(__file__).with_name("values-everything.yaml")
# No values file: the chart's defaults.
VALUES_FILES: list[Path | None] = [None, *SHIPPED, EVERYTHING]
VALUES_IDS = ["default", *(path.stem for path in SHIPPED), "everything"]
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas.
KUBERNETES_VERSIONS = ["1.25.0", "1.37.0"]
# Custom resources have no schema in kubernetes-validate: checked by the tests below and, for
# those with a CRD in tests/deploy/crds, by test_custom_resources.py.
CUSTOM_KINDS = {"ServiceMonitor", "InferencePool", "ScaledObject"}
# The keys the chart renders, as the issue lists them ([server] host/port come from the chart).
RENDERED_KEYS = {
    "server": {"host", "port", "max_concurrent_requests", "max_loaded_models", "keep_alive"},
    "model": {
        "name",
        "model_path",
        "device",
        "max_sequence_length",
        "n_gpu_layers",
        "parallel",
        "n_threads",
        "n_batch",
        "chat_template",
    },
    "cache": {
        "enabled",
        "max_size_mb",
        "eviction_policy",
        "disk_dir",
        "disk_size_mb",
        "disk_eviction_policy",
        "disk_shared",
    },
    "logging": {"level"},
}
# The keys of one [[models]] entry (config.models): [model]'s and three of its own.
ENTRY_KEYS = RENDERED_KEYS["model"] | {"aliases", "preload", "keep_alive"}


def _files(values: Path | None) -> tuple[Path, ...]:
    return () if values is None else (values,)


def _names(documents: list[dict[str, Any]], kind: str) -> set[str]:
    return {d["metadata"]["name"] for d in documents if d["kind"] == kind}


def _config(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return tomllib.loads(config_toml(documents))


def _documented_keys() -> dict[str, set[str]]:
    """The keys of conf/config.toml by section, commented-out ones included."""
    keys: dict[str, set[str]] = {}
    section = ""
    for line in (ROOT / "conf" / "config.toml").read_text(encoding="utf-8").splitlines():
        if header := re.match(r"^\[(\w+)\]", line):
            section = header.group(1)
            keys[section] = set()
        elif entries := re.match(r"^# \[\[(\w+)\]\]", line):  # the commented example
            section = entries.group(1)
            keys.setdefault(section, set(keys["model"]))  # an entry takes every [model] key
        elif (key := re.match(r"^(?:# )?(\w+) = ", line)) and section:
            keys[section].add(key.group(1))
    return keys


@pytest.fixture(name="notes", scope="module")
def fixture_notes(helm: Path, helm_env: dict[str, str]) -> Callable[..., str]:
    """``notes(*values_files, set=[...])``: NOTES.txt as `helm install` prints it."""

    def notes(*values: Path, set: tuple[str, ...] = ()) -> str:
        args = ["install", "llmserve", str(CHART), "--dry-run=client", *chart_values(values, set)]
        output = run_helm(helm, helm_env, args)
        return output.split("NOTES:\n", 1)[1]

    return notes


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_chart_lints_strictly(helm: Path, helm_env: dict[str, str], values: Path | None) -> None:
    """`helm lint --strict` passes with the default values and with each values file."""
    args = ["lint", "--strict", str(CHART)]
    if values is not None:
        args += ["--values", str(values)]
    assert "0 chart(s) failed" in run_helm(helm, helm_env, args)


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_rendered_manifests_validate_strictly(
    render_text: Callable[..., str],
    render: Render,
    kubernetes_validate: Path,
    values: Path | None,
    kubernetes_version: str,
) -> None:
    """`helm template | kubernetes-validate --strict` accepts every rendered resource."""
    files = _files(values)
    passed = validate_strictly(kubernetes_validate, render_text(*files), kubernetes_version)
    assert sorted(passed) == sorted(
        d["kind"].lower() for d in render(*files) if d["kind"] not in CUSTOM_KINDS
    )


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_rendered_config_loads_in_llmserve(
    render: Render, tmp_path: Path, values: Path | None
) -> None:
    """llmserve's own loader accepts the rendered config.toml (it rejects unknown keys)."""
    path = tmp_path / "config.toml"
    path.write_text(config_toml(render(*_files(values))), encoding="utf-8")
    settings = load_settings(path, {}, {})
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 8080


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_rendered_config_keys_are_those_of_confconfig_toml(
    render: Render, values: Path | None
) -> None:
    """Every rendered section and key is one that conf/config.toml documents."""
    documented = _documented_keys()
    for section, table in _config(render(*_files(values))).items():
        if section == "models":
            for entry in table:
                assert set(entry) <= documented[section] & ENTRY_KEYS, entry
        else:
            assert set(table) <= documented[section] & RENDERED_KEYS[section], section


def test_values_can_set_every_rendered_key(render: Render) -> None:
    """With every option set, the chart renders each key of the list, with its value."""
    config = _config(render(EVERYTHING))
    assert {section: set(table) for section, table in config.items()} == RENDERED_KEYS
    assert config["model"]["chat_template"].endswith('{% endfor %}"quoted" \\ back')
    assert config["cache"] == {
        "enabled": False,
        "max_size_mb": 2048,
        "eviction_policy": "lfu",
        "disk_dir": "/var/cache/llmserve/kv",
        "disk_size_mb": 8192,
        "disk_eviction_policy": "fifo",
        "disk_shared": True,
    }


def test_default_values_serve_the_demo_model_on_cpu(render: Render) -> None:
    """The defaults set no model_path (the image's demo model) and the cpu device."""
    documents = render()
    config = _config(documents)
    assert "model_path" not in config["model"]
    assert config["model"]["device"] == "cpu"
    assert env_of(container(documents))["LLM_ENGINE_DEVICE"] == "cpu"
    assert container(documents)["image"] == "llmserve:0.1.0"


@pytest.mark.parametrize(
    ("limit", "threads"), [("1500m", 1), ("3", 3), (2.5, 2), ("250m", 1), (8, 8)]
)
def test_n_threads_follow_the_cpu_limit(render: Render, limit: str | float, threads: int) -> None:
    """Unset n_threads becomes the whole cores of the CPU limit, not the node's core count."""
    documents = render(set=(f"resources.limits.cpu={limit}",))
    assert _config(documents)["model"]["n_threads"] == threads


def test_configured_n_threads_wins_over_the_cpu_limit(render: Render) -> None:
    """An explicit config.model.n_threads is rendered as it is."""
    documents = render(set=("config.model.n_threads=3", "resources.limits.cpu=8"))
    assert _config(documents)["model"]["n_threads"] == 3


def test_gpu_values_request_a_gpu_with_the_cuda_image(render: Render) -> None:
    """values-gpu.yaml: an nvidia.com/gpu limit, the -cuda image and device gpu everywhere."""
    documents = render(CHART / "values-gpu.yaml")
    server = container(documents)
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["image"] == "llmserve:0.1.0-cuda"
    assert env_of(server)["LLM_ENGINE_DEVICE"] == "gpu"
    assert _config(documents)["model"]["device"] == "gpu"
    tolerations = pod_spec(documents)["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_pull_runs_llmserve_pull_into_the_models_volume(render: Render) -> None:
    """values-multi-model.yaml: one `llmserve pull` init container per model, both served."""
    documents = render(CHART / "values-multi-model.yaml")
    spec = pod_spec(documents)
    pulls = spec["initContainers"]
    assert [c["args"] for c in pulls] == [
        ["pull", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "--file", "*q4_k_m.gguf"],
        ["pull", "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "--file", "*q4_k_m.gguf"],
    ]
    for pull in pulls:
        assert pull["image"] == container(documents)["image"]
        assert env_of(pull)["LLM_ENGINE_MODELS_DIR"] == "/models"
        assert {"name": "models", "mountPath": "/models"} in pull["volumeMounts"]
    assert [entry["model_path"] for entry in _config(documents)["models"]] == [
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF:*q4_k_m.gguf",
        "Qwen/Qwen2.5-1.5B-Instruct-GGUF:*q4_k_m.gguf",
    ]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "models"]
    claim = find(documents, "PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_pull_arguments_are_accepted_by_the_llmserve_cli(render: Render) -> None:
    """The init containers' arguments parse as `llmserve pull` (offline: it stops at the Hub)."""
    (pull,) = pod_spec(render(EVERYTHING))["initContainers"]
    script = shutil.which("llmserve", path=sysconfig.get_path("scripts"))
    assert script, "the llmserve console script is not installed"
    result = subprocess.run(
        [script, *pull["args"]],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "LLM_ENGINE_MODELS_DIR": "/nonexistent"},
        check=False,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr  # 2 would be a usage error
    assert "HF_HUB_OFFLINE is set" in result.stderr


def test_served_reference_resolves_to_the_pulled_file(render: Render, tmp_path: Path) -> None:
    """The server's model_path "REPO:PATTERN" finds what `llmserve pull` stored, offline."""
    config = tmp_path / "config.toml"
    config.write_text(config_toml(render(CHART / "values-multi-model.yaml")), encoding="utf-8")
    store = tmp_path / "models"
    # Where `llmserve pull` puts a file: <models_dir>/<owner>/<repo>/<path in the repo>.
    pulled = store / "Qwen" / "Qwen2.5-0.5B-Instruct-GGUF" / "qwen2.5-0.5b-instruct-q4_k_m.gguf"
    pulled.parent.mkdir(parents=True)
    pulled.write_bytes(b"GGUF")
    environ = {"LLM_ENGINE_MODELS_DIR": str(store), "HF_HUB_OFFLINE": "1"}
    settings = load_settings(config, environ, {})
    first = attrs.evolve(settings, model=settings.models[0], models=())
    assert resolve_model_path(first, environ) == pulled


def test_multi_model_notes_list_the_served_models(notes: Callable[..., str]) -> None:
    """NOTES.txt lists the served models, their aliases and the pulled repositories."""
    text = notes(CHART / "values-multi-model.yaml")
    assert "Serving 2 models" in text
    assert "qwen2.5-0.5b (also gpt-4o-mini): Qwen/Qwen2.5-0.5B-Instruct-GGUF:*q4_k_m.gguf" in text
    assert "qwen2.5-1.5b: Qwen/Qwen2.5-1.5B-Instruct-GGUF:*q4_k_m.gguf, loaded on first use" in text
    assert "Qwen/Qwen2.5-1.5B-Instruct-GGUF *q4_k_m.gguf" in text


def test_several_pulls_without_models_say_only_the_first_is_served(
    notes: Callable[..., str],
) -> None:
    """Pulling several models into a one-model server says which one serves."""
    text = notes(CHART / "values-multi-model.yaml", set=("config.models=null",))
    assert "The server loads Qwen/Qwen2.5-0.5B-Instruct-GGUF:*q4_k_m.gguf" in text
    assert "Only the first pulled model is served" in text


def test_models_render_as_models_tables_with_config_model_defaults(render: Render) -> None:
    """config.models renders [[models]] and no [model]; unset keys take config.model's."""
    config = _config(render(CHART / "values-multi-model.yaml"))
    assert "model" not in config
    assert config["server"]["max_loaded_models"] == 2
    assert config["server"]["keep_alive"] == 900
    small, large = config["models"]
    assert small["aliases"] == ["gpt-4o-mini"]
    assert small["preload"] is True
    assert (small["parallel"], large["parallel"]) == (4, 2)
    assert small["max_sequence_length"] == large["max_sequence_length"] == 8192
    assert small["n_threads"] == large["n_threads"] == 4  # the CPU limit's cores


def test_a_models_entry_can_set_every_key(render: Render, tmp_path: Path) -> None:
    """Each key of an entry is rendered with its value, zero and false included."""
    values = tmp_path / "entry.yaml"
    values.write_text(
        "config:\n"
        "  models:\n"
        "    - name: m\n"
        "      aliases: [a, b]\n"
        "      model_path: /models/m.gguf\n"
        "      device: gpu\n"
        "      max_sequence_length: 1024\n"
        "      n_gpu_layers: 0\n"
        "      parallel: 1\n"
        "      n_threads: 2\n"
        "      n_batch: 64\n"
        "      chat_template: '{{ messages }}'\n"
        "      preload: false\n"
        "      keep_alive: 0\n",
        encoding="utf-8",
    )
    (entry,) = _config(render(values))["models"]
    assert set(entry) == ENTRY_KEYS
    assert (entry["n_gpu_layers"], entry["preload"], entry["keep_alive"]) == (0, False, 0)
    assert (entry["device"], entry["parallel"], entry["n_threads"]) == ("gpu", 1, 2)


def test_pull_revision_and_hub_token_reach_the_init_container(render: Render) -> None:
    """--revision is passed on, and HF_TOKEN comes from the named Secret."""
    (pull,) = pod_spec(render(EVERYTHING))["initContainers"]
    assert pull["args"][-2:] == ["--revision", "main"]
    token = env_of(pull)["HF_TOKEN"]
    assert token == {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}


def test_api_key_reaches_the_server_from_the_chart_secret(render: Render) -> None:
    """auth.apiKey becomes a Secret, read into LLM_ENGINE_API_KEY."""
    documents = render(set=("auth.apiKey=s3cret",))
    secret = find(documents, "Secret")
    reference = env_of(container(documents))["LLM_ENGINE_API_KEY"]["secretKeyRef"]
    assert reference == {"name": secret["metadata"]["name"], "key": "api-key"}
    assert secret["data"]["api-key"] == "czNjcmV0"  # base64 of s3cret


def test_api_key_can_come_from_an_existing_secret(render: Render) -> None:
    """auth.existingSecret is referenced as it is, and the chart makes no Secret of its own."""
    documents = render(set=("auth.existingSecret=mine", "auth.existingSecretKey=token"))
    assert "Secret" not in kinds(documents)
    reference = env_of(container(documents))["LLM_ENGINE_API_KEY"]["secretKeyRef"]
    assert reference == {"name": "mine", "key": "token"}


def test_no_api_key_leaves_v1_open_with_a_warning(
    render: Render, notes: Callable[..., str]
) -> None:
    """Without a key no LLM_ENGINE_API_KEY is set, and NOTES.txt warns about it."""
    assert "LLM_ENGINE_API_KEY" not in env_of(container(render()))
    assert "WARNING: no API key is set" in notes()


def test_notes_say_where_the_picker_and_the_kv_disk_tier_are(notes: Callable[..., str]) -> None:
    """NOTES.txt names the pool, says whether the release runs its endpoint picker, and where
    the prefix cache's disk tier lives."""
    text = notes(EVERYTHING)
    assert "InferencePool llmserve" in text
    assert "rollout status deployment/my-epp" in text
    assert "on claim llmserve-kv-cache, shared by every pod" in text
    text = notes(set=("inferencePool.enabled=true", "kvCacheStorage.enabled=true"))
    assert "set inferencePool.endpointPicker.deploy=true" in text
    assert "an emptyDir per pod (4096 MB)" in text


def test_server_reads_the_mounted_config(render: Render) -> None:
    """LLM_ENGINE_CONFIG names config.toml in the mounted ConfigMap."""
    documents = render()
    server = container(documents)
    assert env_of(server)["LLM_ENGINE_CONFIG"] == "/etc/llmserve/config.toml"
    mount = next(m for m in server["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == "/etc/llmserve"
    (volume,) = [v for v in pod_spec(documents)["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == find(documents, "ConfigMap")["metadata"]["name"]


def test_probes_use_livez_and_readyz(render: Render) -> None:
    """Liveness asks /livez and readiness /readyz, on the named http port."""
    server = container(render())
    assert server["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_pod_is_non_root_with_a_read_only_root_and_writable_scratch(render: Render) -> None:
    """Non-root, no privilege escalation, read-only root; /tmp and the cache dir are emptyDirs."""
    documents = render()
    spec = pod_spec(documents)
    server = container(documents)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["allowPrivilegeEscalation"] is False
    assert server["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path in ("/tmp", "/home/llmserve/.cache"):
        assert "emptyDir" in volumes[mounts[path]]
    assert spec["automountServiceAccountToken"] is False


def test_server_mounts_models_read_only(render: Render) -> None:
    """The server container mounts /models read-only; the pull init containers write to it."""
    documents = render(EVERYTHING)
    server_mount = next(m for m in container(documents)["volumeMounts"] if m["name"] == "models")
    assert server_mount["readOnly"] is True
    (pull,) = pod_spec(documents)["initContainers"]
    pull_mount = next(m for m in pull["volumeMounts"] if m["name"] == "models")
    assert not pull_mount.get("readOnly", False)


def test_autoscaling_owns_the_replica_count(render: Render) -> None:
    """With autoscaling on, an HPA targets the Deployment, which sets no replicas of its own."""
    documents = render(EVERYTHING)
    deployment = find(documents, "Deployment", RELEASE)
    hpa = find(documents, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert "HorizontalPodAutoscaler" not in kinds(render())


def test_pod_disruption_budget_selects_the_pods(render: Render) -> None:
    """The PodDisruptionBudget selects exactly the Deployment's pods."""
    documents = render()
    budget = find(documents, "PodDisruptionBudget")
    selector = find(documents, "Deployment", RELEASE)["spec"]["selector"]
    assert budget["spec"]["selector"] == selector
    assert budget["spec"]["maxUnavailable"] == 1


def test_service_monitor_scrapes_the_service_http_port(render: Render) -> None:
    """The ServiceMonitor selects the Service by its labels and scrapes /metrics on its port."""
    documents = render(EVERYTHING)
    monitor = find(documents, "ServiceMonitor")
    service = find(documents, "Service", RELEASE)
    labels = service["metadata"]["labels"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["llm"]}
    assert "ServiceMonitor" not in kinds(render())


def test_pods_carry_prometheus_scrape_annotations(render: Render) -> None:
    """The pod template announces /metrics on the container port to Prometheus."""
    annotations = find(render(), "Deployment", RELEASE)["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_config_change_rolls_the_pods(render: Render) -> None:
    """A changed config.toml changes the pod template's checksum, so an upgrade restarts pods."""

    def checksum(*assignments: str) -> str:
        deployment = find(render(set=assignments), "Deployment", RELEASE)
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() != checksum("config.logging.level=debug")


def test_chart_created_models_claim_is_kept_on_uninstall(render: Render) -> None:
    """The models PersistentVolumeClaim carries helm.sh/resource-policy: keep."""
    claim = find(render(EVERYTHING), "PersistentVolumeClaim", f"{RELEASE}-models")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["storageClassName"] == "fast"
    existing = render(EVERYTHING, set=("modelStorage.persistentVolumeClaim.existingClaim=mine",))
    assert f"{RELEASE}-models" not in _names(existing, "PersistentVolumeClaim")


@pytest.mark.parametrize(
    "assignment",
    [
        "config.model.bogus=1",
        "config.model.model_path=/models/x.gguf",
        "config.cache.eviction_policy=random",
        "config.model.parallel=0",
        "config.models[0].name=no-model-path",
        "config.models[0].bogus=1",
        "config.server.max_loaded_models=0",
        "image.variant=rocm",
        "inferencePool.endpointPicker.failureMode=Sometimes",
        "keda.prometheus.serverAddress=prometheus:9090",
        "keda.bogus=1",
        "inferencePool.endpointPicker.replicas=0",
        "inferencePool.endpointPicker.image.tag=",
        "inferencePool.endpointPicker.flags.Bad_Flag=1",
        "inferencePool.endpointPicker.bogus=1",
        "kvCacheStorage.type=hostPath",
        "kvCacheStorage.persistentVolumeClaim.accessModes={Sometimes}",
        "config.cache.disk_eviction_policy=random",
        "config.cache.disk_size_mb=-1",
    ],
)
def test_schema_rejects_invalid_values(render_error: Callable[..., str], assignment: str) -> None:
    """values.schema.json refuses unknown keys and invalid values before anything renders."""
    assert "schema" in render_error(set=(assignment,))


def test_chart_app_version_is_the_package_version() -> None:
    """Chart.yaml's appVersion (the default image tag) is pyproject.toml's version."""
    chart = (CHART / "Chart.yaml").read_text(encoding="utf-8")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert f'appVersion: "{project["version"]}"' in chart
