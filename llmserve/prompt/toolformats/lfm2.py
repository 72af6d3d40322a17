"""LFM2 / LFM2.5 (Liquid AI): ``<|tool_call_start|>[get_weather(city="Paris"), f(x=1)]
<|tool_call_end|>``, Python calls with keyword arguments (values Python literals, JSON's
true/false/null too), as llama.cpp's LFM2 parser reads them and LFM2.5's template writes them;
a JSON list of call objects in the same markers (what LFM2 writes asked for JSON) is read too.
``<think>`` reasoning (LFM2.5 thinking models).

Arguments stream one keyword at a time, a string value as it is written. Output that is not
keyword arguments never raises: a call whose first argument is positional has the text between
its parentheses as its arguments; a value that is no literal is passed on as its text (a JSON
string); anything else in the list ends the call there, and its text up to ``)`` is dropped.
"""

from __future__ import annotations

import json
import re

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import PY_ARGS, Family, Forced
from llmserve.prompt.toolformats.pythonic import KEYWORD, Cut, Invalid, read_value, scan
from llmserve.prompt.toolformats.scan import (
    Context,
    Section,
    past_close,
    read_objects,
    skip_space,
)
from llmserve.prompt.toolformats.xmlargs import arguments

OPEN, CLOSE = "<|tool_call_start|>", "<|tool_call_end|>"
# Tool names as declared (dots and dashes too: llama.cpp's tests call Calendar.create_event).
_NAME = re.compile(r"[\w.\-]+")
_KEY = re.compile(rf"({KEYWORD})\s*=(?!=)")
_MAYBE_KEY = re.compile(rf"{KEYWORD}\s*\Z")  # a keyword still being written


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    pos = skip_space(text, at + len(OPEN))
    bracketed = text.startswith("[", pos)
    first = skip_space(text, pos + 1) if bracketed else pos
    if first >= len(text):
        return [], (len(text) if final else None)
    if text[first] == "{":
        calls, end = read_objects(text, pos, final)
    else:
        calls, end = _calls(text, first, bracketed, final)
    return calls, (None if end is None else past_close(text, end, CLOSE, final))


def _calls(text: str, pos: int, bracketed: bool, final: bool) -> tuple[list[Call], int | None]:
    """Calls separated by commas from ``pos``, up to the list's ``]``."""
    calls: list[Call] = []
    while True:
        pos = skip_space(text, pos)
        if pos >= len(text):
            return calls, (len(text) if final else None)
        if bracketed and text[pos] == "]":
            return calls, pos + 1
        call, end = _call(text, pos, final)
        if call is not None:
            calls.append(call)
        if end is None:
            return calls, None
        pos = skip_space(text, end)
        if text.startswith(",", pos):
            pos += 1
        elif bracketed and text.startswith("]", pos):
            return calls, pos + 1
        elif pos < len(text):
            return calls, _to_close(text, pos, final)  # not a list of calls: dropped
        elif final:
            return calls, pos


def _call(text: str, pos: int, final: bool) -> tuple[Call | None, int | None]:
    name = _NAME.match(text, pos)
    paren = skip_space(text, name.end()) if name is not None else pos
    if paren >= len(text):
        return None, (len(text) if final else None)  # the name still being written
    if name is None or text[paren] != "(":
        return None, _to_close(text, pos, final)  # no call to read: dropped
    return _arguments(text, paren + 1, name.group(), final)


def _to_close(text: str, pos: int, final: bool) -> int | None:
    """Where the section's end marker is from ``pos`` (the text before it is dropped)."""
    stop = text.find(CLOSE, pos)
    return stop if stop >= 0 else len(text) if final else None


def _arguments(text: str, pos: int, name: str, final: bool) -> tuple[Call, int | None]:
    """The keyword arguments of call ``name`` from ``pos`` (after its ``(``) as JSON."""
    pairs: list[str] = []
    pos = skip_space(text, pos)
    if pos >= len(text) or _MAYBE_KEY.match(text, pos):
        return Call(name, "", False), None  # keyword or positional: not known yet
    if text[pos] != ")" and not _KEY.match(text, pos):
        return _positional(text, pos, name, final)
    while True:
        pos = skip_space(text, pos)
        if pos >= len(text):
            return Call(name, arguments(pairs, False), False), None
        if text[pos] == ")":
            return Call(name, arguments(pairs, True)), pos + 1
        key = _KEY.match(text, pos)
        if key is None:
            if _MAYBE_KEY.match(text, pos):
                return Call(name, arguments(pairs, False), False), None
            return Call(name, arguments(pairs, True)), _past_call(text, pos, final)
        start = skip_space(text, key.end())
        head = f"{json.dumps(key.group(1), ensure_ascii=False)}: "
        try:
            value, pos = read_value(text, start)
            pairs.append(head + json.dumps(value, ensure_ascii=False))
        except Cut as cut:
            if cut.string is not None:  # a string being written: as far as it is
                pairs.append(head + json.dumps(cut.string.value, ensure_ascii=False)[:-1])
            return Call(name, arguments(pairs, False), False), None
        except Invalid:
            stop = scan(text, start, ",)")
            if stop is None:
                return Call(name, arguments(pairs, False), False), None
            pairs.append(head + json.dumps(text[start:stop].strip(), ensure_ascii=False))
            pos = stop
        pos = skip_space(text, pos)
        if text.startswith(",", pos):
            pos += 1
        elif pos < len(text) and text[pos] != ")":
            return Call(name, arguments(pairs, True)), _past_call(text, pos, final)


def _positional(text: str, pos: int, name: str, final: bool) -> tuple[Call, int | None]:
    """A call not in keyword arguments: the text between its parentheses, as written."""
    stop = scan(text, pos, ")")
    if stop is None:
        rest = text[pos:]
        return Call(name, rest.strip() if final else rest.rstrip(), False), None
    return Call(name, text[pos:stop].strip()), stop + 1


def _past_call(text: str, pos: int, final: bool) -> int | None:
    """After the ``)`` that ends the call ``pos`` is in (None: not written yet)."""
    stop = scan(text, pos, ")")
    if stop is None:
        return len(text) if final else None
    return stop + 1


FAMILY = Family(
    name="lfm2",
    title="LFM2, LFM2.5 (Python calls between <|tool_call_start|> and <|tool_call_end|>)",
    # LFM2's template lists tools between <|tool_list_start|> and <|tool_list_end|>; LFM2.5's
    # write "List of tools: [" without them (llama.cpp tells them apart the same way).
    recognise=lambda t: OPEN in t or "<|tool_list_start|>" in t or "List of tools: [" in t,
    parse=Section(openers=(OPEN,), read=read, reasoning=("<think>", "</think>")),
    forced=(
        # Keyword arguments with JSON values, valid against each parameter's schema (written
        # by the engine's JSON-schema converter): a JSON string is a Python string, numbers
        # are alike, and true/false/null are read as llama.cpp's LFM2 parser reads them (its
        # grammar allows them too). The template's own spelling (single quotes, True) would
        # need a converter of schemas to Python literals, for calls read back the same.
        Forced(
            name="lfm2",
            open=f"{OPEN}[",
            call="{name}({args})",
            sep=", ",
            close=f"]{CLOSE}",
            args=PY_ARGS,
        ),
    ),
    reasoning_open="<think>",
    reasoning_close="</think>",
)
