"""FireFunction v2 (Fireworks, Llama 3 based): `` functools[{"name": ..., "arguments": {...}},
...]`` after any content, no closing marker, as its template writes calls and llama.cpp reads
them. Its template takes the tools as JSON text in ``functions`` and the date in ``datetime``,
which it is given as llama.cpp gives them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import Family, Forced
from llmserve.prompt.toolformats.scan import Context, Section, read_objects

MARKER = "functools["
# The template writes " functools[" after the content; the space is markup, not content.
OPENERS = (f" {MARKER}", MARKER)


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    return read_objects(text, at + len(opener) - 1, final)


def variables(tools: Sequence[Mapping[str, Any]] | None, now: datetime) -> dict[str, Any]:
    """``functions`` (the tools as indented JSON, empty without tools) and ``datetime``, the
    variables its template reads instead of ``tools``."""
    functions = json.dumps(list(tools), indent=2, ensure_ascii=False) if tools else ""
    return {"functions": functions, "datetime": now.strftime("%b %d %Y %H:%M:%S GMT")}


FAMILY = Family(
    name="firefunction",
    title="FireFunction v2 ( functools[...] JSON list)",
    recognise=lambda t: f" {MARKER}" in t,
    parse=Section(openers=OPENERS, read=read),
    forced=(Forced(name="firefunction", open=f" {MARKER}", call="{object}", sep=", ", close="]"),),
    variables=variables,
)
