"""The Dockerfile: lint-clean, portable llama.cpp build, and in step with the README and pyproject.

No Docker engine runs here: these checks read the Dockerfile (hadolint, and a small parser).
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from llmserve.config import ENV_PREFIX, OPTIONS
from tests.deploy.conftest import ROOT
from tests.deploy.manifests import Dockerfile, Stage, parse_dockerfile

README = ROOT / "README.md"
PORTABLE_CPU_FLAGS = ("-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON")


@pytest.fixture(name="dockerfile", scope="module")
def fixture_dockerfile() -> Dockerfile:
    """The repository's Dockerfile, parsed."""
    return parse_dockerfile(ROOT / "Dockerfile")


@pytest.fixture(name="pyproject", scope="module")
def fixture_pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(name="readme_docker", scope="module")
def fixture_readme_docker() -> str:
    """The README's "Docker" section."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Docker\n(.*?)^## ", text, re.MULTILINE | re.DOTALL)
    assert match, "the README has no '## Docker' section"
    return match.group(1)


def _variant_stages(dockerfile: Dockerfile, variant: str) -> tuple[Stage, Stage]:
    """The (build, runtime) base stages the VARIANT build argument selects."""
    build = dockerfile.global_args["BUILD_STAGE"].replace("${VARIANT}", variant)
    runtime = dockerfile.global_args["RUNTIME_STAGE"].replace("${VARIANT}", variant)
    return dockerfile.stage(build), dockerfile.stage(runtime)


def _llama_cpp_install(dockerfile: Dockerfile) -> str:
    (run,) = [
        i.arguments
        for i in dockerfile.stage("builder").all("RUN")
        if "llama-cpp-python" in i.arguments
    ]
    return run


def test_hadolint_reports_nothing(hadolint: Path) -> None:
    """hadolint finds no error, warning, info or style issue in the Dockerfile."""
    result = subprocess.run(
        [str(hadolint), "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_variant_argument_selects_the_build_and_runtime_stages(dockerfile: Dockerfile) -> None:
    """VARIANT=cpu builds on python images, VARIANT=cuda on nvidia/cuda devel and runtime images."""
    assert dockerfile.global_args["VARIANT"] == "cpu"
    cpu_build, cpu_runtime = _variant_stages(dockerfile, "cpu")
    cuda_build, cuda_runtime = _variant_stages(dockerfile, "cuda")
    assert cpu_build.base.startswith("python:")
    assert cpu_runtime.base.startswith("python:")
    assert "-slim" in cpu_runtime.base
    assert cuda_build.base.startswith("nvidia/cuda:")
    assert "-devel-" in cuda_build.base
    assert cuda_runtime.base.startswith("nvidia/cuda:")
    assert "-runtime-" in cuda_runtime.base
    assert dockerfile.stage("builder").base == "${BUILD_STAGE}"
    assert dockerfile.final.base == "${RUNTIME_STAGE}"


def test_llama_cpp_is_built_portable_with_loadable_backends(dockerfile: Dockerfile) -> None:
    """llama.cpp is built without -march=native, every CPU variant loadable from the venv."""
    run = _llama_cpp_install(dockerfile)
    for flag in PORTABLE_CPU_FLAGS:
        assert flag in run
    backend_dir = re.search(r"-DGGML_BACKEND_DIR=(\S+)", run)
    assert backend_dir
    assert backend_dir.group(1).startswith("/opt/venv/")


def test_cuda_variant_adds_ggml_cuda(dockerfile: Dockerfile) -> None:
    """The CUDA build stage adds -DGGML_CUDA=on to the same llama.cpp build, the CPU one nothing."""
    assert "${GGML_VARIANT_ARGS}" in _llama_cpp_install(dockerfile)
    cpu_build, _ = _variant_stages(dockerfile, "cpu")
    cuda_build, cuda_runtime = _variant_stages(dockerfile, "cuda")
    assert cpu_build.env()["GGML_VARIANT_ARGS"] == ""
    assert cuda_build.env()["GGML_VARIANT_ARGS"] == "-DGGML_CUDA=on"
    assert cuda_runtime.env()["LLM_ENGINE_DEVICE"] == "gpu"


def test_llama_cpp_pin_matches_pyproject(dockerfile: Dockerfile, pyproject: dict[str, Any]) -> None:
    """The image builds the llama-cpp-python version that pyproject.toml pins."""
    pinned = [
        dep for dep in pyproject["project"]["dependencies"] if dep.startswith("llama-cpp-python")
    ]
    version = dockerfile.stage("builder").args()["LLAMA_CPP_PYTHON_VERSION"]
    assert pinned == [f"llama-cpp-python=={version}"]


def test_image_installs_the_extras_of_the_readme_and_make_serve(
    dockerfile: Dockerfile, pyproject: dict[str, Any], readme_docker: str
) -> None:
    """The image installs llmserve with the extras the README names, which `make serve` uses."""
    builder = dockerfile.stage("builder")
    extras = builder.args()["LLMSERVE_EXTRAS"]
    installs = [i.arguments for i in builder.all("RUN") if "pip install" in i.arguments]
    assert any('"/src${LLMSERVE_EXTRAS:+[${LLMSERVE_EXTRAS}]}"' in run for run in installs)
    assert {"pyproject.toml", "README.md", "llmserve"} <= {
        word.strip("./") for copy in builder.all("COPY") for word in copy.arguments.split()[:-1]
    }

    readme = re.search(r"The image installs `llmserve\[([\w,]+)\]`", readme_docker)
    assert readme, "the README's Docker section does not say which extras the image installs"
    makefile = re.search(r"^install: \$\(STAMP\)-([\w+]+)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile, "the Makefile's install target (used by `make serve`) has changed shape"
    assert extras.split(",") == readme.group(1).split(",") == makefile.group(1).split("+")
    assert set(extras.split(",")) <= set(pyproject["project"]["optional-dependencies"])


def test_entry_point_is_the_llmserve_script(
    dockerfile: Dockerfile, pyproject: dict[str, Any], readme_docker: str
) -> None:
    """ENTRYPOINT is the `llmserve` console script and CMD `serve`, as the README says."""
    (entrypoint,) = dockerfile.final.all("ENTRYPOINT")
    (cmd,) = dockerfile.final.all("CMD")
    readme = re.search(r"entry\s+point\s+is\s+the\s+`(\w+)`\s+command,\s+`(\w+)`", readme_docker)
    assert readme, "the README's Docker section does not name the image's entry point"
    assert entrypoint.exec_form == [readme.group(1)]
    assert cmd.exec_form == [readme.group(2)]
    assert pyproject["project"]["scripts"][readme.group(1)] == "llmserve.cli:main"
    assert dockerfile.final.env()["PATH"].startswith("/opt/venv/bin:")


def test_runtime_receives_only_the_virtualenv(dockerfile: Dockerfile) -> None:
    """The runtime stage copies the builder's /opt/venv and nothing else from it."""
    copies = dockerfile.final.all("COPY")
    assert [(c.flag("from"), c.arguments.split()[-2:]) for c in copies] == [
        ("builder", ["/opt/venv", "/opt/venv"])
    ]


def test_runtime_runs_as_an_unprivileged_numeric_user(dockerfile: Dockerfile) -> None:
    """USER is a numeric non-root uid:gid, which Kubernetes' runAsNonRoot can verify."""
    (user,) = dockerfile.final.all("USER")
    uid, _, gid = user.arguments.partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid.isdigit()
    assert int(gid) > 0


def test_image_listens_on_all_interfaces_on_8080(dockerfile: Dockerfile) -> None:
    """LLM_ENGINE_HOST=0.0.0.0 and EXPOSE 8080, the server's default port."""
    env = dockerfile.final.env()
    assert env["LLM_ENGINE_HOST"] == "0.0.0.0"
    assert "LLM_ENGINE_PORT" not in env  # a port in the image would override config.toml's
    assert [e.arguments for e in dockerfile.final.all("EXPOSE")] == ["8080"]


def test_healthcheck_requests_livez(dockerfile: Dockerfile) -> None:
    """HEALTHCHECK fetches /livez on the configured port with a timeout."""
    (check,) = dockerfile.final.all("HEALTHCHECK")
    assert "CMD" in check.arguments
    assert "/livez" in check.arguments
    assert "LLM_ENGINE_PORT" in check.arguments
    assert "--timeout=" in check.arguments


def test_models_come_from_the_models_volume(dockerfile: Dockerfile) -> None:
    """/models is a volume and the model store of `llmserve pull`."""
    (volume,) = dockerfile.final.all("VOLUME")
    assert volume.exec_form == ["/models"]
    assert dockerfile.final.env()["LLM_ENGINE_MODELS_DIR"] == "/models"


@pytest.mark.parametrize(
    ("variant", "defaults"),
    [("cpu", {"LLM_ENGINE_HOST"}), ("cuda", {"LLM_ENGINE_HOST", "LLM_ENGINE_DEVICE"})],
)
def test_image_defaults_few_of_the_readme_variables(
    dockerfile: Dockerfile, variant: str, defaults: set[str]
) -> None:
    """Every LLM_ENGINE_* variable of the README is read by llmserve; the image gives a default
    to the listening host only (and the CUDA image to the device), so `docker run -e` and
    config.toml decide the rest."""
    readme = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^export (LLM_ENGINE_\w+)=", readme, re.MULTILINE))
    assert documented, "the README lists no LLM_ENGINE_* variables"
    assert documented <= {ENV_PREFIX + name.upper() for name in OPTIONS}
    _, runtime_base = _variant_stages(dockerfile, variant)
    image_env = {**runtime_base.env(), **dockerfile.final.env()}
    assert documented & set(image_env) == defaults


def test_dockerignore_admits_exactly_what_the_builder_copies() -> None:
    """The build context is an allowlist of the files the builder stage copies."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    admitted = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert admitted == {"pyproject.toml", "README.md", "llmserve"}
