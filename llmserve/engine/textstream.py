"""Generated token bytes -> text that is safe to send to a client.

A token's piece is bytes, not text: one character may span several tokens (emoji, CJK in a
byte-fallback vocabulary), and a stop string may span several tokens too. ``TextStream`` holds
back exactly what is not yet decidable, so every chunk it returns is whole characters that can
never turn out to be part of a stop string.

Stop semantics (the same whatever the token boundaries): generation stops at the first
character where some stop string is complete; if several complete there, the one that starts
earliest is cut. The emitted text is everything before that stop string.

Cost per push is bounded by the held-back tail (shorter than the longest stop string) plus the
new text: the output is never rescanned.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextStream:
    """Incremental UTF-8 decoding with stop-string hold-back, for one generation."""

    __slots__ = (
        "_chunks",
        "_decoder",
        "_longest_prefix",
        "_matched",
        "_pending",
        "_prefix_ends",
        "_prefixes",
        "_stopped",
        "_stops",
    )

    def __init__(self, stop: Sequence[str] = ()) -> None:
        # An empty stop string would match before the first character; OpenAI ignores it too.
        self._stops: tuple[str, ...] = tuple(dict.fromkeys(s for s in stop if s))
        # Proper prefixes only: a whole stop string is found by the search, never held.
        self._prefixes: frozenset[str] = frozenset(
            s[:i] for s in self._stops for i in range(1, len(s))
        )
        # Fast path: held-back text must end with a character that ends some proper prefix.
        self._prefix_ends: frozenset[str] = frozenset(p[-1] for p in self._prefixes)
        self._longest_prefix = max((len(p) for p in self._prefixes), default=0)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._chunks: list[str] = []
        self._stopped = False
        self._matched: str | None = None

    @property
    def stopped(self) -> bool:
        """True once a stop string has completed; later pushes return nothing."""
        return self._stopped

    @property
    def matched_stop(self) -> str | None:
        """The stop string that ended generation, if one did."""
        return self._matched

    @property
    def text(self) -> str:
        """Everything emitted so far."""
        if len(self._chunks) > 1:
            self._chunks[:] = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""

    def push(self, piece: bytes) -> str:
        """Feed one token's bytes; return the text that became safe to emit."""
        if self._stopped:
            return ""
        new = self._decoder.decode(piece)
        if not new:
            return ""
        return self._advance(self._pending + new)

    def flush(self) -> str:
        """End of generation: return the held-back text (a truncated character becomes U+FFFD)."""
        if self._stopped:
            return ""
        buf = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        # The final U+FFFD may itself complete a stop string.
        cut = self._find_stop(buf)
        if cut is not None:
            self._stopped = True
            buf = buf[:cut]
        return self._emit(buf)

    def _advance(self, buf: str) -> str:
        # ``buf`` never holds a complete stop string except one that ends in the new text, and
        # no stop string can start before ``buf``: the held-back tail is the longest suffix of
        # the old text that begins a stop string.
        cut = self._find_stop(buf)
        if cut is not None:
            self._stopped = True
            self._pending = ""
            return self._emit(buf[:cut])
        hold = self._held_length(buf)
        self._pending = buf[len(buf) - hold :] if hold else ""
        return self._emit(buf[: len(buf) - hold])

    def _find_stop(self, buf: str) -> int | None:
        best_end = best_start = -1
        for s in self._stops:
            start = buf.find(s)
            if start < 0:
                continue
            end = start + len(s)
            if best_end < 0 or end < best_end or (end == best_end and start < best_start):
                best_end, best_start, self._matched = end, start, s
        return best_start if best_end >= 0 else None

    def _held_length(self, buf: str) -> int:
        if not buf or buf[-1] not in self._prefix_ends:
            return 0
        n = len(buf)
        for k in range(min(n, self._longest_prefix), 0, -1):
            if buf[n - k :] in self._prefixes:
                return k
        return 0

    def _emit(self, out: str) -> str:
        if out:
            self._chunks.append(out)
        return out
