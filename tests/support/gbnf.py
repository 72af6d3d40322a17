"""A small GBNF interpreter for tests: does a text match a grammar, and random texts a grammar
allows (what a model constrained by it could write), without a model.

Covers the GBNF that llmserve and llama.cpp's JSON-schema converter write: one rule a line,
string literals, character classes (negated, ranges, escapes), rule references, groups,
alternatives and the repetitions ``? * + {m} {m,} {m,n}``.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Iterator
from typing import Any

Node = tuple[Any, ...]
_NAME = re.compile(r"[a-zA-Z0-9_-]+")
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
# Characters random texts are made of (those a class allows, among these).
ALPHABET = [chr(c) for c in range(32, 127)] + ["\n", "\t", "é", "ß", "中", "😀"]


def _escape(text: str, i: int) -> tuple[str, int]:
    """The character escaped at ``text[i]`` (just after a backslash), and the index after."""
    ch = text[i]
    simple = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-"}
    if ch in simple:
        return simple[ch], i + 1
    width = {"x": 2, "u": 4, "U": 8}[ch]
    return chr(int(text[i + 1 : i + 1 + width], 16)), i + 1 + width


class Grammar:
    """A parsed GBNF grammar."""

    def __init__(self, text: str, root: str = "root") -> None:
        self.rules: dict[str, Node] = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            name, _, body = line.partition(" ::= ")
            node, end = self._alternatives(body, 0)
            assert end == len(body), f"unparsed at {end}: {body!r}"
            self.rules[name.strip()] = node
        self.root = root
        self._shortest = self._shortest_lengths()

    # -- parsing ------------------------------------------------------------------------------

    def _alternatives(self, body: str, i: int) -> tuple[Node, int]:
        options = []
        while True:
            seq, i = self._sequence(body, i)
            options.append(seq)
            i = self._space(body, i)
            if i < len(body) and body[i] == "|":
                i += 1
                continue
            return ("alt", options), i

    def _sequence(self, body: str, i: int) -> tuple[Node, int]:
        items = []
        while True:
            i = self._space(body, i)
            if i >= len(body) or body[i] in "|)":
                return ("seq", items), i
            item, i = self._item(body, i)
            item, i = self._repeat(item, body, i)
            items.append(item)

    def _repeat(self, item: Node, body: str, i: int) -> tuple[Node, int]:
        if i < len(body) and body[i] in "?*+":
            low, high = {"?": (0, 1), "*": (0, None), "+": (1, None)}[body[i]]
            return ("rep", item, low, high), i + 1
        match = _REPEAT.match(body, i)
        if match:
            low = int(match.group(1))
            if match.group(2) is None:
                high: int | None = low
            else:
                high = int(match.group(3)) if match.group(3) else None
            return ("rep", item, low, high), match.end()
        return item, i

    def _item(self, body: str, i: int) -> tuple[Node, int]:
        ch = body[i]
        if ch == '"':
            out, i = [], i + 1
            while body[i] != '"':
                if body[i] == "\\":
                    text, i = _escape(body, i + 1)
                    out.append(text)
                else:
                    out.append(body[i])
                    i += 1
            return ("lit", "".join(out)), i + 1
        if ch == "[":
            i += 1
            negated = body[i] == "^"
            i += negated
            ranges = []
            while body[i] != "]":
                if body[i] == "\\":
                    low, i = _escape(body, i + 1)
                else:
                    low, i = body[i], i + 1
                high = low
                if body[i] == "-" and body[i + 1] != "]":
                    if body[i + 1] == "\\":
                        high, i = _escape(body, i + 2)
                    else:
                        high, i = body[i + 1], i + 2
                ranges.append((low, high))
            return ("cls", negated, tuple(ranges)), i + 1
        if ch == "(":
            node, i = self._alternatives(body, i + 1)
            assert body[i] == ")", body[i:]
            return node, i + 1
        match = _NAME.match(body, i)
        assert match, f"cannot read {body[i:]!r}"
        return ("ref", match.group()), match.end()

    @staticmethod
    def _space(body: str, i: int) -> int:
        while i < len(body) and body[i] == " ":
            i += 1
        return i

    # -- matching -----------------------------------------------------------------------------

    def matches(self, text: str) -> bool:
        """Whether the whole of ``text`` is in the grammar's language."""
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20 * len(text) + 2000))
        try:
            return any(end == len(text) for end in self._match(("ref", self.root), text, 0))
        finally:
            sys.setrecursionlimit(limit)

    def _match(self, node: Node, text: str, i: int) -> Iterator[int]:
        kind = node[0]
        if kind == "lit":
            if text.startswith(node[1], i):
                yield i + len(node[1])
        elif kind == "cls":
            if i < len(text) and _in_class(node, text[i]):
                yield i + 1
        elif kind == "ref":
            yield from self._match(self.rules[node[1]], text, i)
        elif kind == "alt":
            for option in node[1]:
                yield from self._match(option, text, i)
        elif kind == "seq":
            yield from self._sequence_match(node[1], 0, text, i)
        else:
            yield from self._repeat_match(node, 0, text, i)

    def _sequence_match(self, items: list[Node], k: int, text: str, i: int) -> Iterator[int]:
        if k == len(items):
            yield i
            return
        for end in self._match(items[k], text, i):
            yield from self._sequence_match(items, k + 1, text, end)

    def _repeat_match(self, node: Node, count: int, text: str, i: int) -> Iterator[int]:
        _, item, low, high = node
        if count >= low:
            yield i
        if high is not None and count >= high:
            return
        for end in self._match(item, text, i):
            if end > i:  # an empty item repeated adds nothing
                yield from self._repeat_match(node, count + 1, text, end)

    # -- sampling -----------------------------------------------------------------------------

    def sample(self, rng: random.Random, depth_limit: int = 40) -> str:
        """A random text of the grammar: choices at random, the shortest ones past a depth."""
        out: list[str] = []
        self._emit(("ref", self.root), rng, 0, depth_limit, out)
        return "".join(out)

    def _emit(self, node: Node, rng: random.Random, depth: int, limit: int, out: list[str]) -> None:
        kind = node[0]
        if kind == "lit":
            out.append(node[1])
        elif kind == "cls":
            out.append(rng.choice([c for c in ALPHABET if _in_class(node, c)]))
        elif kind == "ref":
            self._emit(self.rules[node[1]], rng, depth + 1, limit, out)
        elif kind == "alt":
            options = node[1]
            option = min(options, key=self._length) if depth > limit else rng.choice(options)
            self._emit(option, rng, depth, limit, out)
        elif kind == "seq":
            for item in node[1]:
                self._emit(item, rng, depth, limit, out)
        else:
            _, item, low, high = node
            top = low if depth > limit else min(low + 3, high if high is not None else low + 3)
            for _ in range(rng.randint(low, top)):
                self._emit(item, rng, depth + 1, limit, out)

    def _length(self, node: Node) -> float:
        return _shortest(node, self._shortest)

    def _shortest_lengths(self) -> dict[str, float]:
        lengths = dict.fromkeys(self.rules, float("inf"))
        changed = True
        while changed:
            changed = False
            for name, node in self.rules.items():
                value = _shortest(node, lengths)
                if value < lengths[name]:
                    lengths[name], changed = value, True
        return lengths


def _shortest(node: Node, lengths: dict[str, float]) -> float:
    kind = node[0]
    if kind == "lit":
        return len(node[1])
    if kind == "cls":
        return 1
    if kind == "ref":
        return lengths[node[1]]
    if kind == "alt":
        return min(_shortest(option, lengths) for option in node[1])
    if kind == "seq":
        return sum(_shortest(item, lengths) for item in node[1])
    return node[2] * _shortest(node[1], lengths)


def _in_class(node: Node, ch: str) -> bool:
    _, negated, ranges = node
    inside = any(low <= ch <= high for low, high in ranges)
    return inside != negated
