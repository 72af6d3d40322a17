"""Speculative decoding with a draft model (speculative = "draft"), on the tiny model: the same
tokens as one-at-a-time decoding, acceptance counted, the draft context's KV kept in step with
the target's, and a draft model of another vocabulary refused at start in one line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmserve.engine.draftmodel import DraftModel, Want
from llmserve.engine.model import LlamaModel
from llmserve.engine.protocol import SamplingParams
from llmserve.engine.worker import Worker
from llmserve.errors import ModelLoadError
from tests.support.process import serve_until_exit
from tests.support.tinymodel import WORDS, build_tiny_gguf
from tests.support.tinyserver import client_for, tiny_server
from tests.support.workers import config, generate, running

# The target penalises repeats, the draft model (the same weights) does not: some drafts are
# accepted, some rejected, so the draft KV must be cut back often.
PENALISED = SamplingParams(temperature=0.0, repeat_penalty=1.3)
PATTERN = [300 + (i * 7) % 41 for i in range(40)]
REPEATING = [1, *PATTERN, *PATTERN, *PATTERN[:10]]
OTHER = [1, *range(400, 460)]
DRAFT = {"speculative": "draft", "draft_max": 6, "draft_min": 1}


@pytest.fixture(name="stranger_gguf", scope="module")
def fixture_stranger_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model of another vocabulary: the same pieces, other ids."""
    path = tmp_path_factory.mktemp("stranger") / "stranger.gguf"
    return build_tiny_gguf(path, words=tuple(reversed(WORDS)))


def plain_texts(tiny_gguf: Path, prompts: list[list[int]], **job: Any) -> list[str]:
    with running(tiny_gguf, config()) as worker:
        return [generate(worker, tokens, **job).text for tokens in prompts]


def assert_draft_kv_in_step(worker: Worker, tiny_gguf: Path) -> None:
    """Each draft sequence holds a prefix of its slot's tokens, llama.cpp agrees on its length,
    and its KV drafts what a fresh draft context computing those tokens drafts."""
    draft = worker.draft
    assert draft is not None
    checked = 0
    for seq in range(worker.config.n_slots):
        cached = draft.cached(seq)
        assert worker.slot_tokens(seq)[: len(cached)] == cached
        assert draft.kv_end(seq) == len(cached)
        if len(cached) < 2:
            continue
        want = Want(seq, cached[:-1], cached[-1], 6)
        kept = draft.draft([want])[0]
        assert kept == fresh_draft(tiny_gguf, worker.model, want)
        checked += 1
    assert checked


def fresh_draft(tiny_gguf: Path, target: LlamaModel, want: Want) -> list[int]:
    """What a new draft context drafts for ``want`` once it has read all of its tokens."""
    fresh = DraftModel.open(tiny_gguf, target, config(n_batch=512, prefill_chunk=512))
    try:
        return fresh.draft([want])[0]
    finally:
        fresh.close()


def test_greedy_text_is_identical_with_a_draft_model(tiny_gguf: Path) -> None:
    """At temperature 0, drafting with a draft model gives the exact text of plain decoding,
    most tokens from accepted drafts, in fewer decode steps."""
    (plain,) = plain_texts(tiny_gguf, [REPEATING])
    with running(tiny_gguf, config()) as worker:
        generate(worker, REPEATING)
        plain_steps = worker.steps
    with running(tiny_gguf, config(**DRAFT), draft=tiny_gguf) as worker:
        sink = generate(worker, REPEATING)
        steps, counts = worker.steps, worker.spec_counts
    usage = sink.events[-1].usage
    assert usage is not None
    assert sink.text == plain
    assert usage.completion_tokens == 120
    assert usage.draft_accepted > usage.completion_tokens // 2
    assert counts.accepted == usage.draft_accepted <= counts.proposed
    assert steps < plain_steps


def test_rejected_drafts_leave_the_draft_kv_over_a_long_generation(tiny_gguf: Path) -> None:
    """With drafts often rejected (a repeat penalty the draft does not know), 400 tokens are
    the plain text, and the draft KV is cut back in step with the target's."""
    (plain,) = plain_texts(tiny_gguf, [REPEATING], max_tokens=400, sampling=PENALISED)
    with running(tiny_gguf, config(**DRAFT), draft=tiny_gguf) as worker:
        sink = generate(worker, REPEATING, max_tokens=400, sampling=PENALISED)
        counts = worker.spec_counts
        assert 0 < counts.accepted < counts.proposed
        assert sink.text == plain
        assert_draft_kv_in_step(worker, tiny_gguf)


@pytest.mark.parametrize("kv_unified", [True, False], ids=["unified", "per-slot"])
def test_requests_in_a_row_and_choices_keep_the_draft_kv_in_step(
    tiny_gguf: Path, kv_unified: bool
) -> None:
    """Requests one after the other (live prefixes reused) and n = 2 choices give the plain
    texts, and every draft sequence stays a prefix of its slot, in either KV layout."""
    prompts = [REPEATING, OTHER, REPEATING + PATTERN[:5], OTHER[:30]]
    plain = plain_texts(tiny_gguf, prompts, sampling=PENALISED)
    with running(tiny_gguf, config()) as worker:
        both = generate(worker, REPEATING, n=2, sampling=PENALISED)
        plain_choices = [both.text_of(0), both.text_of(1)]
    with running(tiny_gguf, config(**DRAFT, kv_unified=kv_unified), draft=tiny_gguf) as worker:
        texts = [generate(worker, tokens, sampling=PENALISED).text for tokens in prompts]
        both = generate(worker, REPEATING, n=2, sampling=PENALISED)
        assert texts == plain
        assert [both.text_of(0), both.text_of(1)] == plain_choices
        assert worker.spec_counts.accepted > 0
        assert_draft_kv_in_step(worker, tiny_gguf)


def test_a_cancelled_request_leaves_the_draft_kv_in_step(tiny_gguf: Path) -> None:
    """A request abandoned mid-stream, then another in the same slot: the plain text, and
    the draft sequence a prefix of the slot's tokens."""
    (plain,) = plain_texts(tiny_gguf, [OTHER], sampling=PENALISED)
    with running(tiny_gguf, config(**DRAFT, n_slots=1), draft=tiny_gguf) as worker:
        gone = generate(worker, REPEATING, sampling=PENALISED, cancel_after=20)
        after = generate(worker, OTHER, sampling=PENALISED)
        assert all(event.usage is None for event in gone.events)  # it never finished
        assert after.text == plain
        assert_draft_kv_in_step(worker, tiny_gguf)


def test_a_long_prompt_is_read_by_the_draft_model_in_chunks(tiny_gguf: Path) -> None:
    """A prompt longer than prefill_chunk reaches the draft model a chunk a step; drafting
    starts once it is read, and the text is the plain one."""
    long_prompt = [1, *(PATTERN * 8)]
    (plain,) = plain_texts(tiny_gguf, [long_prompt], max_tokens=60)
    with running(tiny_gguf, config(**DRAFT, prefill_chunk=32), draft=tiny_gguf) as worker:
        sink = generate(worker, long_prompt, max_tokens=60)
        draft = worker.draft
        assert draft is not None
        usage = sink.events[-1].usage
        assert usage is not None
        assert sink.text == plain
        assert usage.draft_accepted > 0
        assert draft.decodes > len(long_prompt) // 32


def test_a_draft_model_of_another_vocabulary_is_refused(
    tiny_gguf: Path, stranger_gguf: Path
) -> None:
    """Same size, other token texts: refused in one line naming both files and a token."""
    target = LlamaModel(tiny_gguf)
    try:
        with pytest.raises(ModelLoadError) as caught:
            DraftModel.open(stranger_gguf, target, config(**DRAFT))
    finally:
        target.close()
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith(
        f"the draft model {stranger_gguf} cannot draft for {tiny_gguf}: their vocabularies "
        "differ: token "
    )
    assert re.search(r'token \d+ is ".+" in the target, ".+" in the draft$', message)


def test_serve_refuses_a_draft_model_of_another_vocabulary_in_one_line(
    tiny_gguf: Path, stranger_gguf: Path, tmp_path: Path
) -> None:
    """`llmserve serve --speculative draft` with a mismatched draft: one line, status 1."""
    flags = ("--speculative", "draft", "--draft-model-path", str(stranger_gguf))
    result = serve_until_exit(tiny_gguf, tmp_path, *flags, "--log-level", "critical")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"llmserve: error: the draft model {stranger_gguf} cannot draft for {tiny_gguf}: "
        "their vocabularies differ: token "
    )


def test_draft_acceptance_is_counted_in_the_spec_decode_metrics(tiny_gguf: Path) -> None:
    """A server drafting with a draft model counts drafted and accepted tokens on /metrics,
    and the completion's text is the plain server's."""
    prompt = " ".join(WORDS[:40])
    texts = []
    for model in ({}, {**DRAFT, "draft_model_path": str(tiny_gguf)}):
        with tiny_server(tiny_gguf, **model) as url, client_for(url) as client:
            answer = client.completions.create(
                model="tiny", prompt=prompt, max_tokens=60, temperature=0
            )
            texts.append(answer.choices[0].text)
            metrics = httpx.get(f"{url}/metrics").text
    assert texts[0] == texts[1]
    drafted = _sample(metrics, "llm_engine_spec_decode_draft_tokens_total")
    accepted = _sample(metrics, "llm_engine_spec_decode_accepted_tokens_total")
    assert 0 < accepted <= drafted


def _sample(metrics: str, name: str) -> float:
    match = re.search(rf'^{name}\{{model="tiny"\}} (\S+)$', metrics, re.MULTILINE)
    assert match is not None, name
    return float(match[1])
