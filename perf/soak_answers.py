"""What the soak accepts as an answer: OpenAI error envelopes, and well-formed completions.

A streamed answer is folded back into the shape of a non-streamed one (``StreamFold``), so
one check (``answer_problem``) reads both. The checks are about the contract, not the text:
the right number of choices, a finish reason each, stop strings absent, a ``json_object``
answer that parses when it was not cut short, logprobs when asked. Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from perf.soak_requests import SoakRequest

FINISH_REASONS = frozenset({"stop", "length", "tool_calls"})


def envelope_problem(status: int, payload: object) -> str | None:
    """Why ``payload`` is not an OpenAI error envelope (None when it is one)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return f"HTTP {status} without an error object"
    error = payload["error"]
    if not isinstance(error.get("message"), str) or not error["message"]:
        return f"HTTP {status} error without a message"
    if not isinstance(error.get("type"), str):
        return f"HTTP {status} error without a type"
    return None


class StreamFold:
    """Stream chunks folded into one response: text and finish reason per choice index."""

    def __init__(self) -> None:
        self.texts: dict[int, str] = {}
        self.finish: dict[int, str | None] = {}
        self.logprob_entries: dict[int, int] = {}
        self.usage: dict[str, Any] | None = None
        self.error: object = None  # an error event inside the stream
        self.chunks = 0

    def feed(self, chunk: dict[str, Any]) -> None:
        self.chunks += 1
        if "error" in chunk:
            self.error = chunk
            return
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            self.texts[index] = self.texts.get(index, "") + (text or "")
            self.finish.setdefault(index, None)
            if choice.get("finish_reason") is not None:
                self.finish[index] = choice["finish_reason"]
            self.logprob_entries[index] = self.logprob_entries.get(index, 0) + _logprob_count(
                choice.get("logprobs")
            )

    def response(self, chat: bool) -> dict[str, Any]:
        """The folded answer in the non-streamed shape (logprobs reduced to a count)."""
        choices = []
        for index in sorted(self.texts):
            choice: dict[str, Any] = {"index": index, "finish_reason": self.finish.get(index)}
            if chat:
                choice["message"] = {"role": "assistant", "content": self.texts[index]}
            else:
                choice["text"] = self.texts[index]
            choice["logprobs_count"] = self.logprob_entries.get(index, 0)
            choices.append(choice)
        response: dict[str, Any] = {"choices": choices}
        if self.usage is not None:
            response["usage"] = self.usage
        return response


def _logprob_count(logprobs: object) -> int:
    """Entries in a choice's logprobs: chat's ``content`` list or completions' ``tokens``."""
    if not isinstance(logprobs, dict):
        return 0
    entries = logprobs.get("content")
    if entries is None:
        entries = logprobs.get("tokens")
    return len(entries) if isinstance(entries, list) else 0


def answer_text(choice: dict[str, Any]) -> str:
    message = choice.get("message")
    if isinstance(message, dict):
        return message.get("content") or ""
    return choice.get("text") or ""


def answer_problem(request: SoakRequest, response: object) -> str | None:
    """Why a 200 answer breaks the contract for ``request`` (None when it is fine)."""
    if not isinstance(response, dict) or not isinstance(response.get("choices"), list):
        return "no choices"
    body = request.body or {}
    n = int(body.get("n", 1))
    choices = response["choices"]
    indexes = sorted(int(c.get("index", -1)) for c in choices if isinstance(c, dict))
    if indexes != list(range(n)):
        return f"choice indexes {indexes}, expected 0..{n - 1}"
    stops = body.get("stop") or []
    for choice in choices:
        finish = choice.get("finish_reason")
        if finish not in FINISH_REASONS:
            return f"choice {choice['index']}: finish_reason {finish!r}"
        text = answer_text(choice)
        for stop in stops if isinstance(stops, list) else [stops]:
            if stop in text:
                return f"choice {choice['index']}: stop string {stop!r} in the output"
        if _is_json_object(body) and finish == "stop":
            try:
                parsed = json.loads(text)
            except ValueError:
                return f"choice {choice['index']}: json_object answer does not parse: {text!r}"
            if not isinstance(parsed, dict):
                return f"choice {choice['index']}: json_object answer is not an object"
        if _wants_logprobs(body) and text and not _has_logprobs(choice):
            return f"choice {choice['index']}: logprobs asked, none given"
    usage = response.get("usage")
    if isinstance(usage, dict):
        limit = n * int(body.get("max_tokens", 1 << 30))
        if int(usage.get("completion_tokens", 0)) > limit:
            return f"usage.completion_tokens {usage['completion_tokens']} > {limit}"
    elif not request.stream:
        return "no usage"
    return None


def _is_json_object(body: dict[str, Any]) -> bool:
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") == "json_object"


def _wants_logprobs(body: dict[str, Any]) -> bool:
    logprobs = body.get("logprobs")
    return logprobs is True or (isinstance(logprobs, int) and not isinstance(logprobs, bool))


def _has_logprobs(choice: dict[str, Any]) -> bool:
    if "logprobs_count" in choice:  # folded from a stream
        return int(choice["logprobs_count"]) > 0
    return _logprob_count(choice.get("logprobs")) > 0
