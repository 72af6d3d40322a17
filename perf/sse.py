"""Incremental Server-Sent Events decoding and OpenAI stream-chunk accessors.

The accessors read both /v1/completions chunks (``choices[0].text``) and /v1/chat/completions
chunks (``choices[0].delta.content``), so one stream reader serves both endpoints.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

DONE = "[DONE]"


class SseDecoder:
    """Turns SSE lines (without their line endings) into event data strings.

    Follows the SSE rules the benchmark meets in practice: ``data:`` fields of one event are
    joined with newlines, the event is dispatched on a blank line, comment lines (``: ping``,
    sent by sse-starlette) and other fields (``event:``, ``id:``, ``retry:``) are ignored.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """Feed one line; returns the event's data when the line completes an event."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return None

    def close(self) -> str | None:
        """Dispatch a last event that was not followed by a blank line."""
        return self._dispatch()

    def _dispatch(self) -> str | None:
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data = []
        return data


async def event_data(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    """The data of each SSE event in ``lines`` (an httpx response's ``aiter_lines()``)."""
    decoder = SseDecoder()
    async for line in lines:
        data = decoder.feed(line)
        if data is not None:
            yield data


def chunk_text(chunk: dict[str, Any]) -> str:
    """The generated text a completion or chat stream chunk carries ("" for none).

    A chat stream's first chunk often carries only ``delta.role``: it has no text, so it does
    not count as the first token.
    """
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return delta.get("content") or ""
    return choice.get("text") or ""


def chunk_finish_reason(chunk: dict[str, Any]) -> str | None:
    choices = chunk.get("choices") or []
    if not choices:
        return None
    return choices[0].get("finish_reason")


def chunk_completion_tokens(chunk: dict[str, Any]) -> int | None:
    """``usage.completion_tokens`` where the chunk carries usage (stream_options.include_usage)."""
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        return None
    tokens = usage.get("completion_tokens")
    return tokens if isinstance(tokens, int) else None


def chunk_prompt_tokens(chunk: dict[str, Any]) -> tuple[int | None, int | None]:
    """``(usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens)``, None where absent.

    Only servers that report prompt caching fill ``cached_tokens`` (llama_cpp.server does not).
    """
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        return None, None
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return (
        prompt if isinstance(prompt, int) else None,
        cached if isinstance(cached, int) else None,
    )
