"""Long-prompt prefill: TTFT of long distinct prompts, one request at a time.

Streamed /v1/completions with a few output tokens, so TTFT is almost all prompt processing.
Prefill rate = prompt tokens / TTFT (it includes the HTTP round trip and the first decode step,
both small next to thousands of prompt tokens). Prompt tokens are ``usage.prompt_tokens`` where
the server streams usage, else the count of the model's own tokenizer (``TokenCounter``); both
are kept per request, so a mismatch shows in the JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from perf.longprompts import TokenCounter, long_prompt, prompt_seed
from perf.stats import median, percentile
from perf.workloads import Deadline, RequestResult, Target, stream_completion

# Enough to see the stream start and end normally; decoding is the decode workload's business.
PREFILL_MAX_TOKENS = 8


@dataclass
class PrefillResult:
    """One long-prompt request."""

    length: int  # the prompt length asked for, in tokens: the table's grouping
    local_tokens: int  # the prompt's tokens by the model's tokenizer
    request: RequestResult

    @property
    def prompt_tokens(self) -> int:
        """What the server reported, else the local count."""
        reported = self.request.prompt_tokens
        return reported if reported is not None else self.local_tokens

    @property
    def prefill_tok_s(self) -> float:
        ttft = self.request.ttft
        return self.prompt_tokens / ttft if self.request.ok and ttft > 0 else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "length": self.length,
            "local_tokens": self.local_tokens,
            "prefill_tok_s": self.prefill_tok_s,
            **self.request.to_json(),
        }


def prefill_order(lengths: Sequence[int], reps: int) -> list[int]:
    """Lengths alternated (1000, 3000, 1000, 3000, ...): drift during the run hits all alike."""
    return [length for _ in range(reps) for length in lengths]


async def run_prefill(
    client: httpx.AsyncClient,
    target: Target,
    counter: TokenCounter,
    lengths: Sequence[int],
    reps: int,
    round_index: int,
    deadline: Deadline,
    results: list[PrefillResult],
) -> None:
    """``reps`` requests of each length, one at a time, each with a prompt of its own."""
    for index, length in enumerate(prefill_order(lengths, reps)):
        if deadline.expired:
            return
        prompt = long_prompt(prompt_seed("prefill", round_index, index), length)
        local = counter.count(prompt)  # before the request: tokenizing is not timed
        request = await stream_completion(client, target, prompt, deadline, PREFILL_MAX_TOKENS)
        results.append(PrefillResult(length, local, request))


def summarize_prefill(results: Sequence[PrefillResult], lengths: Sequence[int]) -> dict[str, float]:
    """Per length: TTFT p50/p95, median prefill tok/s and median prompt tokens."""
    summary: dict[str, float] = {}
    for length in lengths:
        ok = [r for r in results if r.length == length and r.request.ok]
        ttfts = [r.request.ttft * 1000 for r in ok]
        key = f"prefill.{length}"
        summary[f"{key}.ttft_p50_ms"] = percentile(ttfts, 50)
        summary[f"{key}.ttft_p95_ms"] = percentile(ttfts, 95)
        summary[f"{key}.tok_s"] = median([r.prefill_tok_s for r in ok])
        summary[f"{key}.prompt_tokens"] = median([float(r.prompt_tokens) for r in ok])
        summary[f"{key}.reported"] = float(sum(r.request.prompt_tokens is not None for r in ok))
    return summary
