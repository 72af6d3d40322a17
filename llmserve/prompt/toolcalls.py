"""Tool calls: how tools reach a model and how its calls are read back (Hermes/Qwen style).

The convention, the one Qwen 2.5 and Hermes templates teach their models:

- the tools are listed as JSON inside ``<tools></tools>`` in the system prompt;
- a call is ``<tool_call>\\n{"name": "...", "arguments": {...}}\\n</tool_call>``, several calls
  one after another; an output that is one bare JSON object ``{"name": ..., "arguments": ...}``
  (``parameters`` also accepted, as Llama 3 writes it) naming a declared tool is a call too;
- a tool result goes back as ``<tool_response>\\n...\\n</tool_response>`` in a user turn.

A chat template that handles tools itself (it mentions ``tools``) gets them as structured
data; for any other template ``plain_messages`` writes the convention into the messages.
``tool_choice: required`` or a named function constrains the output to calls in the model
family's syntax (``toolgrammar.tool_call_grammar``; this one for Hermes), so it always parses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)

TOOLS_PROMPT = """\
# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


@frozen
class ParsedCall:
    """A call read from the output: the function's name and its arguments as JSON text."""

    name: str
    arguments: str


def plain_messages(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """The messages with tools, tool calls and tool results written as text, for a template
    that knows nothing of tools (roles stay system, user and assistant)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            response = f"<tool_response>\n{message.get('content') or ''}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + response
            else:
                out.append({"role": "user", "content": response, "tool_results": True})
            continue
        entry = {k: v for k, v in message.items() if k not in ("tool_calls", "tool_call_id")}
        calls = message.get("tool_calls") or ()
        if calls:
            text = "\n".join(_call_text(call) for call in calls)
            content = entry.get("content") or ""
            entry["content"] = f"{content}\n{text}" if content else text
        out.append(entry)
    for entry in out:
        entry.pop("tool_results", None)
    if tools:
        listing = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
        prompt = TOOLS_PROMPT.format(tools=listing)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0].get('content') or ''}\n\n{prompt}".lstrip()
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def _call_text(call: Mapping[str, Any]) -> str:
    function = call.get("function") or {}
    body = {"name": function.get("name"), "arguments": function.get("arguments")}
    return f"{OPEN}\n{json.dumps(body, ensure_ascii=False)}\n{CLOSE}"


def parse_call(text: str, names: frozenset[str]) -> ParsedCall | None:
    """One call from JSON text, or None if it is not a call of a declared tool."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("name") not in names:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, dict):
        return ParsedCall(data["name"], json.dumps(arguments, ensure_ascii=False))
    if isinstance(arguments, str):
        return ParsedCall(data["name"], arguments)
    return None


def _split_calls(text: str, names: frozenset[str]) -> tuple[str, list[ParsedCall]]:
    """The calls in ``text`` and what is left of it around them."""
    calls: list[ParsedCall] = []
    rest: list[str] = []
    end = 0
    for match in _BLOCK.finditer(text):
        call = parse_call(match.group(1), names)
        if call is None:
            continue
        calls.append(call)
        rest.append(text[end : match.start()])
        end = match.end()
    rest.append(text[end:])
    if not calls:
        bare = parse_call(text.strip(), names)
        return ("", [bare]) if bare is not None else (text, [])
    return "".join(rest).strip(), calls


class ToolCallStream:
    """Separates a generation's text into content and tool calls, as it streams.

    ``push`` returns the text that is surely content; anything that may be a call is held
    (from ``<tool_call>`` on, a partial ``<tool_call>`` at the end, or the whole output when it
    starts with ``{``). ``finish`` returns the rest of the content and the calls.
    """

    __slots__ = ("_held", "_names", "_state")

    def __init__(self, names: frozenset[str]) -> None:
        self._names = names
        self._held = ""
        self._state = "start"  # start -> text or calls

    def push(self, text: str) -> str:
        if self._state == "calls":
            self._held += text
            return ""
        buf = self._held + text
        if self._state == "start":
            head = buf.lstrip()
            if not head or (len(head) < len(OPEN) and OPEN.startswith(head)):
                self._held = buf  # whitespace, or the start of "<tool_call>", so far
                return ""
            if head.startswith(("{", OPEN)):
                self._state, self._held = "calls", buf
                return ""
            self._state = "text"
        at = buf.find(OPEN)
        if at >= 0:
            self._state, self._held = "calls", buf[at:]
            return buf[:at]
        keep = _partial_open(buf)
        self._held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep]

    def finish(self) -> tuple[str, list[ParsedCall]]:
        held, self._held = self._held, ""
        if self._state != "calls":
            return held, []
        return _split_calls(held, self._names)


def _partial_open(text: str) -> int:
    """How many characters at the end of ``text`` could begin ``<tool_call>``."""
    for k in range(min(len(text), len(OPEN) - 1), 0, -1):
        if OPEN.startswith(text[-k:]):
            return k
    return 0


def split_output(text: str, names: frozenset[str]) -> tuple[str, list[ParsedCall]]:
    """A whole output's content and calls, exactly as streaming would give them."""
    stream = ToolCallStream(names)
    head = stream.push(text)
    tail, calls = stream.finish()
    return head + tail, calls
