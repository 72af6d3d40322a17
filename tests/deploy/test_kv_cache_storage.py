"""The chart's volume for the prefix cache's disk tier ([cache] disk_dir, disk_shared):
an emptyDir per pod, or one claim every pod shares (ReadWriteMany) with disk_shared."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmserve.config import load_settings
from tests.deploy.conftest import Render, validate_strictly
from tests.deploy.manifests import RELEASE, config_toml, container, find, pod_spec

MOUNT = "/var/cache/llmserve/kv"
PER_POD = ("kvCacheStorage.enabled=true",)
SHARED = (
    "kvCacheStorage.enabled=true",
    "kvCacheStorage.type=persistentVolumeClaim",
    "config.cache.disk_shared=true",
    "replicaCount=3",
)


def _cache(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(tomllib.loads(config_toml(documents))["cache"])


def _volume(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The server pod's KV-cache volume, checked to be mounted at [cache] disk_dir."""
    (mount,) = [m for m in container(documents)["volumeMounts"] if m["mountPath"] == MOUNT]
    assert _cache(documents)["disk_dir"] == MOUNT
    assert not mount.get("readOnly", False)
    (volume,) = [v for v in pod_spec(documents)["volumes"] if v["name"] == mount["name"]]
    return volume


def _claims(documents: list[dict[str, Any]]) -> list[str]:
    return [d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"]


def test_no_disk_tier_by_default(render: Render) -> None:
    """The defaults keep the prefix cache in RAM: no disk_* keys, no volume at the mount."""
    documents = render()
    assert not {key for key in _cache(documents) if key.startswith("disk")}
    assert MOUNT not in {m["mountPath"] for m in container(documents)["volumeMounts"]}


def test_per_pod_disk_tier_is_an_empty_dir(render: Render, tmp_path: Path) -> None:
    """kvCacheStorage.enabled alone: an emptyDir per pod at disk_dir, not shared, and a
    config.toml llmserve loads with that disk tier."""
    documents = render(set=PER_POD)
    assert _volume(documents) == {"name": "kv-cache", "emptyDir": {"sizeLimit": "5Gi"}}
    assert _claims(documents) == []
    path = tmp_path / "config.toml"
    path.write_text(config_toml(documents), encoding="utf-8")
    cache = load_settings(path, {}, {}).cache
    assert (cache.disk_dir, cache.disk_size_mb, cache.disk_shared) == (MOUNT, 4096, False)
    assert cache.disk_eviction_policy is None


def test_shared_disk_tier_mounts_one_read_write_many_claim(render: Render, tmp_path: Path) -> None:
    """disk_shared with a persistentVolumeClaim: every pod mounts the one chart-made
    ReadWriteMany claim at disk_dir, and config.toml says disk_shared = true."""
    documents = render(set=SHARED)
    claim = find(documents, "PersistentVolumeClaim", f"{RELEASE}-kv-cache")
    assert _volume(documents)["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "annotations" not in claim["metadata"]  # not kept: cached KV is disposable
    path = tmp_path / "config.toml"
    path.write_text(config_toml(documents), encoding="utf-8")
    cache = load_settings(path, {}, {}).cache
    assert (cache.disk_dir, cache.disk_shared) == (MOUNT, True)


def test_existing_claim_is_mounted_without_a_chart_claim(render: Render) -> None:
    """kvCacheStorage.persistentVolumeClaim.existingClaim is mounted as it is."""
    documents = render(set=(*SHARED, "kvCacheStorage.persistentVolumeClaim.existingClaim=kv"))
    assert _volume(documents)["persistentVolumeClaim"] == {"claimName": "kv"}
    assert _claims(documents) == []


def test_chart_claim_takes_class_size_and_keep(render: Render) -> None:
    """storageClass, size and keep (helm.sh/resource-policy) reach the chart-made claim."""
    settings = ("storageClass=nfs", "size=50Gi", "keep=true")
    documents = render(
        set=(*SHARED, *(f"kvCacheStorage.persistentVolumeClaim.{s}" for s in settings))
    )
    claim = find(documents, "PersistentVolumeClaim", f"{RELEASE}-kv-cache")
    assert claim["spec"]["storageClassName"] == "nfs"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_disk_size_and_policy_reach_config_toml(render: Render) -> None:
    """config.cache.disk_size_mb and disk_eviction_policy are rendered as they are."""
    documents = render(
        set=(*PER_POD, "config.cache.disk_size_mb=123", "config.cache.disk_eviction_policy=lfu")
    )
    cache = _cache(documents)
    assert (cache["disk_size_mb"], cache["disk_eviction_policy"]) == (123, "lfu")


@pytest.mark.parametrize(
    "more_pods",
    [
        ("replicaCount=2",),
        ("replicaCount=1", "autoscaling.enabled=true", "autoscaling.maxReplicas=3"),
        ("replicaCount=1", "keda.enabled=true", "keda.maxReplicas=3"),
    ],
    ids=["replicas", "hpa", "keda"],
)
def test_shared_disk_tier_on_read_write_once_is_refused(
    render_error: Callable[..., str], more_pods: tuple[str, ...]
) -> None:
    """Shared by pods that may run on several nodes, a ReadWriteOnce claim would leave pods
    Pending: the render fails and says why."""
    read_write_once = "kvCacheStorage.persistentVolumeClaim.accessModes={ReadWriteOnce}"
    error = render_error(set=(*SHARED, read_write_once, *more_pods))
    assert "needs a ReadWriteMany claim" in error
    assert "ReadWriteOnce" in error


def test_one_pod_may_keep_its_disk_tier_on_a_read_write_once_claim(render: Render) -> None:
    """With one pod, a private disk tier on a claim survives restarts; nothing is shared."""
    documents = render(
        set=(
            "kvCacheStorage.enabled=true",
            "kvCacheStorage.type=persistentVolumeClaim",
            "kvCacheStorage.persistentVolumeClaim.accessModes={ReadWriteOnce}",
        )
    )
    assert "persistentVolumeClaim" in _volume(documents)
    assert _cache(documents)["disk_shared"] is False


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        (
            ("kvCacheStorage.enabled=true", "kvCacheStorage.type=persistentVolumeClaim"),
            "set config.cache.disk_shared=true",
        ),
        (("config.cache.disk_shared=true",), "needs the KV-cache volume"),
        ((*PER_POD, "config.cache.disk_shared=true"), "an emptyDir is private to its pod"),
    ],
    ids=["claim-for-several-pods-unshared", "shared-without-volume", "shared-empty-dir"],
)
def test_disk_tier_misuse_is_refused(
    render_error: Callable[..., str], assignments: tuple[str, ...], message: str
) -> None:
    """A claim several pods would use without disk_shared (each would evict the others'
    files as its own), or disk_shared with nothing to share: a clear render failure."""
    assert message in render_error(set=("replicaCount=2", *assignments))


@pytest.mark.parametrize("kubernetes_version", ["1.25.0", "1.37.0"])
@pytest.mark.parametrize("assignments", [PER_POD, SHARED], ids=["per-pod", "shared"])
def test_disk_tier_manifests_validate_strictly(
    render_text: Callable[..., str],
    render: Render,
    kubernetes_validate: Path,
    assignments: tuple[str, ...],
    kubernetes_version: str,
) -> None:
    """kubernetes-validate --strict accepts the Deployment and claim of both layouts."""
    passed = validate_strictly(
        kubernetes_validate, render_text(set=assignments), kubernetes_version
    )
    assert sorted(passed) == sorted(d["kind"].lower() for d in render(set=assignments))
    assert ("persistentvolumeclaim" in passed) == (assignments == SHARED)
