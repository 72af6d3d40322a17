"""The HTTP workloads: one streamed request, single-stream runs, concurrent runs."""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from perf.prompts import PromptPool
from perf.sse import (
    DONE,
    chunk_completion_tokens,
    chunk_finish_reason,
    chunk_prompt_tokens,
    chunk_text,
    event_data,
)
from perf.stats import decode_rate, gaps, percentile, rate


class Deadline:
    """The benchmark's overall time limit; workloads stop issuing requests once it passes."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0


@dataclass(frozen=True)
class Target:
    """One running server as the workloads see it."""

    base_url: str
    model: str
    extra_body: dict[str, Any]
    max_tokens: int
    request_timeout: float


@dataclass
class RequestResult:
    """One streamed request. Times are seconds on the monotonic clock, relative to t_start."""

    ok: bool
    tokens: int = 0  # chunks carrying text: one per token on the servers compared
    usage_tokens: int | None = None  # usage.completion_tokens where the server reports it
    prompt_tokens: int | None = None  # usage.prompt_tokens where the server reports it
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens, likewise
    ttft: float = math.nan
    t_last: float = math.nan
    duration: float = math.nan
    error: str | None = None
    finish_reason: str | None = None  # the last one a chunk carried
    done: bool = False  # the stream's closing [DONE] arrived
    # The generated text: a multi-turn chat sends it back as the assistant's message.
    text: str = field(default="", repr=False)
    # Arrival of each text chunk: the inter-token latencies. Kept out of the JSON (its
    # percentiles go there), which would otherwise hold every token of the run.
    times: list[float] = field(default_factory=list, repr=False)

    @property
    def decode_tok_s(self) -> float:
        return decode_rate(self.tokens, self.ttft, self.t_last)

    @property
    def itl(self) -> list[float]:
        """Inter-token latencies in seconds (tokens - 1 of them)."""
        return gaps(self.times)

    @property
    def complete(self) -> bool:
        """Answered to the end: no error, a finish_reason, and the closing [DONE].

        A stream that stops without them was cut short (server crash, dropped connection,
        time limit), even where no exception was raised.
        """
        return self.ok and self.done and self.finish_reason is not None

    def to_json(self) -> dict[str, Any]:
        numbers = {k: v for k, v in asdict(self).items() if k not in ("text", "times")}
        itl_ms = [gap * 1000 for gap in self.itl]
        return {
            **numbers,
            "decode_tok_s": self.decode_tok_s,
            "complete": self.complete,
            "itl_p50_ms": percentile(itl_ms, 50),
            "itl_p95_ms": percentile(itl_ms, 95),
            "itl_max_ms": max(itl_ms, default=math.nan),
        }


@dataclass
class ConcurrencyResult:
    concurrency: int
    wall_s: float
    requests: list[RequestResult]

    @property
    def total_tokens(self) -> int:
        return sum(r.tokens for r in self.requests if r.ok)

    @property
    def aggregate_tok_s(self) -> float:
        return rate(self.total_tokens, self.wall_s)

    @property
    def requests_per_s(self) -> float:
        """Requests answered to the end per second of the level's wall time."""
        return rate(sum(r.complete for r in self.requests), self.wall_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "wall_s": self.wall_s,
            "total_tokens": self.total_tokens,
            "aggregate_tok_s": self.aggregate_tok_s,
            "requests_per_s": self.requests_per_s,
            "requests": [r.to_json() for r in self.requests],
        }


def completion_body(target: Target, prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": target.model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **target.extra_body,
    }


async def stream_completion(
    client: httpx.AsyncClient, target: Target, prompt: str, deadline: Deadline, max_tokens: int
) -> RequestResult:
    """POST one streamed /v1/completions and time its tokens; never raises for HTTP trouble."""
    body = completion_body(target, prompt, max_tokens)
    return await stream_request(client, target, "/v1/completions", body, deadline)


async def stream_request(
    client: httpx.AsyncClient,
    target: Target,
    path: str,
    body: dict[str, Any],
    deadline: Deadline,
) -> RequestResult:
    """POST one streamed request to ``path`` and time its tokens; never raises for HTTP trouble."""
    timeout = min(target.request_timeout, deadline.remaining())
    start = time.monotonic()
    result = RequestResult(ok=False)
    try:
        async with asyncio.timeout(timeout):
            await _consume_stream(client, f"{target.base_url}{path}", body, start, result)
        result.ok = result.error is None
    except TimeoutError:
        result.error = f"timed out after {timeout:.1f}s"
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    except ValueError as exc:  # a chunk that is not JSON
        result.error = f"bad chunk: {exc}"
    result.duration = time.monotonic() - start
    return result


async def _consume_stream(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    start: float,
    result: RequestResult,
) -> None:
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            result.error = f"HTTP {response.status_code}: {text[:300]}"
            return
        async for data in event_data(response.aiter_lines()):
            if data == DONE:
                result.done = True
                return
            _record_chunk(json.loads(data), time.monotonic() - start, result)


def _record_chunk(chunk: dict[str, Any], now: float, result: RequestResult) -> None:
    if "error" in chunk:
        result.error = f"error chunk: {json.dumps(chunk['error'])[:300]}"
        return
    usage = chunk_completion_tokens(chunk)
    if usage is not None:
        result.usage_tokens = usage
        result.prompt_tokens, result.cached_tokens = chunk_prompt_tokens(chunk)
    result.finish_reason = chunk_finish_reason(chunk) or result.finish_reason
    text = chunk_text(chunk)
    if not text:
        return
    if result.tokens == 0:
        result.ttft = now
    result.tokens += 1
    result.t_last = now
    result.times.append(now)
    result.text += text


async def run_single(
    client: httpx.AsyncClient,
    target: Target,
    prompts: PromptPool,
    reps: int,
    deadline: Deadline,
    results: list[RequestResult],
) -> None:
    """One request at a time, ``reps`` times, appended to ``results`` as they finish."""
    for _ in range(reps):
        if deadline.expired:
            break
        results.append(
            await stream_completion(client, target, prompts.take(), deadline, target.max_tokens)
        )


async def run_concurrent(
    client: httpx.AsyncClient,
    target: Target,
    prompts: PromptPool,
    concurrency: int,
    per_client: int,
    deadline: Deadline,
) -> ConcurrencyResult:
    """``concurrency`` clients, each sending ``per_client`` requests back to back."""
    batches = [[prompts.take() for _ in range(per_client)] for _ in range(concurrency)]

    async def one_client(own: list[str]) -> list[RequestResult]:
        results = []
        for prompt in own:
            if deadline.expired:
                break
            results.append(
                await stream_completion(client, target, prompt, deadline, target.max_tokens)
            )
        return results

    start = time.monotonic()
    per_client_results = await asyncio.gather(*(one_client(own) for own in batches))
    wall = time.monotonic() - start
    return ConcurrencyResult(
        concurrency=concurrency,
        wall_s=wall,
        requests=[r for results in per_client_results for r in results],
    )


async def discover_model(client: httpx.AsyncClient, base_url: str) -> str:
    """The first model id the server lists: each server names the same GGUF differently."""
    response = await client.get(f"{base_url}/v1/models")
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])
