"""`python -m llmserve serve` as a real process on a free port, for the process-level tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import httpx

from tests.support.server import free_port

START_TIMEOUT_S = 60.0


def serve_command(model: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "llmserve", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--model-path", str(model),
        "--parallel", "1", "--max-sequence-length", "2048", *extra,
    ]  # fmt: skip


def clean_env(grace_s: int = 600) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ENGINE_")}
    # A loaded 2-core machine can take longer than the default 30 s drain bound to finish the
    # test's streams; the default is for the tests about draining, not about the bound.
    env["LLM_ENGINE_GRACEFUL_SHUTDOWN_S"] = str(grace_s)
    return env


def serve_until_exit(model: Path, folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run `llmserve serve` on ``model`` in ``folder`` until it exits (a start that fails)."""
    return subprocess.run(
        serve_command(model, free_port(), *extra),
        cwd=folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )


@attrs.frozen
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text()


@contextmanager
def running_server(model: Path, folder: Path, *extra: str, grace_s: int = 600) -> Iterator[Server]:
    """A running `llmserve serve` on ``model``, ready; killed if the block leaves it alive."""
    port = free_port()
    stderr = folder / "stderr.log"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            serve_command(model, port, *extra),
            cwd=folder,
            env=clean_env(grace_s),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    server = Server(process, f"http://127.0.0.1:{port}", stderr)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(server.base_url):
            assert process.poll() is None, server.log()
            assert time.monotonic() < deadline, "the server was not ready in time"
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz").status_code == 200
    except httpx.TransportError:
        return False
