"""Answers as OpenAI's schema spells them, and as our own /openapi.json documents them.

OpenAI's ``ChatCompletionResponseMessage`` requires ``refusal`` (string or null); its first
stream delta carries ``"refusal": null``; with ``stream_options.include_usage`` every chunk
before the last carries ``"usage": null``. Clients generated from the schema reject less.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from litestar.testing import TestClient

from llmserve.api.openapi import openapi_document
from llmserve.engine.fake import FakeEngine
from tests.support.doubles import fake_app

USER = {"role": "user", "content": "say hello"}
USAGE = {"stream": True, "stream_options": {"include_usage": True}}


@pytest.fixture(name="client")
def fixture_client() -> Iterator[TestClient[Any]]:
    with TestClient(fake_app(FakeEngine())) as client:
        yield client


def chunks(text: str) -> list[dict[str, Any]]:
    """The JSON chunks of an SSE body, checked to end with [DONE]."""
    payloads = [b.removeprefix("data: ") for b in text.split("\n\n") if b.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def documented(name: str) -> dict[str, Any]:
    """A validator schema for one component of our /openapi.json, its $refs resolvable."""
    return {"$ref": f"#/components/schemas/{name}", **openapi_document()}


def test_chat_message_carries_a_null_refusal(client: TestClient[Any]) -> None:
    """Every non-streamed chat message has "refusal": null, n choices each."""
    body = {"messages": [USER], "n": 2}
    answer = client.post("/v1/chat/completions", json=body).json()
    assert [c["message"]["refusal"] for c in answer["choices"]] == [None, None]
    assert all("refusal" in c["message"] for c in answer["choices"])


def test_first_stream_delta_carries_a_null_refusal_and_later_ones_do_not(
    client: TestClient[Any],
) -> None:
    """Each choice's first delta is role, empty content and "refusal": null, as OpenAI's is."""
    body = {"messages": [USER], "stream": True}
    deltas = [
        c["choices"][0]["delta"]
        for c in chunks(client.post("/v1/chat/completions", json=body).text)
    ]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert all("refusal" not in d for d in deltas[1:])


@pytest.mark.parametrize(
    ("path", "request_body"),
    [("/v1/chat/completions", {"messages": [USER]}), ("/v1/completions", {"prompt": "hi"})],
)
def test_include_usage_puts_null_usage_on_every_chunk_before_the_last(
    client: TestClient[Any], path: str, request_body: dict[str, Any]
) -> None:
    """With include_usage, chunks before the last say "usage": null; the last has the usage."""
    sent = chunks(client.post(path, json={**request_body, **USAGE}).text)
    assert len(sent) > 2
    assert all("usage" in c and c["usage"] is None for c in sent[:-1])
    assert sent[-1]["choices"] == []
    assert sent[-1]["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_stream_without_include_usage_names_no_usage(client: TestClient[Any], path: str) -> None:
    """Without include_usage no chunk has a usage key, null or not (OpenAI sends none)."""
    body = {"messages": [USER]} if "chat" in path else {"prompt": "hi"}
    sent = chunks(client.post(path, json={**body, "stream": True}).text)
    assert all("usage" not in c for c in sent)


def test_chat_completion_matches_the_documented_schema(client: TestClient[Any]) -> None:
    """/openapi.json's ChatCompletion requires refusal, and the answer has it."""
    schema = documented("ChatCompletion")
    message = schema["components"]["schemas"]["ChatCompletion"]["properties"]["choices"]
    assert "refusal" in message["items"]["properties"]["message"]["required"]
    answer = client.post("/v1/chat/completions", json={"messages": [USER]}).json()
    jsonschema.validate(answer, schema)


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize(
    ("path", "request_body", "component"),
    [
        ("/v1/chat/completions", {"messages": [USER]}, "ChatCompletionChunk"),
        ("/v1/completions", {"prompt": "hi"}, "CompletionChunk"),
    ],
)
def test_stream_chunks_match_the_documented_chunk_schema(
    client: TestClient[Any],
    path: str,
    request_body: dict[str, Any],
    component: str,
    include_usage: bool,
) -> None:
    """Every streamed chunk validates against its /openapi.json chunk schema."""
    body = {**request_body, "stream": True, "stream_options": {"include_usage": include_usage}}
    for chunk in chunks(client.post(path, json=body).text):
        jsonschema.validate(chunk, documented(component))
