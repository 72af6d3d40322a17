"""Arguments written as one tagged value per parameter (Qwen3-Coder, GLM): turned into a JSON
object as each value closes, typed by the tool's schema (a string parameter stays a string;
others are read as JSON, falling back to a string)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.scan import Context, held, skip_space


def value_json(ctx: Context, tool: str, key: str, raw: str) -> str:
    value = raw[1:] if raw.startswith("\n") else raw
    value = value[:-1] if value.endswith("\n") else value
    schema = ctx.tools.get(tool) or {}
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    kind: Any = (props or {}).get(key, {}).get("type") if isinstance(props, Mapping) else None
    if kind != "string":
        return json_or_text(value)
    return json.dumps(value, ensure_ascii=False)


def json_or_text(value: str) -> str:
    """The JSON value ``value`` holds, else ``value`` as a string (never an error)."""
    try:
        return json.dumps(json.loads(value, parse_constant=_no_constant), ensure_ascii=False)
    except ValueError:
        return json.dumps(value, ensure_ascii=False)


def _no_constant(name: str) -> Any:
    # NaN and Infinity are no JSON: read back, they would make the arguments invalid.
    raise ValueError(name)


def arguments(pairs: list[str], complete: bool) -> str:
    """The arguments object so far: grows only by appending, and closes when complete."""
    return "{" + ", ".join(pairs) + ("}" if complete else "")


def tagged_call(
    text: str,
    pos: int,
    final: bool,
    name: str,
    tags: tuple[str, str, str],
    pair: Callable[[str, str], str],
) -> tuple[Call, int | None]:
    """Call ``name``'s parameters from ``pos`` to its end tag: ``tags`` are (the call's end,
    a parameter's start, its end); a parameter is its start, a head up to ``>``, its raw value
    and its end, and ``pair(head, raw)`` its ``"key": value`` JSON. Returns the call so far
    and where it ends (None: not yet)."""
    end_call, param, end_param = tags
    pairs: list[str] = []
    while True:
        pos = skip_space(text, pos)
        if text.startswith(end_call, pos):
            return Call(name, arguments(pairs, True)), pos + len(end_call)
        if text.startswith(param, pos):
            gt = text.find(">", pos)
            end = text.find(end_param, gt) if gt >= 0 else -1
            if end < 0:
                return Call(name, arguments(pairs, False), False), None
            pairs.append(pair(text[pos + len(param) : gt], text[gt + 1 : end]))
            pos = end + len(end_param)
            continue
        if pos >= len(text) or (not final and held(text, (end_call, param), pos)):
            return Call(name, arguments(pairs, False), False), None
        if held(text, (end_call, param), pos) == len(text) - pos:
            return Call(name, arguments(pairs, False), False), len(text)  # its markup cut short
        # Anything else ends the call: it is as complete as it got.
        return Call(name, arguments(pairs, True)), pos
