"""Python literals as LFM2 writes its calls' argument values (``city="Paris"``, ``n=3``,
``on=True``, ``tags=['a', 'b']``, JSON's ``true``/``false``/``null`` too), read into JSON values
by a small reader of its own: nothing is evaluated, and a string is decoded as far as it is
written, so its value can stream before its closing quote.

A string's escapes are Python's (``\\n``, ``\\t``, ``\\xHH``, ``\\uHHHH``, octal, a quote,
...) plus JSON's ``\\/``; ``\\N{...}`` and any unknown escape stay as written (Python keeps the
backslash of an unknown one). ``r`` strings keep their backslashes; other prefixes are ignored.
"""

from __future__ import annotations

import re
from json.decoder import scanstring
from typing import Any

from attrs import frozen

from llmserve.prompt.toolformats.scan import skip_space

# A keyword argument's name as LFM2 reads it: any parameter name without space, quotes,
# brackets, "=" or "," (llama.cpp's grammar writes each property's name as it is).
KEYWORD = r"[^\s=,()\[\]{}'\"]+"
_START = re.compile(r"([rRuUbBfF]{0,2})(['\"])")
_NUMBER = re.compile(r"[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][-+]?\d+)?")
# What a number's text may be made of (checked by _NUMBER once it is whole).
_TOKEN = re.compile(r"[-+]?[\w.]+(?:(?<=[eE])[-+][\w.]*)?")
_WORD = re.compile(r"[A-Za-z_]\w*")
_OCTAL = re.compile(r"[0-7]{1,3}")
# A single-quoted string's body up to its closing quote (an escape cut short left out).
_BODY = {q: re.compile(rf"[^{q}\\]*(?:\\.[^{q}\\]*)*", re.S) for q in "'\""}
_STOPS = {"'": re.compile(r"[\\']"), '"': re.compile(r'[\\"]')}
_SURROGATE = re.compile("[\ud800-\udfff]")
_HEX = frozenset("0123456789abcdefABCDEF")
_SIMPLE = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "/": "/",  # JSON's, which a model writing JSON-style strings means as "/"
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\n": "",  # a line continuation
}
_WIDTH = {"x": 2, "u": 4, "U": 8}
_WORDS = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}
_OPEN = {"[": "]", "(": ")", "{": "}"}
MAX_DEPTH = 64  # nesting beyond it is not a value (a model does not nest that deep)


class Cut(Exception):
    """The text ends inside the value: it is not written yet (``string``: a string value, as
    far as it is)."""

    def __init__(self, string: Text | None = None) -> None:
        super().__init__()
        self.string = string


class Invalid(Exception):
    """The text is no literal value."""


@frozen
class Text:
    """A string literal read so far: its value decoded (for one still open, what is sure of
    it) and where it ends (after the closing quote; None: still open)."""

    value: str
    end: int | None


def read_string(text: str, pos: int) -> Text | None:
    """The string literal at ``pos``, as far as written; None if there is none there."""
    start = _START.match(text, pos)
    if start is None:
        return None
    raw = "r" in start.group(1).lower()
    quote, i = start.group(2), start.end()
    if text.startswith(quote, i):
        if i + 1 >= len(text):
            return Text("", None)  # "" so far: empty, or a triple quote's start
        if text[i + 1] != quote:
            return Text("", i + 1)
        quote, i = quote * 3, i + 2
    if len(quote) == 1 and not raw:
        fast = _as_json(text, i, quote)
        if fast is not None:
            return fast
    out: list[str] = []
    stops = _STOPS[quote[0]]
    while i < len(text):
        stop = stops.search(text, i)
        end = stop.start() if stop is not None else len(text)
        out.append(text[i:end])  # plain characters, in one piece (outputs re-read often)
        i = end
        if i >= len(text):
            break
        if text.startswith(quote, i):
            return Text(_paired("".join(out)), i + len(quote))
        if len(quote) == 3 and quote.startswith(text[i:]):
            break  # the closing quotes arriving: not content yet
        if text[i] != "\\":
            out.append(text[i])  # one quote inside a triple-quoted string
            i += 1
            continue
        piece, size = _escape(text, i, raw)
        if size is None:
            break  # an escape cut short: held back
        out.append(piece)
        i += size
    return _still_open("".join(out))


def _as_json(text: str, i: int, quote: str) -> Text | None:
    """The string from ``i`` (after its quote) read by json's scanner, in C (outputs are
    re-read on every piece), when its escapes are all JSON's, which mean the same in Python;
    one still open is read as far as written. None: it holds another escape."""
    end = _BODY[quote].match(text, i).end()  # type: ignore[union-attr]
    closed = text.startswith(quote, end)
    segment = text[i:end]
    if quote == "'" and '"' in segment:
        if '\\"' in segment:
            return None
        segment = segment.replace('"', '\\"')  # a double quote, as JSON writes it
    value = _scanned(segment)
    if value is None and not closed:
        cut = segment.rfind("\\", max(0, len(segment) - 10))
        value = _scanned(segment[:cut]) if cut >= 0 else None  # an escape cut short
    if value is None:
        return None
    return Text(_paired(value), end + 1) if closed else _still_open(value)


def _still_open(value: str) -> Text:
    """A string still being written, decoded so far."""
    if value and "\ud800" <= value[-1] <= "\udbff":
        value = value[:-1]  # half of a surrogate pair: the other half may follow
    return Text(_paired(value), None)


def _scanned(segment: str) -> str | None:
    try:
        value, stop = scanstring(segment + '"', 0, False)
    except ValueError:
        return None
    return value if stop == len(segment) + 1 else None


def _escape(text: str, i: int, raw: bool) -> tuple[str, int | None]:
    """One escape at ``text[i]`` (a backslash): its text and length (None: cut short)."""
    if i + 1 >= len(text):
        return "", None
    ch = text[i + 1]
    if raw:
        return "\\" + ch, 2
    if ch in _SIMPLE:
        return _SIMPLE[ch], 2
    width = _WIDTH.get(ch)
    if width is not None:
        digits = text[i + 2 : i + 2 + width]
        if all(d in _HEX for d in digits):
            if len(digits) < width:
                return ("", None) if i + 2 + len(digits) == len(text) else ("\\" + ch, 2)
            if int(digits, 16) <= 0x10FFFF:
                return chr(int(digits, 16)), 2 + width
        return "\\" + ch, 2
    octal = _OCTAL.match(text, i + 1)
    if octal is not None:
        if octal.end() == len(text) and len(octal.group()) < 3:
            return "", None  # more digits may follow
        return chr(int(octal.group(), 8)), 1 + len(octal.group())
    return "\\" + ch, 2


def _paired(value: str) -> str:
    """Surrogate pairs (``\\ud83d\\ude00``) joined into their character; a lone half, which
    no text can carry, replaced."""
    if not _SURROGATE.search(value):
        return value
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def read_value(text: str, pos: int, depth: int = 0) -> tuple[Any, int]:
    """The literal value at ``pos`` and where it ends; ``Cut`` or ``Invalid`` if none."""
    if pos >= len(text):
        raise Cut
    ch = text[pos]
    string = read_string(text, pos)
    if string is not None:
        if string.end is None:
            raise Cut(string if depth == 0 else None)  # a string in a container: not yet
        return string.value, string.end
    if ch in _OPEN:
        if depth >= MAX_DEPTH:
            raise Invalid
        return _container(text, pos, depth + 1)
    token = _TOKEN.match(text, pos)
    if token is not None and (ch.isdigit() or ch in "+-."):
        if token.end() >= len(text):
            raise Cut  # more of the number may follow
        if not _NUMBER.fullmatch(token.group()):
            raise Invalid
        return _number(token.group()), token.end()
    word = _WORD.match(text, pos)
    if word is not None:
        if word.end() >= len(text):
            raise Cut
        if word.group() in _WORDS:
            return _WORDS[word.group()], word.end()
    raise Invalid


def _number(written: str) -> int | float:
    digits = written.replace("_", "")
    try:
        if any(c in digits for c in ".eE"):
            value = float(digits)
            if value in (float("inf"), float("-inf")):
                raise Invalid  # no JSON number
            return value
        return int(digits)
    except ValueError as exc:  # "1__2", or an int past Python's digit limit
        raise Invalid from exc


def _container(text: str, pos: int, depth: int) -> tuple[Any, int]:
    """A list, tuple (as a list) or dict at ``pos``."""
    close = _OPEN[text[pos]]
    items: list[Any] = []
    pairs: dict[Any, Any] = {}
    i = pos + 1
    while True:
        i = skip_space(text, i)
        if i >= len(text):
            raise Cut
        if text[i] == close:
            return (pairs if close == "}" else items), i + 1
        value, i = read_value(text, i, depth)
        if close == "}":
            if isinstance(value, list | dict):
                raise Invalid  # no key
            i = skip_space(text, i)
            if i >= len(text):
                raise Cut
            if text[i] != ":":
                raise Invalid
            pairs[value], i = read_value(text, skip_space(text, i + 1), depth)
        else:
            items.append(value)
        i = skip_space(text, i)
        if i >= len(text):
            raise Cut
        if text[i] == ",":
            i += 1
        elif text[i] != close:
            raise Invalid


def scan(text: str, pos: int, stops: str) -> int | None:
    """Where the first of ``stops`` outside brackets and strings is, from ``pos`` (an
    unmatched closing bracket stops too); None if the text ends first."""
    depth = 0
    while pos < len(text):
        ch = text[pos]
        if depth == 0 and (ch in stops or ch in ")]}"):
            return pos
        if ch in "'\"":
            string = read_string(text, pos)
            if string is None or string.end is None:
                return None
            pos = string.end
            continue
        depth += 1 if ch in _OPEN else -1 if ch in ")]}" else 0
        pos += 1
    return None
