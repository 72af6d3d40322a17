"""Checkpoints: prompt positions whose KV state a client asked to keep (Anthropic cache_control).

The API layer finds where each marked block ends in the rendered prompt, as a character
offset; here those offsets become token positions, and the worker reads a prompt in chunks
that end exactly there, saving the state at each one as a kept prefix cache entry. On a
sliding-window model that is the only way a new session sharing just the marked prefix (the
system prompt and tools) can reuse it: a longer entry cannot be cut back to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llmserve.engine.jobs import Job, Run
from llmserve.engine.prefix_cache import BLOCK, PrefixCache, common_prefix


def token_positions(
    prompt: str,
    offsets: Sequence[int],
    tokens: Sequence[int],
    tokenize: Callable[[str], list[int]],
) -> tuple[int, ...]:
    """The token positions of character ``offsets`` of ``prompt`` (tokenized as ``tokens``).

    The text before an offset is tokenized alone, and the position is as far as those tokens
    agree with the whole prompt's: a token spanning the offset, or merged differently across
    it, is left out. Positions too short for the prefix cache, or at the prompt's end (which
    the worker saves anyway), are dropped; the rest come sorted and distinct.
    """
    found = set()
    for offset in sorted(set(offsets)):
        if 0 < offset < len(prompt):
            position = common_prefix(tokenize(prompt[:offset]), tokens)
            if BLOCK <= position < len(tokens):
                found.add(position)
    return tuple(sorted(found))


def open_checkpoints(job: Job, reuse: int) -> list[int]:
    """The job's checkpoints still to save once ``reuse`` prompt tokens came from a cache
    (none for a job computed from scratch: it keeps nothing for others)."""
    if not job.cache_prompt:
        return []
    return [p for p in job.checkpoints if reuse < p < len(job.tokens)]


def keep_reused(cache: PrefixCache, job: Job, reuse: int) -> None:
    """Checkpoints the reused prefix covers need no save; an entry held for exactly such a
    prefix (a shorter request's finish) is kept from now on, as if saved there."""
    if job.cache_prompt:
        for position in job.checkpoints:
            if position <= reuse:
                cache.touch(job.tokens[:position], keep=True)


def chunk_size(run: Run, base: int, budget: int) -> int:
    """Prompt tokens of this step's chunk for a run whose KV holds ``base`` tokens: the
    budget, cut to end exactly at the next checkpoint."""
    if run.checkpoints:
        return min(budget, run.checkpoints[0] - base)
    return budget
