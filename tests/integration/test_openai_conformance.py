"""What the official openai client sees of the real server, against OpenAI's schema (issue 17).

The client's pydantic models default absent fields to None, so presence is read from
``model_fields_set`` (what the server actually sent) or from the raw JSON.
"""

from __future__ import annotations

import openai

from tests.support.tinyserver import MODEL

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_chat_message_has_a_null_refusal(tiny_client: openai.OpenAI) -> None:
    """A non-streamed chat message carries "refusal": null, as OpenAI's schema requires."""
    raw = tiny_client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=4,
        temperature=0,
    )
    message = raw.parse().choices[0].message
    assert "refusal" in message.model_fields_set
    assert message.refusal is None
    assert raw.http_response.json()["choices"][0]["message"]["refusal"] is None


def test_streamed_chat_first_delta_has_a_null_refusal(tiny_client: openai.OpenAI) -> None:
    """The first streamed delta carries "refusal": null next to the role, as OpenAI's does."""
    stream = tiny_client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=4,
        temperature=0,
        stream=True,
    )
    first = next(iter(stream)).choices[0].delta
    stream.close()
    assert first.role == "assistant"
    assert "refusal" in first.model_fields_set
    assert first.refusal is None


def test_streamed_chat_with_include_usage_has_null_usage_until_the_last_chunk(
    tiny_client: openai.OpenAI,
) -> None:
    """With include_usage, every chunk before the last sends "usage": null; the last, usage."""
    chunks = list(
        tiny_client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=4,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all("usage" in c.model_fields_set and c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_streamed_completion_with_include_usage_has_null_usage_until_the_last_chunk(
    tiny_client: openai.OpenAI,
) -> None:
    """Text completions stream "usage": null the same way before their usage chunk."""
    chunks = list(
        tiny_client.completions.create(
            model=MODEL,
            prompt="Once upon a time",
            max_tokens=4,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all("usage" in c.model_fields_set and c.usage is None for c in chunks[:-1])
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_any_model_name_retrieves_the_served_model(tiny_client: openai.OpenAI) -> None:
    """models.retrieve of any name a completion would accept answers the served model's card."""
    for name in ("gpt-3.5-turbo", MODEL, "org/some-model"):
        card = tiny_client.models.retrieve(name)
        assert (card.id, card.object) == (MODEL, "model")
