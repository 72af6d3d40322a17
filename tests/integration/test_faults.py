"""Faults around a running server on the tiny model: the ground moves, requests still work."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from llmserve.api.app import create_app
from llmserve.config import CacheSettings, ModelSettings, Settings
from tests.support.server import serve_app
from tests.support.tinyserver import MODEL, client_for, tiny_server


def test_model_file_vanishing_after_load_does_not_stop_serving(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    """Deleting the GGUF under a loaded server (an upgrade, a cleanup) breaks no request."""
    path = tmp_path / "vanishing.gguf"
    shutil.copyfile(tiny_gguf, path)
    with tiny_server(path) as base_url, client_for(base_url) as client:
        path.unlink()
        for _ in range(3):
            reply = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
            assert reply.usage is not None
            assert reply.usage.completion_tokens == 4


def test_disk_cache_folder_turning_unwritable_breaks_no_request(
    tiny_gguf: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk tier's folder stops taking writes mid-run: every request is still served, one
    warning (no traceback) says spills are dropped, no partial file is left, and spilling
    resumes once the folder is back.

    Simulated: tests run as root, which ignores permission bits and cannot mount here, so a
    regular file takes the folder's place; creating a file under it then fails (ENOTDIR) at
    the same call a read-only folder fails (EROFS/EACCES).
    """
    folder = tmp_path / "kv"
    settings = Settings(
        model=ModelSettings(model_path=str(tiny_gguf), name=MODEL, parallel=1),
        cache=CacheSettings(max_size_mb=1, disk_dir=str(folder), disk_size_mb=64),
    )
    with (
        caplog.at_level(logging.INFO, logger="llmserve.engine.prefix_cache"),
        serve_app(create_app(settings)) as base_url,
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0) as client,
    ):
        requests = iter(range(1000))

        def serve_until(done: Callable[[], bool]) -> None:
            """Distinct long prompts, each answered in full, until ``done`` (at most 40)."""
            for _ in range(40):
                prompt = f"story {next(requests)}: " + "once upon a time " * 60
                reply = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4)
                assert reply.usage is not None
                assert reply.usage.completion_tokens == 4
                if done():
                    return
            raise AssertionError("40 requests and still not done")

        serve_until(lambda: bool(list(folder.glob("*.kv"))))
        folder.rename(tmp_path / "kv.before")
        folder.write_bytes(b"")
        serve_until(lambda: "takes no writes" in caplog.text)
        for _ in range(4):
            serve_until(lambda: True)  # further failed spills: no further warning
        folder.unlink()
        serve_until(lambda: bool(list(folder.glob("*.kv"))))
    faults = [r for r in caplog.records if "takes no writes" in r.getMessage()]
    assert len(faults) == 1, caplog.text
    assert faults[0].exc_info is None
    assert "takes writes again" in caplog.text
    assert list(folder.glob("*.kv")), "spilling did not resume"
    assert not list(tmp_path.rglob("*.tmp"))
