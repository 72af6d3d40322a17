"""Sends one ``SoakRequest`` and sorts what came back into an outcome.

Outcomes the soak expects: ``ok``, ``cut`` (we hung up mid-stream), ``abandoned`` (we hung up
on a non-streamed request), ``rejected`` (a bad request refused with a 4xx envelope),
``overloaded`` (429 with an envelope). Anything else is a finding: ``server_error`` (5xx),
``bad_envelope``, ``unexpected_4xx`` (a good request refused), ``accepted_bad`` (a bad request
served), ``bad_answer`` (a 200 that breaks the contract), ``stream_error`` (an error event in
a stream), ``transport`` (the connection failed under us), ``timeout``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from perf.soak_answers import StreamFold, answer_problem, answer_text, envelope_problem
from perf.soak_requests import CHAT, SoakRequest
from perf.sse import DONE, event_data

EXPECTED = frozenset({"ok", "cut", "abandoned", "rejected", "overloaded"})


@dataclass
class Outcome:
    kind: str
    outcome: str
    status: int | None
    seconds: float
    detail: str = ""
    text: str = ""  # choice 0's answer, for the conversation
    prompt_tokens: int | None = None
    cached_tokens: int | None = None

    @property
    def expected(self) -> bool:
        return self.outcome in EXPECTED

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "outcome": self.outcome,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


async def send(client: httpx.AsyncClient, request: SoakRequest, timeout_s: float) -> Outcome:
    """Send ``request``; never raises for HTTP trouble (it becomes the outcome)."""
    start = time.monotonic()
    outcome = Outcome(kind=request.kind, outcome="transport", status=None, seconds=0.0)
    limit = request.abandon_after_s if request.abandon_after_s is not None else timeout_s
    try:
        async with asyncio.timeout(limit):
            await _exchange(client, request, outcome)
    except TimeoutError:
        if request.abandon_after_s is not None:
            outcome.outcome, outcome.detail = "abandoned", ""
        else:
            outcome.outcome, outcome.detail = "timeout", f"no answer within {limit:.0f}s"
    except httpx.HTTPError as exc:
        outcome.outcome, outcome.detail = "transport", f"{type(exc).__name__}: {exc}"
    except ValueError as exc:  # a stream event that is not JSON
        outcome.outcome, outcome.detail = "bad_answer", f"bad stream event: {exc}"
    outcome.seconds = time.monotonic() - start
    return outcome


async def _exchange(client: httpx.AsyncClient, request: SoakRequest, outcome: Outcome) -> None:
    kwargs: dict[str, Any] = (
        {"content": request.raw, "headers": {"Content-Type": "application/json"}}
        if request.raw is not None
        else {"json": request.body}
    )
    async with client.stream("POST", request.path, **kwargs) as response:
        outcome.status = response.status_code
        if response.status_code != 200 or not request.stream:
            raw = await response.aread()
            _judge_body(request, response.status_code, raw, outcome)
            return
        await _read_stream(request, response, outcome)


def _judge_body(request: SoakRequest, status: int, raw: bytes, outcome: Outcome) -> None:
    try:
        payload: object = json.loads(raw)
    except ValueError:
        payload = None
    if status >= 500:
        outcome.outcome, outcome.detail = "server_error", raw[:300].decode(errors="replace")
        return
    if status >= 400:
        problem = envelope_problem(status, payload)
        if problem is not None:
            outcome.outcome, outcome.detail = "bad_envelope", problem
        elif status == 429:
            outcome.outcome = "overloaded"
        elif request.bad:
            outcome.outcome = "rejected"
        else:
            outcome.outcome, outcome.detail = "unexpected_4xx", _message(payload)
        return
    if request.bad:
        outcome.outcome, outcome.detail = "accepted_bad", f"HTTP {status}"
        return
    _judge_answer(request, payload, outcome)


def _judge_answer(request: SoakRequest, payload: object, outcome: Outcome) -> None:
    problem = answer_problem(request, payload)
    if problem is not None:
        outcome.outcome, outcome.detail = "bad_answer", problem
        return
    assert isinstance(payload, dict)  # answer_problem checked it
    outcome.outcome = "ok"
    choice0 = next(c for c in payload["choices"] if c.get("index") == 0)
    outcome.text = answer_text(choice0)
    usage = payload.get("usage")
    if isinstance(usage, dict):
        outcome.prompt_tokens = usage.get("prompt_tokens")
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            outcome.cached_tokens = details.get("cached_tokens")


async def _read_stream(request: SoakRequest, response: httpx.Response, outcome: Outcome) -> None:
    fold, events = StreamFold(), 0
    if request.cut_after == 0:
        outcome.outcome = "cut"  # hang up as soon as the headers are in
        return
    async for data in event_data(response.aiter_lines()):
        if data == DONE:
            break
        events += 1
        fold.feed(json.loads(data))
        if fold.error is not None:
            outcome.outcome, outcome.detail = "stream_error", json.dumps(fold.error)[:300]
            return
        if request.cut_after is not None and events >= request.cut_after:
            outcome.outcome = "cut"  # leaving the block closes the connection mid-stream
            return
    else:
        outcome.outcome, outcome.detail = "bad_answer", "stream ended without [DONE]"
        return
    if request.bad:
        outcome.outcome, outcome.detail = "accepted_bad", "streamed"
        return
    _judge_answer(request, fold.response(chat=request.path == CHAT), outcome)


def _message(payload: object) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message", ""))[:300]
    return ""
