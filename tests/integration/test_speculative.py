"""Speculative decoding (n-gram drafts) in the worker, on the tiny model: the same tokens as
one-at-a-time decoding, fewer decode steps when the output repeats its context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmserve.engine.protocol import SamplingParams
from llmserve.engine.worker import Job
from tests.support.workers import GREEDY, CollectingSink, config, generate, running

# A prompt that repeats itself: its continuation often repeats too, so drafts get accepted.
PATTERN = [300 + (i * 7) % 41 for i in range(40)]
REPEATING = [1, *PATTERN, *PATTERN, *PATTERN[:10]]
SPEC = {"speculative": "ngram", "draft_max": 8, "draft_min": 1, "ngram_size": 2}


def both(tiny_gguf: Path, tokens: list[int], **job: Any) -> tuple[CollectingSink, CollectingSink]:
    """The same job without and with speculation."""
    with running(tiny_gguf, config()) as plain:
        off = generate(plain, tokens, **job)
    with running(tiny_gguf, config(**SPEC)) as spec:
        on = generate(spec, tokens, **job)
    return off, on


def test_greedy_text_is_identical_with_speculation(tiny_gguf: Path) -> None:
    """At temperature 0, n-gram speculation gives the exact text of plain decoding."""
    off, on = both(tiny_gguf, REPEATING)
    assert on.text == off.text
    on_usage, off_usage = on.events[-1].usage, off.events[-1].usage
    assert on_usage is not None
    assert off_usage is not None
    assert on_usage.completion_tokens == off_usage.completion_tokens == 120
    assert off_usage.draft_accepted == 0


def test_repeating_output_takes_fewer_decode_steps(tiny_gguf: Path) -> None:
    """Accepted drafts produce several tokens per decode: fewer steps than tokens."""
    with running(tiny_gguf, config()) as plain:
        generate(plain, REPEATING)
        plain_steps = plain.steps
    with running(tiny_gguf, config(**SPEC)) as spec:
        sink = generate(spec, REPEATING)
        spec_steps, counts = spec.steps, spec.spec_counts
    usage = sink.events[-1].usage
    assert usage is not None
    assert usage.draft_accepted > 0
    assert counts.accepted == usage.draft_accepted <= counts.proposed
    assert spec_steps < plain_steps


def test_seeded_sampling_is_identical_with_speculation(tiny_gguf: Path) -> None:
    """With a seed, sampled text is the same with and without speculation (same RNG draws)."""
    seeded = SamplingParams(temperature=0.8, top_k=5, seed=1234)
    off, on = both(tiny_gguf, REPEATING, sampling=seeded)
    assert on.text == off.text


def test_penalties_and_logit_bias_apply_to_drafted_positions(tiny_gguf: Path) -> None:
    """Repetition penalties and a logit bias shape every verified position as they would
    without drafts."""
    shaped = SamplingParams(
        temperature=0.0, repeat_penalty=1.3, logit_bias=((PATTERN[3], 5.0), (PATTERN[5], -100.0))
    )
    off, on = both(tiny_gguf, REPEATING, sampling=shaped)
    assert on.text == off.text


@pytest.mark.parametrize("max_tokens", [1, 2, 7, 33])
def test_max_tokens_is_exact_with_speculation(tiny_gguf: Path, max_tokens: int) -> None:
    """Drafts never carry a request past max_tokens."""
    off, on = both(tiny_gguf, REPEATING, max_tokens=max_tokens)
    assert on.text == off.text
    usage = on.events[-1].usage
    assert usage is not None
    assert usage.completion_tokens == max_tokens


def test_stop_string_inside_an_accepted_draft_stops_there(tiny_gguf: Path) -> None:
    """A stop string met in the middle of a run of accepted drafts ends the text there."""
    with running(tiny_gguf, config()) as plain:
        full = generate(plain, REPEATING).text
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    off, on = both(tiny_gguf, REPEATING, stop=(stop,))
    assert on.text == off.text
    assert on.events[-1].finish_reason == "stop"


def test_context_end_is_the_same_with_speculation(tiny_gguf: Path) -> None:
    """A generation that fills the context stops at the same token with drafts."""
    job = {"max_tokens": 512 - len(REPEATING)}
    off, on = both(tiny_gguf, REPEATING, **job)
    assert on.text == off.text
    assert on.events[-1].finish_reason == off.events[-1].finish_reason == "length"


def test_several_choices_and_streams_are_identical_with_speculation(tiny_gguf: Path) -> None:
    """n=2 choices and a concurrent second stream give the same greedy text as without."""
    results: dict[bool, list[str]] = {}
    for speculate in (False, True):
        with running(tiny_gguf, config(**(SPEC if speculate else {}))) as worker:
            sinks = [CollectingSink(), CollectingSink()]
            worker.submit(
                Job(tokens=REPEATING, max_tokens=60, stop=(), sampling=GREEDY, sink=sinks[0], n=2)
            )
            worker.submit(
                Job(tokens=PATTERN * 2, max_tokens=60, stop=(), sampling=GREEDY, sink=sinks[1])
            )
            assert all(s.done.wait(60) for s in sinks)
            results[speculate] = [
                "".join(e.text for e in sinks[0].events if e.index == i) for i in (0, 1)
            ] + [sinks[1].text]
    assert results[True] == results[False]


def test_logprobs_requests_do_not_draft(tiny_gguf: Path) -> None:
    """A request for logprobs decodes one token a step (each token's own logits row)."""
    with running(tiny_gguf, config(**SPEC)) as worker:
        sink = generate(worker, REPEATING, logprobs=2)
        assert worker.spec_counts.proposed == 0
    assert sum(len(e.logprobs) for e in sink.events) == 120


def test_prefix_cache_reuse_after_speculation_gives_the_same_text(tiny_gguf: Path) -> None:
    """A slot's KV after speculation (rejected drafts removed) serves the next request's
    prefix: the continuation matches a fresh computation."""
    with running(tiny_gguf, config(**SPEC, n_slots=1)) as worker:
        first = generate(worker, REPEATING, max_tokens=80)
        follow = REPEATING + list(range(300, 380, 3))
        again = generate(worker, follow, max_tokens=40)
        reused = again.events[-1].usage
    with running(tiny_gguf, config(n_slots=1)) as plain:
        fresh = generate(plain, follow, max_tokens=40)
    assert first.text
    assert reused is not None
    assert reused.cached_tokens > 0
    assert again.text == fresh.text


def test_a_shared_pool_lets_a_second_request_draft_from_the_first_ones_output(
    tiny_gguf: Path,
) -> None:
    """ngram_shared: a prompt whose own tokens never repeat drafts nothing the first time; the
    second request drafts from the first one's output (accepted), and the text is the same."""
    unique = [1, *range(400, 460)]
    penalised = SamplingParams(temperature=0.0, repeat_penalty=1.3)  # no loops of its own
    accepted: dict[bool, list[int]] = {}
    texts: set[str] = set()
    for shared in (False, True):
        with running(tiny_gguf, config(**SPEC, ngram_shared=shared)) as worker:
            sinks = [
                generate(worker, unique, max_tokens=80, sampling=penalised, cache_prompt=False)
                for _ in range(2)
            ]
        usages = [sink.events[-1].usage for sink in sinks]
        accepted[shared] = [u.draft_accepted for u in usages if u is not None]
        texts |= {sink.text for sink in sinks}
    assert accepted[False] == [0, 0]
    assert accepted[True][0] == 0
    assert accepted[True][1] > 40
    assert len(texts) == 1
