"""Multi-turn chat hits the prefix cache, through the server and the openai client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmserve.api.app import create_app
from llmserve.config import CacheSettings, ModelSettings, Settings
from tests.support.server import serve_app

SYSTEM = " ".join(f"Rule {i}: answer briefly about subject {i}." for i in range(12))


def serve(tiny_gguf: Path, *, parallel: int, cache: CacheSettings) -> Iterator[openai.OpenAI]:
    settings = Settings(
        model=ModelSettings(model_path=str(tiny_gguf), parallel=parallel, max_sequence_length=1024),
        cache=cache,
    )
    with (
        serve_app(create_app(settings)) as base_url,
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0) as client,
    ):
        yield client


@pytest.fixture(name="one_slot")
def fixture_one_slot(tiny_gguf: Path) -> Iterator[openai.OpenAI]:
    yield from serve(tiny_gguf, parallel=1, cache=CacheSettings(max_size_mb=64))


@pytest.fixture(name="no_cache")
def fixture_no_cache(tiny_gguf: Path) -> Iterator[openai.OpenAI]:
    yield from serve(tiny_gguf, parallel=1, cache=CacheSettings(enabled=False))


class Conversation:
    """A chat that re-sends its whole history each turn, as chat clients do."""

    def __init__(self, client: openai.OpenAI, topic: str) -> None:
        self.client = client
        self.messages: list[dict[str, str]] = [
            {"role": "system", "content": f"{SYSTEM} Topic: {topic}."}
        ]

    def turn(self, question: str) -> tuple[int, int]:
        """One turn; returns (prompt_tokens, cached_tokens)."""
        self.messages.append({"role": "user", "content": question})
        result = self.client.chat.completions.create(
            model="tiny",
            messages=self.messages,  # type: ignore[arg-type]
            max_tokens=12,
            temperature=0,
        )
        self.messages.append({"role": "assistant", "content": result.choices[0].message.content})
        usage = result.usage
        assert usage is not None
        assert usage.prompt_tokens_details is not None
        return usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens or 0


def test_next_turn_reuses_the_whole_previous_prompt(one_slot: openai.OpenAI) -> None:
    """Turn N+1 re-renders the template and re-tokenizes the answer, and still hits."""
    chat = Conversation(one_slot, "rivers")
    prompt_1, cached_1 = chat.turn("Name a river.")
    prompt_2, cached_2 = chat.turn("How long is it?")
    assert cached_1 == 0
    assert cached_2 >= prompt_1
    assert prompt_2 > prompt_1


def test_interleaved_conversations_come_back_from_the_cache(one_slot: openai.OpenAI) -> None:
    """With one slot and two alternating chats, each turn's KV is restored from the cache."""
    rivers, birds = Conversation(one_slot, "rivers"), Conversation(one_slot, "birds")
    first_rivers, _ = rivers.turn("Name a river.")
    first_birds, _ = birds.turn("Name a bird.")
    _, cached_rivers = rivers.turn("How long is it?")  # the slot holds birds now
    _, cached_birds = birds.turn("Can it fly?")
    assert cached_rivers >= first_rivers
    assert cached_birds >= first_birds


def test_with_cache_disabled_nothing_is_reused(no_cache: openai.OpenAI) -> None:
    """cache.enabled = false turns off every reuse: cached_tokens stays 0."""
    chat = Conversation(no_cache, "rivers")
    chat.turn("Name a river.")
    _, cached = chat.turn("How long is it?")
    assert cached == 0


def test_cached_and_uncached_turns_give_the_same_answer(
    one_slot: openai.OpenAI, no_cache: openai.OpenAI
) -> None:
    """Greedy answers are the same whether the history came from the cache or not."""
    cached_chat, fresh_chat = Conversation(one_slot, "stars"), Conversation(no_cache, "stars")
    for question in ("Name a star.", "How far is it?", "Is it bright?"):
        cached_chat.turn(question)
        fresh_chat.turn(question)
    assert cached_chat.messages == fresh_chat.messages


def test_cache_hits_show_on_metrics(one_slot: openai.OpenAI) -> None:
    """/metrics counts the hits and saved prompt tokens of a multi-turn chat."""
    chat = Conversation(one_slot, "lakes")
    chat.turn("Name a lake.")
    _, cached = chat.turn("How deep is it?")
    root = str(one_slot.base_url).rstrip("/").removesuffix("/v1")
    text = httpx.get(f"{root}/metrics").text
    hits = [line for line in text.splitlines() if line.startswith("llm_engine_cache_hits_total")]
    saved = [
        line
        for line in text.splitlines()
        if line.startswith("llm_engine_cache_prompt_tokens_saved_total")
    ]
    assert float(hits[0].split()[-1]) >= 1
    assert float(saved[0].split()[-1]) >= cached > 0


def test_conversations_come_back_from_the_disk_tier(tiny_gguf: Path, tmp_path: Path) -> None:
    """With a RAM tier too small for every chat, evicted states spill to disk and still hit."""
    cache = CacheSettings(max_size_mb=1, disk_dir=str(tmp_path / "kv"), disk_size_mb=64)
    for client in serve(tiny_gguf, parallel=1, cache=cache):
        chats = [Conversation(client, f"topic {i} " + "detail " * 90) for i in range(10)]
        firsts = [chat.turn("Tell me more.")[0] for chat in chats]
        cached = [chat.turn("And then?")[1] for chat in chats]
        assert list(tmp_path.joinpath("kv").glob("*.kv")), "nothing spilled to disk"
        assert all(c >= f for c, f in zip(cached, firsts, strict=True)), (cached, firsts)


def test_cache_prompt_false_reuses_nothing_and_answers_the_same(one_slot: openai.OpenAI) -> None:
    """cache_prompt: false reports cached_tokens 0 where the same request reuses its prefix,
    with the same greedy answer (streamed and not)."""
    messages: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]
    ask = {"model": "m", "messages": messages, "max_tokens": 8, "temperature": 0}
    one_slot.chat.completions.create(**ask)
    cached = one_slot.chat.completions.create(**ask)
    fresh = one_slot.chat.completions.create(**ask, extra_body={"cache_prompt": False})
    assert cached.usage is not None
    assert fresh.usage is not None
    assert cached.usage.prompt_tokens_details is not None
    assert fresh.usage.prompt_tokens_details is not None
    assert cached.usage.prompt_tokens_details.cached_tokens > 0
    assert fresh.usage.prompt_tokens_details.cached_tokens == 0
    assert fresh.choices[0].message.content == cached.choices[0].message.content
    stream = one_slot.completions.create(
        model="m",
        prompt=SYSTEM,
        max_tokens=4,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"cache_prompt": False},
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert usage[-1].prompt_tokens_details is not None
    assert usage[-1].prompt_tokens_details.cached_tokens == 0


def test_server_default_cache_prompt_false_reuses_nothing(tiny_gguf: Path) -> None:
    """[cache] cache_prompt = false computes every prompt from scratch unless asked."""
    cache = CacheSettings(max_size_mb=64, cache_prompt=False)
    for client in serve(tiny_gguf, parallel=1, cache=cache):
        ask = {"model": "m", "prompt": SYSTEM, "max_tokens": 2, "temperature": 0}
        details = []
        for extra in ({}, {}, {"cache_prompt": True}):
            usage = client.completions.create(**ask, extra_body=extra).usage
            assert usage is not None
            assert usage.prompt_tokens_details is not None
            details.append(usage.prompt_tokens_details.cached_tokens)
        assert details[:2] == [0, 0]
        assert details[2] > 0
