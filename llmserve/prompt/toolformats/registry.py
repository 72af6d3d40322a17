"""The families, recognised from a chat template's text, most specific first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from llmserve.prompt.toolformats import (
    command_r,
    deepseek,
    deepseek_dsml,
    firefunction,
    functionary,
    glm,
    granite,
    harmony,
    hermes,
    kimi,
    lfm2,
    llama3,
    mistral,
    phi,
    qwen3,
    qwen3_coder,
)
from llmserve.prompt.toolformats.family import Family
from llmserve.prompt.toolformats.scan import Context, StreamParser

# Order matters: templates of several families share markers (Qwen3-Coder's also has
# <tool_call>, GLM's too; Functionary v3.1's has <|python_tag|>; DeepSeek V3.2's and V4's
# have V3.1's assistant marker).
FAMILIES: tuple[Family, ...] = (
    harmony.FAMILY,
    command_r.FAMILY,
    kimi.FAMILY,
    deepseek_dsml.FAMILY,
    deepseek.FAMILY,
    mistral.FAMILY,
    qwen3_coder.FAMILY,
    glm.FAMILY,
    functionary.FAMILY,
    granite.FAMILY,
    phi.FAMILY,
    lfm2.FAMILY,
    firefunction.FAMILY,
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


def family(name: str, syntax: str | None = None) -> Family:
    """A family by name (``[model] tool_format``; KeyError for an unknown one), its calls
    forced in ``syntax`` (a name from ``template_syntax``; None or another family's: its
    default)."""
    chosen = BY_NAME[name]
    picked = next((f for f in chosen.forced if f.name == syntax), None)
    if picked is None:
        return chosen
    return attrs.evolve(chosen, forced=(picked, *(f for f in chosen.forced if f is not picked)))


def template_syntax(chosen: Family, template: str | None) -> str:
    """The name of the syntax of ``chosen``'s calls that a chat template teaches."""
    return chosen.syntax_for(template or "").name


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
