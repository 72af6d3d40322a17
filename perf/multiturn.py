"""Multi-turn chat workloads: conversations whose every turn re-sends the whole history.

- **multiturn** (sequential): one conversation at a time, turn after turn. A server keeping the
  last request's KV (a live slot, or llama_cpp.server's single context) can reuse it.
- **interleaved**: more conversations than sequence slots take turns round-robin, one request
  at a time, so when a conversation comes back its KV has left every slot: only a prefix cache
  saves re-reading the history.

What matters is the TTFT of turns 2 and later (history cached) against turn 1 (cold).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from perf.conversations import Conversation
from perf.stats import finite, median, percentile, ratio
from perf.workloads import Deadline, RequestResult, Target, stream_request

# The target of issue 3: turns 2+ at most this fraction of turn 1's TTFT with the cache on.
GOAL_LATER_OVER_FIRST = 0.2


@dataclass
class TurnResult:
    """One turn of one conversation."""

    conversation: int  # the conversation's seed
    turn: int  # 1-based
    request: RequestResult

    def to_json(self) -> dict[str, Any]:
        return {"conversation": self.conversation, "turn": self.turn, **self.request.to_json()}


def chat_body(target: Target, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    return {
        "model": target.model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **target.extra_body,
    }


async def take_turn(
    client: httpx.AsyncClient,
    target: Target,
    conversation: Conversation,
    deadline: Deadline,
) -> TurnResult:
    """Ask the conversation's next question, stream the answer, and add it to the history."""
    messages = conversation.ask()
    body = chat_body(target, messages, target.max_tokens)
    result = await stream_request(client, target, "/v1/chat/completions", body, deadline)
    conversation.answer(result.text)
    return TurnResult(conversation.seed, conversation.turns_asked, result)


async def run_sequential(
    client: httpx.AsyncClient,
    target: Target,
    seeds: Sequence[int],
    turns: int,
    deadline: Deadline,
    results: list[TurnResult],
) -> None:
    """Each conversation's ``turns`` turns back to back, one conversation after another."""
    for seed in seeds:
        conversation = Conversation(seed)
        for _ in range(turns):
            if deadline.expired:
                return
            turn = await take_turn(client, target, conversation, deadline)
            results.append(turn)
            if not turn.request.ok:
                break  # the rest of a broken conversation measures nothing useful


async def run_interleaved(
    client: httpx.AsyncClient,
    target: Target,
    seeds: Sequence[int],
    turns: int,
    deadline: Deadline,
    results: list[TurnResult],
) -> None:
    """Turn 1 of every conversation, then turn 2 of every one, ...: one request at a time.

    One at a time on purpose: TTFT then measures restoring the history, not queueing behind
    other conversations (llama_cpp.server serves one request at a time anyway).
    """
    conversations = [Conversation(seed) for seed in seeds]
    broken: set[int] = set()
    for _ in range(turns):
        for conversation in conversations:
            if deadline.expired:
                return
            if conversation.seed in broken:
                continue
            turn = await take_turn(client, target, conversation, deadline)
            results.append(turn)
            if not turn.request.ok:
                broken.add(conversation.seed)


def summarize_turns(prefix: str, turns: Sequence[TurnResult], n_turns: int) -> dict[str, float]:
    """Per-turn TTFT medians, turns 2+ pooled, their ratio to turn 1, and cached tokens.

    Keys start with ``prefix`` ("multiturn" or "interleaved"); a missing number is NaN.
    """
    ok = [t for t in turns if t.request.ok]
    first = [t for t in ok if t.turn == 1]
    later = [t for t in ok if t.turn > 1]
    summary: dict[str, float] = {}
    for number in range(1, n_turns + 1):
        ttfts = finite(t.request.ttft * 1000 for t in ok if t.turn == number)
        summary[f"{prefix}.ttft_turn{number}_ms"] = median(ttfts)
    later_ttfts = finite(t.request.ttft * 1000 for t in later)
    summary[f"{prefix}.ttft_first_ms"] = median(finite(t.request.ttft * 1000 for t in first))
    summary[f"{prefix}.ttft_later_ms"] = median(later_ttfts)
    summary[f"{prefix}.ttft_later_p95_ms"] = percentile(later_ttfts, 95)
    summary[f"{prefix}.later_over_first"] = ratio(
        summary[f"{prefix}.ttft_later_ms"], summary[f"{prefix}.ttft_first_ms"]
    )
    summary[f"{prefix}.prompt_tokens_first"] = _median_reported(
        t.request.prompt_tokens for t in first
    )
    summary[f"{prefix}.prompt_tokens_last"] = _median_reported(
        t.request.prompt_tokens for t in ok if t.turn == n_turns
    )
    summary[f"{prefix}.cached_tokens_later"] = _median_reported(
        t.request.cached_tokens for t in later
    )
    summary[f"{prefix}.cached_share_later"] = _median_reported_share(later)
    return summary


def _median_reported(values: Iterable[int | None]) -> float:
    """Median of the values a server reported; NaN when it reported none (not zero)."""
    return median([float(v) for v in values if v is not None])


def _median_reported_share(turns: Sequence[TurnResult]) -> float:
    """Median fraction of the prompt that came from the cache, over turns that report both."""
    shares = [
        t.request.cached_tokens / t.request.prompt_tokens
        for t in turns
        if t.request.cached_tokens is not None and t.request.prompt_tokens
    ]
    return median(shares)


def goal_verdict(
    summaries: dict[str, dict[str, float]], subject: str, peer: str, turns: int = 5
) -> list[str]:
    """Issue 3's goal for sequential multi-turn chat, in words: met, NOT met, or not measured.

    Never silently absent: a run that could not measure it says so.
    """
    later_turns = f"turns 2-{turns} median TTFT"
    mine = summaries.get(subject, {})
    share = mine.get("multiturn.later_over_first", math.nan)
    later = mine.get("multiturn.ttft_later_ms", math.nan)
    theirs = summaries.get(peer, {}).get("multiturn.ttft_later_ms", math.nan)
    first_goal = f"Goal: {subject} {later_turns} ≤ 1/5 of its turn 1's:"
    second_goal = f"Goal: {subject} {later_turns} below {peer}'s:"
    return [
        f"{first_goal} not measured."
        if math.isnan(share)
        else f"{first_goal} {_met(share <= GOAL_LATER_OVER_FIRST)} ({share:.2f} of turn 1's).",
        f"{second_goal} not measured."
        if math.isnan(later) or math.isnan(theirs)
        else f"{second_goal} {_met(later < theirs)} ({later:.0f} ms vs {theirs:.0f} ms).",
    ]


def _met(condition: bool) -> str:
    return "met" if condition else "NOT met"
