"""[model] model_path as a store name or REPO_ID[:PATTERN]: resolved, and pulled when missing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest

from llmserve.config import Settings, load_settings
from llmserve.errors import ConfigError, DownloadFailed
from llmserve.models.resolve import resolve_model_path
from tests.support.fake_hub import FakeHub

OFFLINE = {"HF_HUB_OFFLINE": "1"}


@pytest.fixture(name="models_dir")
def fixture_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ./config.toml, and relative paths resolve in here
    return tmp_path / "models"


def settings(model_path: str, models_dir: Path) -> Settings:
    flags = {"model_path": model_path, "models_dir": str(models_dir)}
    return load_settings(None, {}, flags)


def put(models_dir: Path, relative: str) -> Path:
    path = models_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF")
    return path


def test_repo_reference_is_pulled_once_then_served_from_the_store(
    fake_hub: FakeHub, models_dir: Path
) -> None:
    """REPO:PATTERN not in the store is pulled at start; the next start asks the Hub nothing."""
    fake_hub.add_repo("acme/tiny-GGUF", {"tiny-Q4_K_M.gguf": b"GGUF4", "tiny-Q8_0.gguf": b"8"})
    configured = settings("acme/tiny-GGUF:Q4_K_M", models_dir)
    path = resolve_model_path(configured, os.environ)
    assert path == models_dir / "acme" / "tiny-GGUF" / "tiny-Q4_K_M.gguf"
    assert path.read_bytes() == b"GGUF4"
    requests = len(fake_hub.seen)
    assert resolve_model_path(configured, os.environ) == path
    assert len(fake_hub.seen) == requests


def test_pull_at_start_reports_progress_in_the_logs(
    fake_hub: FakeHub, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A pull while the server starts logs the download (no terminal for a bar there)."""
    fake_hub.add_repo("acme/one-GGUF", {"one.gguf": bytes(50_000)})
    with caplog.at_level(logging.INFO, logger="llmserve.hub"):
        resolve_model_path(settings("acme/one-GGUF", models_dir), os.environ)
    messages = [r.getMessage() for r in caplog.records if r.name == "llmserve.hub"]
    assert "model acme/one-GGUF is not in the store: pulling it from the Hub" in messages
    assert "downloading one.gguf: 50.0 kB" in messages
    assert any(m.startswith("downloaded one.gguf: 100%, 50.0 kB") for m in messages)


def test_store_name_resolves_without_the_network(models_dir: Path) -> None:
    """A model name from `llmserve models`, full or short, needs no Hub."""
    path = put(models_dir, "acme/tiny-GGUF/tiny-Q4_K_M.gguf")
    for name in ("acme/tiny-GGUF/tiny-Q4_K_M", "tiny-Q4_K_M"):
        assert resolve_model_path(settings(name, models_dir), OFFLINE) == path


def test_repo_reference_already_pulled_works_offline(models_dir: Path) -> None:
    """With HF_HUB_OFFLINE=1, a REPO:PATTERN already in the store is served."""
    path = put(models_dir, "acme/tiny-GGUF/tiny-Q4_K_M.gguf")
    assert resolve_model_path(settings("acme/tiny-GGUF:q4_k_m", models_dir), OFFLINE) == path


def test_repo_reference_not_pulled_fails_offline(models_dir: Path) -> None:
    """With HF_HUB_OFFLINE=1, a missing REPO:PATTERN is one clear error."""
    with pytest.raises(DownloadFailed, match="HF_HUB_OFFLINE is set"):
        resolve_model_path(settings("acme/tiny-GGUF:Q4_K_M", models_dir), OFFLINE)


def test_name_that_is_nothing_known_is_a_config_error(models_dir: Path) -> None:
    """Neither file, store name nor repo id: the error lists the three accepted forms."""
    with pytest.raises(ConfigError, match=r"model file not found: gemma .*REPO_ID\[:PATTERN\]"):
        resolve_model_path(settings("gemma", models_dir), OFFLINE)


def test_tests_cannot_reach_the_real_hub() -> None:
    """Outside the fake_hub fixture, huggingface_hub is offline and aimed at a dead port."""
    assert hf_constants.HF_HUB_OFFLINE
    assert hf_constants.ENDPOINT.startswith("http://127.0.0.1:")
