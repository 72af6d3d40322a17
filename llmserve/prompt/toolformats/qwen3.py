"""Qwen3 / QwQ (and other Hermes-call templates that think): ``<think>...</think>`` reasoning,
then Hermes ``<tool_call>`` blocks."""

from __future__ import annotations

from llmserve.prompt.toolformats import hermes
from llmserve.prompt.toolformats.family import Family
from llmserve.prompt.toolformats.scan import Section

THINK = ("<think>", "</think>")
PARSE = Section(openers=(hermes.OPEN,), read=hermes.read, reasoning=THINK, bare_json=True)
FAMILY = Family(
    name="qwen3",
    title="Qwen3, QwQ (Hermes calls with <think> reasoning)",
    recognise=lambda t: hermes.OPEN in t and "<think>" in t,
    parse=PARSE,
    forced=(hermes.FORCED,),
    reasoning_open="<think>",
    reasoning_close="</think>",
)
