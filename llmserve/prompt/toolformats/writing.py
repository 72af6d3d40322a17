"""Calls written as text in a family's syntax: for templates that leave an assistant's calls
out of the prompt (Granite 3.3's renders the content alone), the calls go into the content as
the model writes them, the same syntax a forced call is written in."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from llmserve.prompt.toolformats.deepseek_dsml import END_PARAM, param_open
from llmserve.prompt.toolformats.family import (
    ARGUMENTS,
    DSML_ARGS,
    DSML_V4_ARGS,
    GLM_ARGS,
    GLM_COMPACT_ARGS,
    ID,
    INDEX,
    NAME,
    OBJECT,
    PY_ARGS,
    XML_ARGS,
    Forced,
)


def write_calls(syntax: Forced, calls: Sequence[Mapping[str, Any]]) -> str:
    """``calls`` (``tool_calls`` entries: ``id``, ``function.name``, ``function.arguments``
    as an object or JSON text) as the model writes them in ``syntax``."""
    written = [_call(syntax, call, index) for index, call in enumerate(calls)]
    if not syntax.repeat:
        written = written[:1]
    return syntax.open + syntax.sep.join(written) + syntax.close


def _call(syntax: Forced, call: Mapping[str, Any], index: int) -> str:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # not JSON: written as it came
            arguments = json.loads(arguments)
    values = {
        NAME: str(function.get("name") or ""),
        INDEX: str(index),
        ID: str(call.get("id") or ""),
    }
    out: list[str] = []
    for placeholder, text in syntax.parts():
        if not placeholder:
            out.append(text)
        elif text == ARGUMENTS:
            out.append(_arguments(syntax.args, arguments))
        elif text == OBJECT:
            body = {
                key: arguments if part == ARGUMENTS else values[part] for key, part in syntax.keys
            }
            out.append(json.dumps(body, ensure_ascii=False))
        else:
            out.append(values[text])
    return "".join(out)


def _arguments(kind: str, arguments: Any) -> str:
    if kind == PY_ARGS and isinstance(arguments, Mapping):
        return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    if kind not in (XML_ARGS, GLM_ARGS, GLM_COMPACT_ARGS, DSML_ARGS, DSML_V4_ARGS):
        return (
            arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        )
    if not isinstance(arguments, Mapping) or not arguments:
        return "\n" if kind == DSML_V4_ARGS else ""  # no parameters to write
    line = "" if kind == GLM_COMPACT_ARGS else "\n"
    out = []
    for key, value in arguments.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if kind == XML_ARGS:
            out.append(f"<parameter={key}>\n{text}\n</parameter>\n")
        elif kind in (DSML_ARGS, DSML_V4_ARGS):
            out.append(f"{param_open(key, isinstance(value, str))}{text}{END_PARAM}\n")
        else:
            out.append(f"<arg_key>{key}</arg_key>{line}<arg_value>{text}</arg_value>{line}")
    return "".join(out)
