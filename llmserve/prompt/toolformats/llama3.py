"""Llama 3.1 / 3.2 / 3.3: a call is a JSON object ``{"name": ..., "parameters": {...}}``
(the whole output), or follows ``<|python_tag|>`` (several separated by ``;``)."""

from __future__ import annotations

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import ARGUMENTS, NAME, Family, Forced
from llmserve.prompt.toolformats.scan import Context, Section, read_objects, skip_space

PYTHON_TAG = "<|python_tag|>"


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    calls: list[Call] = []
    pos = at + len(opener)
    while True:
        found, end = read_objects(text, pos, final)
        calls += found
        if end is None:
            return calls, None
        pos = skip_space(text, end)
        if text.startswith(";", pos):
            pos += 1
            continue
        return calls, pos


FAMILY = Family(
    name="llama3",
    title="Llama 3.1, 3.2, 3.3 (JSON with name and parameters, <|python_tag|>)",
    recognise=lambda t: PYTHON_TAG in t or ("<|start_header_id|>" in t and "parameters" in t),
    parse=Section(openers=(PYTHON_TAG,), read=read, bare_json=True),
    forced=(
        Forced(
            name="llama3",
            call="{object}",
            keys=(("name", NAME), ("parameters", ARGUMENTS)),
            repeat=False,
        ),
    ),
)
