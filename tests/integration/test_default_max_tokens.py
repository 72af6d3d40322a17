"""[model] default_max_tokens on the real engine, through the official openai client.

A request that sets no max_tokens stops at the default with finish_reason "length", chat and
completions, whole and streamed; one that sets max_tokens gets what it asked for, and the
default never asks for more than the context has left (no 400 for a request that set nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.tinyserver import KEY, MODEL, client_for, tiny_server

DEFAULT = 5
CONTEXT = 64
MESSAGES = [{"role": "user", "content": "Tell me a story"}]


@pytest.fixture(name="base_url", scope="module")
def fixture_base_url(tiny_gguf: Path) -> Iterator[str]:
    with tiny_server(
        tiny_gguf, parallel=2, max_sequence_length=CONTEXT, default_max_tokens=DEFAULT
    ) as base_url:
        yield base_url


@pytest.fixture(name="client")
def fixture_client(base_url: str) -> Iterator[openai.OpenAI]:
    with client_for(base_url) as client:
        yield client


def test_completion_without_max_tokens_stops_at_the_default(client: openai.OpenAI) -> None:
    """No max_tokens: DEFAULT completion tokens, then finish_reason length."""
    result = client.completions.create(model=MODEL, prompt="Once upon a time", temperature=0)
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == DEFAULT


def test_streamed_completion_without_max_tokens_stops_at_the_default(
    client: openai.OpenAI,
) -> None:
    """Streamed the same: the last choice chunk finishes with length, usage counts DEFAULT."""
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="Once upon a time",
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == DEFAULT


def test_chat_without_max_tokens_stops_at_the_default(client: openai.OpenAI) -> None:
    """A chat that sets no max_tokens stops at DEFAULT tokens with finish_reason length."""
    result = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,  # type: ignore[arg-type]
        temperature=0,
    )
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == DEFAULT


def test_streamed_chat_without_max_tokens_stops_at_the_default(client: openai.OpenAI) -> None:
    """The README's streaming example without max_tokens ends after DEFAULT tokens."""
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == DEFAULT


def test_explicit_max_tokens_wins_over_the_default(client: openai.OpenAI) -> None:
    """max_tokens above the default is honoured: the default only fills in a missing value."""
    result = client.completions.create(
        model=MODEL, prompt="Once upon a time", temperature=0, max_tokens=DEFAULT + 4
    )
    assert result.usage is not None
    assert result.usage.completion_tokens == DEFAULT + 4


def test_default_is_bounded_by_the_room_left_in_the_context(
    client: openai.OpenAI, base_url: str
) -> None:
    """A prompt that leaves less room than the default gets the room, not a 400."""
    token = httpx.post(
        f"{base_url}/tokenize",
        json={"content": "The"},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()["tokens"][0]
    room = 2
    result = client.completions.create(
        model=MODEL, prompt=[token] * (CONTEXT - room), temperature=0
    )
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == room
