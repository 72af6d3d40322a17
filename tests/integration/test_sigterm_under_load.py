"""SIGTERM to a real `llmserve serve` process with streams generating and queued: every request
ends cleanly (its whole answer, or a 503 in the OpenAI envelope), none hangs, new requests are
refused, and the process exits 0 within its grace period."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support.process import Server, running_server
from tests.support.server import eventually

CLIENT_TIMEOUT_S = 120.0  # a request that hangs fails the test instead of stalling it
MESSAGES = [{"role": "user", "content": "tell me a story"}]


def gauge(base_url: str, name: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert match, f"{name} is not on /metrics"
    return float(match.group(1))


def streamed_chat(base_url: str, max_tokens: int) -> str:
    """One streamed chat to its end: 'length' (its whole answer) or the error code it got."""
    body = {"messages": MESSAGES, "max_tokens": max_tokens, "stream": True, "temperature": 0}
    with httpx.stream(
        "POST", f"{base_url}/v1/chat/completions", json=body, timeout=CLIENT_TIMEOUT_S
    ) as stream:
        assert stream.status_code == 200
        data = [line for line in stream.iter_lines() if line.startswith("data: ")]
    last = json.loads(data[-2 if data[-1] == "data: [DONE]" else -1].removeprefix("data: "))
    if data[-1] != "data: [DONE]":
        assert set(last["error"]) == {"message", "type", "param", "code"}, last
        return str(last["error"]["code"])
    return str(last["choices"][0]["finish_reason"])


def whole_chat(base_url: str, max_tokens: int) -> str:
    """One non-streamed chat: its finish reason, or the error code of its 503."""
    body = {"messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0}
    reply = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=CLIENT_TIMEOUT_S)
    if reply.status_code == 503:
        return str(reply.json()["error"]["code"])
    assert reply.status_code == 200, reply.text
    return str(reply.json()["choices"][0]["finish_reason"])


def load_then_sigterm(
    server: Server, pool: ThreadPoolExecutor, calls: list[Callable[[], str]]
) -> list[Future[str]]:
    """Start ``calls`` on one slot, wait until one generates and the rest queue, send SIGTERM,
    and check that from then on the server refuses new work."""
    futures = [pool.submit(call) for call in calls]
    base_url = server.base_url
    assert eventually(
        lambda: (
            gauge(base_url, "llm_engine_requests_running") == 1
            and gauge(base_url, "llm_engine_requests_waiting") == len(calls) - 1
        ),
        timeout_s=60,
    ), "the requests were never all in flight at once"
    server.process.send_signal(signal.SIGTERM)
    refused = httpx.post(f"{base_url}/v1/chat/completions", json={"messages": MESSAGES}, timeout=10)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "service_unavailable"
    return futures


def test_sigterm_under_load_serves_running_and_queued_requests_then_exits_0(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    """One slot, three streamed chats and a whole one (one generating, three queued), then
    SIGTERM: each runs to its end, new requests get 503, and the process exits 0."""
    with running_server(tiny_gguf, tmp_path) as server, ThreadPoolExecutor(4) as pool:
        calls = [lambda: streamed_chat(server.base_url, 600) for _ in range(3)]
        calls.append(lambda: whole_chat(server.base_url, 600))
        futures = load_then_sigterm(server, pool, calls)
        assert [f.result(timeout=CLIENT_TIMEOUT_S) for f in futures] == ["length"] * 4
        assert server.process.wait(timeout=60) == 0
    assert "Traceback" not in server.log()


def test_sigterm_grace_period_over_ends_requests_with_a_clean_503(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    """With a 1 s grace period and more work than fits in it, SIGTERM: requests still running
    or queued when it is over end with 503 service_unavailable (an error event in a stream,
    the envelope otherwise), never a connection cut mid-body, and the process exits 0 soon
    after the grace period."""
    with running_server(tiny_gguf, tmp_path, grace_s=1) as server, ThreadPoolExecutor(6) as pool:
        calls = [lambda: streamed_chat(server.base_url, 1900) for _ in range(4)]
        calls += [lambda: whole_chat(server.base_url, 1900) for _ in range(2)]
        futures = load_then_sigterm(server, pool, calls)
        signalled = time.monotonic()
        outcomes = [f.result(timeout=CLIENT_TIMEOUT_S) for f in futures]
        assert server.process.wait(timeout=60) == 0
        exited_after_s = time.monotonic() - signalled
    assert set(outcomes) <= {"length", "service_unavailable"}, outcomes
    assert "service_unavailable" in outcomes, "nothing was still in flight when grace was over"
    assert exited_after_s < 15, exited_after_s  # 1 s grace, 2 s for the 503s, a decode step
    log = server.log()
    assert "grace period over" in log
    assert "Traceback" not in log
