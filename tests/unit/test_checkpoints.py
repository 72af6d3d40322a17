"""Checkpoints: character offsets become token positions, and prompt chunks end at them."""

from __future__ import annotations

from llmserve.engine.checkpoints import (
    chunk_size,
    keep_reused,
    open_checkpoints,
    token_positions,
)
from llmserve.engine.jobs import Group, Job, Run
from llmserve.engine.prefix_cache import BLOCK, PrefixCache
from llmserve.engine.protocol import SamplingParams

PROMPT = "x" * 100 + "y" * 100


class _Sink:
    cancelled = False


def by_chars(text: str) -> list[int]:
    """A tokenizer of one token per character, BOS first."""
    return [1, *map(ord, text)]


def pairs(text: str) -> list[int]:
    """A tokenizer of one token per two characters: a token may span an offset."""
    return [1, *(hash(text[i : i + 2]) for i in range(0, len(text), 2))]


def job(tokens: list[int], checkpoints: tuple[int, ...], cache_prompt: bool = True) -> Job:
    return Job(
        tokens=tokens,
        max_tokens=1,
        stop=(),
        sampling=SamplingParams(),
        sink=_Sink(),
        checkpoints=checkpoints,
        cache_prompt=cache_prompt,
    )


def test_an_offset_becomes_the_tokens_before_it() -> None:
    """With a token per character, offset o is position o + 1 (BOS first)."""
    tokens = by_chars(PROMPT)
    assert token_positions(PROMPT, [100], tokens, by_chars) == (101,)


def test_a_token_spanning_the_offset_is_left_out() -> None:
    """An offset inside a two-character token stops before that token."""
    tokens = pairs(PROMPT)
    assert token_positions(PROMPT, [101], tokens, pairs) == (51,)


def test_short_end_and_repeated_offsets_are_dropped() -> None:
    """Offsets too short for the cache, at the end or repeated are not checkpoints."""
    tokens = by_chars(PROMPT)
    offsets = [5, BLOCK + 10, BLOCK + 10, len(PROMPT), 0]
    assert token_positions(PROMPT, offsets, tokens, by_chars) == (BLOCK + 11,)


def test_positions_come_sorted() -> None:
    """Offsets in any order give ascending positions."""
    tokens = by_chars(PROMPT)
    assert token_positions(PROMPT, [150, 60], tokens, by_chars) == (61, 151)


def test_open_checkpoints_skip_what_the_cache_served() -> None:
    """Checkpoints at or before the reused prefix, or at the prompt's end, are not saved."""
    assert open_checkpoints(job(list(range(200)), (40, 100, 150)), reuse=100) == [150]


def test_a_job_computed_from_scratch_saves_no_checkpoints() -> None:
    """cache_prompt=False keeps nothing for other requests."""
    assert open_checkpoints(job(list(range(200)), (40,), cache_prompt=False), reuse=0) == []


def test_a_chunk_ends_at_the_next_checkpoint() -> None:
    """The step's chunk is cut to end exactly at the next checkpoint; else the budget."""
    tokens = list(range(200))
    run = Run(
        job=job(tokens, (100,)),
        sampler=None,  # type: ignore[arg-type]  # no sampling here
        text=None,  # type: ignore[arg-type]
        pending=tokens,
        group=Group(remaining=1, cached_tokens=0),
        checkpoints=[100],
    )
    assert chunk_size(run, base=64, budget=64) == 36
    assert chunk_size(run, base=0, budget=64) == 64
    run.checkpoints = []
    assert chunk_size(run, base=64, budget=64) == 64


def test_a_reused_prefix_at_a_checkpoint_is_kept() -> None:
    """An entry held for exactly a checkpoint's prefix that the job reused becomes kept."""
    cache = PrefixCache(identity="m", ram_bytes=1 << 20)
    tokens = list(range(200))
    cache.store(tokens[:100], 0, bytearray(10))
    keep_reused(cache, job(tokens, (100, 150)), reuse=120)
    hit = cache.lookup([*tokens[:100], 7])
    assert hit is not None
    assert hit.entry.kept
