"""How one request's output is read back: its model's tool-call family, the syntax forced calls
are written in, the tools' schemas and the call limit. Shared by the dialects that render calls
(OpenAI chat, Anthropic Messages); the parsing itself is ``prompt.toolformats``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen

from llmserve.prompt import toolformats


@frozen
class OutputReading:
    """Everything a choice's parser needs, decided once per request."""

    family: toolformats.Family  # how the model writes calls, forced or not
    tools: Mapping[str, Mapping[str, Any] | None] | None  # parameters schema by tool name
    max_calls: int | None  # None: as many as the model writes

    def parser(self, prompt: str | tuple[int, ...]) -> toolformats.ToolParser:
        """A fresh parser for one choice (the prompt tells a family whether it opened a
        reasoning block already)."""
        text = prompt if isinstance(prompt, str) else ""
        return toolformats.stream_parser(
            self.family, self.tools, prompt=text, max_calls=self.max_calls
        )

    def call_ids(self, make: Callable[[], str]) -> Callable[[], str]:
        """Call ids as the family's template takes them back (Mistral: 9 characters)."""
        length = self.family.call_id_length
        if length is None:
            return make
        return lambda: make()[-length:]


def output_reading(
    family: toolformats.Family,
    tools: Mapping[str, Mapping[str, Any] | None] | None,
    *,
    single: bool,
) -> OutputReading:
    """``single``: at most one call (a named tool, or parallel calls off)."""
    return OutputReading(
        family=family,
        tools=tools,
        max_calls=1 if tools is not None and single else None,
    )
