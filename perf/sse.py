"""Incremental Server-Sent Events decoding and OpenAI completion-chunk accessors."""

from __future__ import annotations

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


def chunk_text(chunk: dict[str, Any]) -> str:
    """The generated text a /v1/completions stream chunk carries ("" for none)."""
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    return choices[0].get("text") or ""


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
