"""Arguments written as one tagged value per parameter (Qwen3-Coder, GLM): turned into a JSON
object as each value closes, typed by the tool's schema (a string parameter stays a string;
others are read as JSON, falling back to a string)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmserve.prompt.toolformats.scan import Context


def value_json(ctx: Context, tool: str, key: str, raw: str) -> str:
    value = raw[1:] if raw.startswith("\n") else raw
    value = value[:-1] if value.endswith("\n") else value
    schema = ctx.tools.get(tool) or {}
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    kind: Any = (props or {}).get(key, {}).get("type") if isinstance(props, Mapping) else None
    if kind != "string":
        try:
            return json.dumps(json.loads(value), ensure_ascii=False)
        except ValueError:
            pass
    return json.dumps(value, ensure_ascii=False)


def arguments(pairs: list[str], complete: bool) -> str:
    """The arguments object so far: grows only by appending, and closes when complete."""
    return "{" + ", ".join(pairs) + ("}" if complete else "")
