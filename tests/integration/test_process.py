"""`python -m llmserve serve` as a real process: SIGTERM drains and exits 0; a model that cannot
load ends the process with one line and status 1."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.process import Server, running_server, serve_until_exit

STREAM_TOKENS = 1500  # in flight for 0.3 s (fast machine) to seconds while the test looks


@pytest.fixture(name="server")
def fixture_server(tiny_gguf: Path, tmp_path: Path) -> Iterator[Server]:
    """A running `llmserve serve` on the tiny model (one slot), ready."""
    with running_server(tiny_gguf, tmp_path) as server:
        yield server


def test_sigterm_drains_in_flight_requests_and_exits_0(server: Server) -> None:
    """SIGTERM mid-stream: /readyz 503 draining and new requests 503 at once, the stream runs
    to its end, then the process exits with status 0."""
    process, base_url = server.process, server.base_url
    body = {"prompt": "hello", "max_tokens": STREAM_TOKENS, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=60) as stream:
        lines = stream.iter_lines()  # kept: dropping the iterator would close the connection
        assert next(lines).startswith("data: ")
        process.send_signal(signal.SIGTERM)

        readyz = httpx.get(f"{base_url}/readyz", timeout=10)
        assert (readyz.status_code, readyz.json()) == (503, {"status": "draining"})
        refused = httpx.post(f"{base_url}/v1/completions", json={"prompt": "x"}, timeout=10)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "service_unavailable"

        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    finish = json.loads(rest[-2].removeprefix("data: "))["choices"][0]["finish_reason"]
    assert finish == "length", "the stream was cut instead of finishing"
    assert process.wait(timeout=30) == 0
    assert "Traceback" not in server.log()


def test_sigterm_when_idle_exits_0_at_once(server: Server) -> None:
    """With nothing in flight, SIGTERM ends the process promptly with status 0."""
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=15) == 0


def serve_bad_model(
    tmp_path: Path, content: bytes, *flags: str
) -> subprocess.CompletedProcess[str]:
    """Run `llmserve serve` on a model file holding ``content``, until it exits."""
    model = tmp_path / "bad.gguf"
    model.write_bytes(content)
    return serve_until_exit(model, tmp_path, *flags)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"this is a text file, not a model\n", "not a GGUF file"),
        (b"GGUF" + bytes(64), "llama.cpp failed to load the model"),
    ],
    ids=["not-gguf", "corrupt-gguf"],
)
def test_model_that_cannot_load_is_one_line_and_exit_1(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """The load fails after the port is open: still one line on stderr, status 1."""
    result = serve_bad_model(tmp_path, content, "--log-level", "critical")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"llmserve: error: {reason}: {tmp_path / 'bad.gguf'}"]


def test_load_failure_at_info_level_has_no_traceback(tmp_path: Path) -> None:
    """At the default log level the failure is logged as JSON, without a traceback wall."""
    result = serve_bad_model(tmp_path, b"not a model")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    *logs, last = result.stderr.splitlines()
    assert last == f"llmserve: error: not a GGUF file: {tmp_path / 'bad.gguf'}"
    assert all(json.loads(line) for line in logs)
