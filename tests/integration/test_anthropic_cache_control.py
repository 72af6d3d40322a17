"""cache_control breakpoints through the official ``anthropic`` SDK, on a sliding-window model.

Two Claude-Code-shaped sessions (billing line, a long system prompt and tools, the system block
and the last tool marked) with different first questions. On a sliding-window model a saved
state cannot be cut back, so the second session can only reuse the first one's system prompt
and tools from a state saved at the breakpoint: with the marks it does; without, it does not.
Another request runs between the sessions, as Claude Code's own background requests do, so the
second session cannot take the first one's live KV either.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.support.tinymodel import build_tiny_gguf
from tests.support.tinyserver import KEY, MODEL, tiny_server

BILLING = "x-anthropic-billing-header: cc_version=2.1.70; cc_entrypoint=cli; cch={session};"
SYSTEM = "You are a model that can help people to find the answer to their question. " * 6
TOOLS: list[dict[str, Any]] = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {
        "name": "get_time",
        "description": "The time in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
]
MARK = {"type": "ephemeral"}
GREEDY = {"temperature": 0}


@pytest.fixture(name="swa_url", scope="module")
def fixture_swa_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tiny model with a 64-position window (Gemma 3's architecture and built-in
    template), one sequence slot."""
    path = build_tiny_gguf(tmp_path_factory.mktemp("swa") / "swa.gguf", sliding_window=64)
    with tiny_server(path, parallel=1, max_sequence_length=2048) as url:
        yield url


@pytest.fixture(name="claude")
def fixture_claude(swa_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=swa_url, api_key=KEY, max_retries=0) as client:
        yield client


def shape(session: str, question: str, system: str, *, marked: bool) -> dict[str, Any]:
    """A first request of a Claude Code session: billing line, system, tools, one question."""
    mark = {"cache_control": MARK} if marked else {}
    return {
        "system": [
            {"type": "text", "text": BILLING.format(session=session)},
            {"type": "text", "text": system, **mark},
        ],
        "tools": [*TOOLS[:-1], {**TOOLS[-1], **mark}],
        "messages": [{"role": "user", "content": question}],
    }


def create(claude: anthropic.Anthropic, body: dict[str, Any]) -> Any:
    return claude.messages.create(model=MODEL, max_tokens=4, extra_body=GREEDY, **body).usage


def system_and_tools_tokens(claude: anthropic.Anthropic, body: dict[str, Any]) -> int:
    """The prompt tokens the system prompt and the tools add to a bare question."""
    whole = claude.messages.count_tokens(model=MODEL, **body).input_tokens
    bare = claude.messages.count_tokens(model=MODEL, messages=body["messages"]).input_tokens
    return whole - bare


def two_sessions(claude: anthropic.Anthropic, system: str, *, marked: bool) -> tuple[Any, Any]:
    first = create(claude, shape("aaaa1111", "Weather in Paris?", system, marked=marked))
    create(claude, {"messages": [{"role": "user", "content": "Hello there"}]})
    second = create(claude, shape("bbbb2222", "Time in Rome?", system, marked=marked))
    return first, second


def test_second_session_reads_the_marked_system_prompt_and_tools(
    claude: anthropic.Anthropic,
) -> None:
    """With cache_control marks, the new session's cache_read_input_tokens cover at least the
    system prompt and tools; the first session reports them as cache creation."""
    first, second = two_sessions(claude, SYSTEM, marked=True)
    body = shape("bbbb2222", "Time in Rome?", SYSTEM, marked=True)
    prefix = system_and_tools_tokens(claude, body)
    assert second.cache_read_input_tokens >= prefix
    assert first.cache_creation_input_tokens >= prefix
    counted = claude.messages.count_tokens(model=MODEL, **body).input_tokens
    read = second.cache_read_input_tokens + second.cache_creation_input_tokens
    assert second.input_tokens + read == counted


def test_without_marks_the_window_keeps_the_second_session_from_the_prefix(
    claude: anthropic.Anthropic,
) -> None:
    """The same two sessions unmarked (another system prompt, so no earlier entry helps):
    the second one reads less than the system prompt and tools, and nothing is created."""
    system = SYSTEM.replace("model", "server")
    first, second = two_sessions(claude, system, marked=False)
    prefix = system_and_tools_tokens(claude, shape("b", "Time in Rome?", system, marked=False))
    assert second.cache_read_input_tokens < prefix
    assert first.cache_creation_input_tokens == 0
