"""Mixed load: short streams decoding continuously while long prompts arrive.

``short`` clients each send short-prompt completions back to back; meanwhile one client sends
``long`` long-prompt requests, one after another with a pause between. A server that processes
a long prompt in one piece stalls every decoding stream for the whole prefill: that shows as the
short streams' inter-token latency p95 / max. Bounded: the short clients stop starting requests
once the long requests are done (or ``max_seconds`` pass), and finish the ones in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from perf.longprompts import long_prompt, prompt_seed
from perf.prefill import PREFILL_MAX_TOKENS
from perf.prompts import PromptPool
from perf.stats import finite, median, percentile, rate
from perf.workloads import Deadline, RequestResult, Target, stream_completion

# Short streams start first, so the first long prompt lands on a server already decoding.
LONG_START_DELAY_S = 1.0
# Between long requests: the short streams recover, then the next long prompt hits them again.
LONG_PAUSE_S = 1.0


@dataclass(frozen=True)
class MixedShape:
    short: int  # clients decoding short prompts continuously
    long: int  # long-prompt requests, one after another
    long_tokens: int  # length of each long prompt
    max_seconds: float  # short clients stop starting requests after this


@dataclass
class MixedResult:
    wall_s: float = 0.0
    short: list[RequestResult] = field(default_factory=list)
    long: list[RequestResult] = field(default_factory=list)

    @property
    def requests(self) -> list[RequestResult]:
        return [*self.short, *self.long]

    def to_json(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "short": [r.to_json() for r in self.short],
            "long": [r.to_json() for r in self.long],
        }


async def run_mixed(
    client: httpx.AsyncClient,
    target: Target,
    prompts: PromptPool,
    shape: MixedShape,
    round_index: int,
    deadline: Deadline,
    result: MixedResult,
) -> None:
    """Short streams and long prompts together; fills ``result`` as requests finish."""
    long_done = asyncio.Event()
    start = time.monotonic()

    def keep_going() -> bool:
        within = time.monotonic() - start < shape.max_seconds
        return not long_done.is_set() and within and not deadline.expired

    async def short_client() -> None:
        while keep_going():
            request = await stream_completion(
                client, target, prompts.take(), deadline, target.max_tokens
            )
            result.short.append(request)

    async def long_client() -> None:
        try:
            await asyncio.sleep(LONG_START_DELAY_S)
            for index in range(shape.long):
                if not keep_going():
                    return
                prompt = long_prompt(prompt_seed("mixed", round_index, index), shape.long_tokens)
                request = await stream_completion(
                    client, target, prompt, deadline, PREFILL_MAX_TOKENS
                )
                result.long.append(request)
                if index + 1 < shape.long:
                    await asyncio.sleep(LONG_PAUSE_S)
        finally:
            long_done.set()

    try:
        await asyncio.gather(long_client(), *(short_client() for _ in range(shape.short)))
    finally:
        result.wall_s = time.monotonic() - start


def summarize_mixed(results: Sequence[MixedResult]) -> dict[str, float]:
    """Short streams' ITL (pooled gaps), long requests' TTFT; throughput is a median of runs."""
    short_itl = [g * 1000 for res in results for r in res.short if r.ok for g in r.itl]
    long_ttft = [r.ttft * 1000 for res in results for r in res.long if r.ok]
    tokens = [sum(r.tokens for r in res.requests if r.ok) for res in results]
    completed = [sum(r.complete for r in res.requests) for res in results]
    aggregate = finite(rate(n, res.wall_s) for n, res in zip(tokens, results, strict=True))
    per_s = finite(rate(n, res.wall_s) for n, res in zip(completed, results, strict=True))
    return {
        "mixed.short_itl_p50_ms": percentile(short_itl, 50),
        "mixed.short_itl_p95_ms": percentile(short_itl, 95),
        "mixed.short_itl_max_ms": max(short_itl, default=float("nan")),
        "mixed.long_ttft_p50_ms": percentile(long_ttft, 50),
        "mixed.long_ttft_p95_ms": percentile(long_ttft, 95),
        "mixed.aggregate_tok_s": median(aggregate),
        "mixed.requests_per_s": median(per_s),
    }
