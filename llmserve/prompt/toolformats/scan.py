"""The machinery every family shares: a snapshot parser re-read as text grows, and the
stream parser that turns successive snapshots into events.

A family writes one function, ``parse(text, final, ctx) -> Snapshot``, that reads a whole
output (or the output so far, ``final`` False). Read so far, it must only report what cannot
change: text that could still turn out to be markup (the start of ``<tool_call>`` at the end)
is held back, and arguments stop short of a closing marker that may be arriving. The stream
parser re-reads the output on each piece and emits what the new snapshot adds, so streamed and
whole outputs agree by construction. Re-reading costs O(length) per piece: outputs are a few
thousand characters, and the reading is ``str.find`` and ``json`` in C.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from llmserve.prompt.toolformats.events import (
    Call,
    CallArguments,
    CallEnd,
    CallStart,
    Content,
    Reasoning,
    Snapshot,
    ToolEvent,
)

log = logging.getLogger("llmserve.toolformats")

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"\s*")


@frozen
class Context:
    """What a parser knows of the request: the declared tools (name -> parameters schema),
    whether calls are parsed at all, and whether the prompt left the model inside its
    reasoning (a template that ends the prompt with ``<think>``)."""

    tools: Mapping[str, Mapping[str, Any] | None] = field(factory=dict)
    calls: bool = True
    in_reasoning: bool = False
    prompt_tail: str = ""

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.tools)


Parse = Callable[[str, bool, Context], Snapshot]


def skip_space(text: str, pos: int) -> int:
    return _SPACE.match(text, pos).end()  # type: ignore[union-attr]


# What the decoder writes for a character cut in two (an output ended by max_tokens in the
# middle of a marker spelled in bytes).
CUT_CHAR = "\ufffd"


def held(text: str, markers: Sequence[str], start: int = 0) -> int:
    """How many characters at the end of ``text[start:]`` could begin one of ``markers``."""
    best = 0
    tail = text[start:]
    body = tail.rstrip(CUT_CHAR)
    for marker in markers:
        for k in range(min(len(body), len(marker) - 1), best, -1):
            if marker.startswith(body[-k:]):
                best = k
                break
    return best + len(tail) - len(body) if best else 0


def could_begin(marker: str, rest: str) -> bool:
    """``rest``, the end of an output, could be the start of ``marker`` (one cut short)."""
    return marker.startswith(rest.rstrip(CUT_CHAR))


def past_close(text: str, pos: int, close: str, final: bool) -> int | None:
    """Where a section ends whose calls end at ``pos``: after its ``close`` marker if that
    follows (space between); at the end if it is still arriving (None) or was cut short
    there (dropped); else at ``pos``, the marker left out."""
    end = skip_space(text, pos)
    if text.startswith(close, end):
        return end + len(close)
    if could_begin(close, text[end:]):
        return len(text) if final else None
    return end


def find_first(text: str, markers: Sequence[str], pos: int) -> tuple[int, str]:
    """The earliest of ``markers`` in ``text`` from ``pos``: (index, marker), or (-1, "")."""
    best, which = -1, ""
    for marker in markers:
        at = text.find(marker, pos)
        if at >= 0 and (best < 0 or at < best):
            best, which = at, marker
    return best, which


def json_end(text: str, pos: int) -> int | None:
    """The end of the JSON value at ``pos``, or None if it is incomplete or invalid."""
    try:
        return _DECODER.raw_decode(text, pos)[1]
    except ValueError:
        return None


def split_reasoning(
    text: str, final: bool, ctx: Context, open_: str, close: str, ends: Sequence[str] = ()
) -> tuple[str, int | None]:
    """The reasoning at the start of the output and where the rest starts (None: the output is
    all reasoning so far, or a partial ``open_`` held back). ``ends``: markup that ends the
    reasoning unclosed and starts the rest (calls begun inside it)."""
    start = skip_space(text, 0)
    if text.startswith(open_, start):
        start += len(open_)
    elif not ctx.in_reasoning:
        if not final and start < len(text) and open_.startswith(text[start:]):
            return "", None
        if not final and start == len(text):
            return "", None  # only whitespace so far: it may lead to the open tag
        return "", 0
    else:
        start = 0
    end, marker = find_first(text, (close, *ends), start)
    if end < 0:
        keep = len(text) if final else len(text) - held(text, (close, *ends), start)
        return text[start:keep].lstrip(), None
    if marker != close:
        return text[start:end].strip(), end
    # The answer starts after the blank lines that follow the reasoning (as llama.cpp's).
    return text[start:end].strip(), skip_space(text, end + len(close))


@frozen
class ObjectCall:
    """A JSON call object read so far: name, raw arguments, and where the object ended."""

    name: str | None
    arguments: str
    end: int | None  # after the closing brace; None: incomplete


def read_object(
    text: str, pos: int, name_keys: Sequence[str], args_keys: Sequence[str]
) -> ObjectCall | None:
    """A call object ``{"name": ..., "arguments": {...}}`` (key names per family) at ``pos``,
    as far as written; None if the text there is not such an object."""
    i = skip_space(text, pos)
    if i >= len(text):
        return ObjectCall(None, "", None)
    if text[i] != "{":
        return None
    i += 1
    name: str | None = None
    arguments = ""
    while True:
        i = skip_space(text, i)
        if i >= len(text):
            return ObjectCall(name, arguments, None)
        if text[i] == "}":
            return ObjectCall(name, arguments, i + 1)
        if text[i] == ",":
            i += 1
            continue
        if text[i] != '"':
            return None
        key_end = json_end(text, i)
        if key_end is None:
            return ObjectCall(name, arguments, None)
        key = json.loads(text[i:key_end])
        j = skip_space(text, key_end)
        if j >= len(text):
            return ObjectCall(name, arguments, None)
        if text[j] != ":":
            return None
        j = skip_space(text, j + 1)
        end = json_end(text, j)
        if key in args_keys:
            if end is None:
                return ObjectCall(name, text[j:].rstrip(), None)
            arguments = text[j:end]
        elif end is None:
            return ObjectCall(name, arguments, None)
        elif key in name_keys:
            value = json.loads(text[j:end])
            if isinstance(value, str):
                name = value
        i = end


def read_objects(
    text: str,
    pos: int,
    final: bool,
    name_keys: Sequence[str] = ("name",),
    args_keys: Sequence[str] = ("arguments", "parameters"),
) -> tuple[list[Call], int | None]:
    """One call object, or a JSON array of them, at ``pos``: the calls and where they end
    (None: not ended yet, or not calls at all)."""
    i = skip_space(text, pos)
    array = text.startswith("[", i)
    if array:
        i += 1
    calls: list[Call] = []
    while True:
        obj = read_object(text, i, name_keys, args_keys)
        if obj is None:
            return calls, None if not final else len(text)
        if obj.name is not None:
            done = obj.end is not None
            calls.append(Call(obj.name, (obj.arguments or "{}") if done else obj.arguments, done))
        if obj.end is None:
            return calls, None
        i = skip_space(text, obj.end)
        if not array:
            return calls, obj.end
        if text.startswith(",", i):
            i += 1
            continue
        if text.startswith("]", i):
            return calls, i + 1
        return calls, (None if i >= len(text) else i)


def args_until(text: str, pos: int, close: str, final: bool) -> tuple[str, int | None]:
    """Raw arguments from ``pos`` up to ``close``: (arguments, end after ``close`` or None)."""
    at = text.find(close, pos)
    if at >= 0:
        return text[pos:at].strip(), at + len(close)
    # Not yet (or, at the end, never) written: the start of ``close`` is no argument.
    keep = len(text) - held(text, (close,), pos)
    return text[pos:keep].strip() if final else text[pos:keep].lstrip().rstrip(), None


def json_args(text: str, pos: int, final: bool) -> tuple[str, int | None]:
    """Arguments that are one JSON value with no closing marker (the value's end ends them)."""
    i = skip_space(text, pos)
    end = json_end(text, i)
    if end is None:
        return text[i:].rstrip(), None
    return text[i:end], end


@frozen
class Section:
    """A family whose calls sit in marked sections of otherwise plain content.

    ``openers``: markers that begin a section; ``read(text, at, opener, final, ctx)`` reads the
    calls from the opener on and says where the section ends. ``drop``: markup removed from
    content wherever it is. ``bare_json``: an output that is one JSON call object of a declared
    tool is a call (Llama 3, Hermes). ``reasoning``: open and close tags; ``reasoning_ends``:
    markup that also ends the reasoning when calls are parsed (DeepSeek DSML calls begun inside
    it, as llama.cpp reads them).
    """

    openers: tuple[str, ...]
    read: Callable[[str, int, str, bool, Context], tuple[list[Call], int | None]]
    reasoning: tuple[str, str] | None = None
    reasoning_ends: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    bare_json: bool = False
    name_keys: tuple[str, ...] = ("name",)
    args_keys: tuple[str, ...] = ("arguments", "parameters")

    def __call__(self, text: str, final: bool, ctx: Context) -> Snapshot:
        reasoning, pos = "", 0
        if self.reasoning is not None:
            ends = self.reasoning_ends if ctx.calls else ()
            reasoning, start = split_reasoning(text, final, ctx, *self.reasoning, ends=ends)
            if start is None:
                return Snapshot(reasoning=reasoning)
            pos = start
        if not ctx.calls:
            return self._content_only(text, pos, final, reasoning)
        calls: list[Call] = []
        if self.bare_json:
            head = skip_space(text, pos)
            if text.startswith("{", head):
                found, end = read_objects(text, head, final, self.name_keys, self.args_keys)
                declared = [c for c in found if c.name in ctx.names]
                if declared:
                    calls += declared
                    if end is None:
                        return Snapshot("", reasoning, tuple(calls))
                    pos = end
                elif not final and (end is None and not found):
                    return Snapshot(reasoning=reasoning)  # no name yet: may be a call
        content: list[str] = []
        markers = (*self.openers, *self.drop)
        while pos < len(text):
            at, opener = find_first(text, self.openers, pos)
            if at < 0:
                # Held back while it may be markup; at the end, dropped after calls (leftover
                # markup such as a second call's "<tool" cut by max_tokens), else content.
                cut = held(text, markers, pos) if (not final or calls) else 0
                content.append(text[pos : len(text) - cut])
                break
            content.append(text[pos:at])
            found, end = self.read(text, at, opener, final, ctx)
            calls += found
            if end is None:
                break
            pos = end
        return Snapshot(self._clean("".join(content), bool(calls)), reasoning, tuple(calls))

    def _content_only(self, text: str, pos: int, final: bool, reasoning: str) -> Snapshot:
        keep = len(text) - (0 if final else held(text, self.drop, pos))
        return Snapshot(self._clean(text[pos:keep], False), reasoning)

    def _clean(self, content: str, calls: bool) -> str:
        for marker in self.drop:
            content = content.replace(marker, "")
        return content


def calls_loop(
    text: str,
    pos: int,
    final: bool,
    call_open: str,
    read_one: Callable[[str, int, bool], tuple[Call | None, int | None]],
    skip: Sequence[str] = (),
    close: str = "",
) -> tuple[list[Call], int | None]:
    """Calls each after ``call_open`` from ``pos`` (``skip`` markup between them dropped),
    until ``close`` or text that is neither: (calls, end of the section or None)."""
    calls: list[Call] = []
    while True:
        pos = skip_space(text, pos)
        if pos >= len(text):
            return calls, (len(text) if final else None)
        if close and text.startswith(close, pos):
            return calls, pos + len(close)
        if text.startswith(call_open, pos):
            call, end = read_one(text, pos + len(call_open), final)
            if call is not None:
                calls.append(call)
            if end is None:
                return calls, None
            pos = end
            continue
        marker = next((m for m in skip if text.startswith(m, pos)), None)
        if marker is not None:
            pos += len(marker)
            continue
        rest = text[pos:]
        if any(could_begin(m, rest) for m in (call_open, close, *skip) if m):
            # Markup being written; at the end, left over (cut by max_tokens): dropped.
            return calls, (len(text) if final else None)
        return calls, pos


class StreamParser:
    """A ``ToolParser`` over a family's snapshot function: emits what each snapshot adds.

    ``max_calls`` drops calls past that many (``parallel_tool_calls: false``, a named
    function): their markup is dropped, not shown as content.
    """

    def __init__(self, parse: Parse, ctx: Context, max_calls: int | None = None) -> None:
        self._parse = parse
        self._ctx = ctx
        self._max = max_calls
        self._text = ""
        self._content = 0
        self._reasoning = 0
        self._calls: list[tuple[str, int, bool]] = []  # name, argument chars sent, ended

    def feed(self, text: str) -> list[ToolEvent]:
        if not text:
            return []
        self._text += text
        return self._emit(self._parse(self._text, False, self._ctx), final=False)

    def finish(self) -> list[ToolEvent]:
        return self._emit(self._parse(self._text, True, self._ctx), final=True)

    def whole(self) -> Snapshot:
        """The output so far read as a finished one (calls limited to ``max_calls``)."""
        snap = self._parse(self._text, True, self._ctx)
        return Snapshot(snap.content, snap.reasoning, snap.calls[: self._max])

    def _emit(self, snap: Snapshot, *, final: bool) -> list[ToolEvent]:
        events: list[ToolEvent] = []
        if len(snap.reasoning) > self._reasoning:
            events.append(Reasoning(snap.reasoning[self._reasoning :]))
            self._reasoning = len(snap.reasoning)
        if len(snap.content) > self._content:
            events.append(Content(snap.content[self._content :]))
            self._content = len(snap.content)
        for i, call in enumerate(snap.calls[: self._max]):
            if i == len(self._calls):
                events.append(CallStart(i, call.name))
                self._calls.append((call.name, 0, False))
            name, sent, ended = self._calls[i]
            if ended:
                continue
            if len(call.arguments) > sent:
                events.append(CallArguments(i, call.arguments[sent:]))
                sent = len(call.arguments)
            if call.complete or final:
                events.append(CallEnd(i, call.complete))
                ended = True
            self._calls[i] = (name, sent, ended)
        return events
