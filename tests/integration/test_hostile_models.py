"""Hostile or broken model files: a truncated or corrupt GGUF fails to load with a clear error,
and a server given one reports the failure instead of crashing or hanging."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from llmserve.api.app import create_app
from llmserve.config import ModelSettings, Settings
from llmserve.engine.model import LlamaModel
from llmserve.errors import ModelLoadError
from tests.support.server import eventually, serve_app


def truncated(fraction: float) -> Callable[[bytes], bytes]:
    return lambda data: data[: int(len(data) * fraction)]


def with_bytes(offset: int, patch: bytes) -> Callable[[bytes], bytes]:
    return lambda data: data[:offset] + patch + data[offset + len(patch) :]


def scrambled(data: bytes) -> bytes:
    """Two hundred random bytes overwritten in the header (metadata and vocabulary)."""
    rng = random.Random(0)
    out = bytearray(data)
    for _ in range(200):
        out[rng.randrange(24, 30_000)] = rng.randrange(256)
    return bytes(out)


CORRUPTIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "magic-only": (lambda data: data[:4], "failed to load"),
    "cut-in-metadata": (truncated(0.01), "failed to load"),
    "cut-in-tensor-data": (truncated(0.5), "not within the file bounds"),
    "last-byte-missing": (lambda data: data[:-1], "not within the file bounds"),
    "huge-key-count": (with_bytes(16, b"\xff" * 8), "key value pairs"),
    "future-version": (with_bytes(4, b"\x07\x00\x00\x00"), "version 7"),
    "scrambled-header": (scrambled, "failed to load"),
}


@pytest.fixture(name="corrupt_gguf")
def fixture_corrupt_gguf(tiny_gguf: Path, tmp_path: Path) -> Callable[[str], Path]:
    """Writes the tiny model with one of CORRUPTIONS applied; returns its path."""

    def write(name: str) -> Path:
        corrupt, _ = CORRUPTIONS[name]
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(corrupt(tiny_gguf.read_bytes()))
        return path

    return write


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_gguf_fails_to_load_with_a_clear_error(
    corrupt_gguf: Callable[[str], Path], name: str
) -> None:
    """A truncated or corrupt GGUF raises ModelLoadError naming the file and, where llama.cpp
    says it, why."""
    path = corrupt_gguf(name)
    with pytest.raises(ModelLoadError) as caught:
        LlamaModel(path)
    assert str(path) in caught.value.message
    assert CORRUPTIONS[name][1] in caught.value.message


def test_server_with_a_truncated_gguf_reports_failed(corrupt_gguf: Callable[[str], Path]) -> None:
    """A server given a truncated model stays up: /readyz says failed, /v1 answers 503."""
    settings = Settings(model=ModelSettings(model_path=str(corrupt_gguf("cut-in-tensor-data"))))
    with serve_app(create_app(settings), wait_ready=False) as base_url:

        def failed() -> bool:
            return httpx.get(f"{base_url}/readyz").json()["status"] == "failed"

        assert eventually(failed, timeout_s=30)
        response = httpx.post(
            f"{base_url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "service_unavailable"
