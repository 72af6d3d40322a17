"""Two tiny GGUFs as [[models]] in one real server, through the openai client.

One is preloaded, the other loads on first use; max_loaded_models = 1 makes each switch unload
the other, which /metrics shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmserve.api.app import create_app
from llmserve.config import ServedModelSettings, ServerSettings, Settings
from tests.support.server import free_port, serve_app
from tests.support.tinymodel import build_tiny_gguf

PROMPT = "The quick brown fox"


def tiny_model(folder: Path, name: str, alias: str, seed: int, **more: Any) -> ServedModelSettings:
    """A [[models]] entry serving a tiny GGUF of its own weights (``seed``)."""
    path = build_tiny_gguf(folder / f"{name}.gguf", seed=seed)
    return ServedModelSettings(
        name=name,
        aliases=(alias,),
        model_path=str(path),
        parallel=2,
        max_sequence_length=256,
        **more,
    )


@pytest.fixture(name="base_url", scope="module")
def fixture_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("several")
    settings = Settings(
        server=ServerSettings(max_loaded_models=1),
        models=(
            tiny_model(folder, "first", "gpt-4o-mini", seed=1, preload=True),
            tiny_model(folder, "second", "org/second", seed=2),
        ),
    )
    with serve_app(create_app(settings)) as base_url:
        yield base_url


@pytest.fixture(name="client")
def fixture_client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def complete(client: openai.OpenAI, model: str) -> openai.types.Completion:
    return client.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0)


def metric(base_url: str, series: str) -> float:
    """The value of one series on /metrics, e.g. ``llm_engine_models_loaded``."""
    text = httpx.get(f"{base_url}/metrics").text
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"{series} is not on /metrics"
    return float(match.group(1))


def test_models_lists_both(client: openai.OpenAI) -> None:
    """/v1/models lists each configured model, the one not loaded yet too."""
    assert [m.id for m in client.models.list()] == ["first", "second"]


def test_each_model_answers_under_its_name_and_alias(client: openai.OpenAI) -> None:
    """A name or an alias reaches its own weights; the answer carries the model's name."""
    first, second = complete(client, "first"), complete(client, "second")
    assert (first.model, second.model) == ("first", "second")
    assert first.choices[0].text != second.choices[0].text  # two seeds, two models
    by_alias = complete(client, "gpt-4o-mini")
    assert by_alias.model == "first"
    assert by_alias.choices[0].text == first.choices[0].text  # reloaded, same greedy text
    chat = client.chat.completions.create(
        model="org/second",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        temperature=0,
    )
    assert chat.model == "second"


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    """A name no model has is 404 model_not_found, which the client raises as NotFoundError."""
    with pytest.raises(openai.NotFoundError) as caught:
        complete(client, "gpt-5")
    assert caught.value.code == "model_not_found"


def test_models_retrieve_by_name_or_alias_names_the_served_model(client: openai.OpenAI) -> None:
    """models.retrieve resolves names and aliases as completions do; unknown names are 404."""
    assert client.models.retrieve("gpt-4o-mini").id == "first"
    assert client.models.retrieve("org/second").id == "second"
    assert client.models.retrieve("second").id == "second"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-5")
    assert caught.value.code == "model_not_found"


def test_loads_and_unloads_show_on_metrics(client: openai.OpenAI, base_url: str) -> None:
    """Switching models under max_loaded_models = 1 loads one and unloads the other."""
    complete(client, "first")
    loads = metric(base_url, 'llm_engine_model_loads_total{model="second"}')
    unloads = metric(base_url, 'llm_engine_model_unloads_total{model="first",reason="lru"}')
    complete(client, "second")
    complete(client, "first")
    assert metric(base_url, 'llm_engine_model_loads_total{model="second"}') == loads + 1
    assert (
        metric(base_url, 'llm_engine_model_unloads_total{model="first",reason="lru"}')
        == unloads + 1
    )
    assert metric(base_url, "llm_engine_models_loaded") == 1
    assert metric(base_url, 'llm_engine_model_loaded{model="first"}') == 1
    assert (
        metric(
            base_url,
            'llm_engine_requests_total{endpoint="/v1/completions",model="second",status="200"}',
        )
        >= 1
    )


def test_llmserve_serve_takes_models_from_config_toml(tiny_gguf: Path, tmp_path: Path) -> None:
    """`llmserve serve --config` serves every [[models]] entry, a relative model_path too."""
    shutil.copy(tiny_gguf, tmp_path / "local.gguf")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[[models]]\nname = "absolute"\nmodel_path = {json.dumps(str(tiny_gguf))}\n'
        "preload = true\nparallel = 1\nmax_sequence_length = 256\n\n"
        '[[models]]\nname = "relative"\naliases = ["r"]\nmodel_path = "local.gguf"\n'
        "parallel = 1\nmax_sequence_length = 256\n",
        encoding="utf-8",
    )
    port = free_port()
    command = [sys.executable, "-m", "llmserve", "serve", "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ENGINE_")}
    with (tmp_path / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=tmp_path, env=env, stderr=stderr
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(base_url):
            assert process.poll() is None, (tmp_path / "stderr.log").read_text()
            assert time.monotonic() < deadline, "the server was not ready in time"
            time.sleep(0.05)
        models = httpx.get(f"{base_url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["absolute", "relative"]
        body = {"model": "r", "prompt": PROMPT, "max_tokens": 4}
        assert httpx.post(f"{base_url}/v1/completions", json=body).json()["model"] == "relative"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz").status_code == 200
    except httpx.TransportError:
        return False
