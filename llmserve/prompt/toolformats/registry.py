"""The families, recognised from a chat template's text, most specific first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmserve.prompt.toolformats import (
    command_r,
    deepseek,
    functionary,
    glm,
    granite,
    harmony,
    hermes,
    kimi,
    llama3,
    mistral,
    phi,
    qwen3,
    qwen3_coder,
)
from llmserve.prompt.toolformats.family import Family
from llmserve.prompt.toolformats.scan import Context, StreamParser

# Order matters: templates of several families share markers (Qwen3-Coder's also has
# <tool_call>, GLM's too; Functionary v3.1's has <|python_tag|>).
FAMILIES: tuple[Family, ...] = (
    harmony.FAMILY,
    command_r.FAMILY,
    kimi.FAMILY,
    deepseek.FAMILY,
    mistral.FAMILY,
    qwen3_coder.FAMILY,
    glm.FAMILY,
    functionary.FAMILY,
    granite.FAMILY,
    phi.FAMILY,
    qwen3.FAMILY,
    hermes.FAMILY,
    llama3.FAMILY,
)
BY_NAME: Mapping[str, Family] = {f.name: f for f in FAMILIES}
NAMES: tuple[str, ...] = tuple(sorted(BY_NAME))
FALLBACK = hermes.FAMILY


def recognise(template: str | None) -> Family:
    """The family whose conventions a chat template teaches; Hermes when none is recognised."""
    text = template or ""
    return next((f for f in FAMILIES if f.recognise(text)), FALLBACK)


def family(name: str) -> Family:
    """A family by name (``[model] tool_format``); KeyError for an unknown one."""
    return BY_NAME[name]


def forcing(chosen: Family, n_tools: int) -> Family:
    """The family whose syntax a forced call of one of ``n_tools`` tools is written in (and
    read back as): ``chosen``'s own where a JSON grammar can say it, else Hermes."""
    forced = chosen.forced
    if forced is None or (forced.shape == "args" and n_tools > 1):
        return FALLBACK
    return chosen


def stream_parser(
    chosen: Family,
    tools: Mapping[str, Mapping[str, Any] | None] | None,
    *,
    prompt: str = "",
    max_calls: int | None = None,
) -> StreamParser:
    """A parser of one output of ``chosen``: calls of ``tools`` (None: calls are not parsed,
    reasoning still is), after ``prompt`` (its end may open the reasoning)."""
    tail = prompt.rstrip()
    ctx = Context(
        tools=dict(tools or {}),
        calls=tools is not None,
        in_reasoning=bool(chosen.reasoning_open and tail.endswith(chosen.reasoning_open)),
        prompt_tail=tail[-16:],
    )
    return StreamParser(chosen.parse, ctx, max_calls)
