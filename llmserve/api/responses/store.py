"""Stored responses: what ``previous_response_id`` continues and ``GET /v1/responses/{id}``
returns, bounded in entries and bytes (least recently used out first), scoped to the API key
that made each one, and optionally kept in a JSON-lines file so they survive a restart.

A scope is a hash of the key (never the key itself, which would then sit in memory and on
disk); with no keys configured every request shares one scope. Looking a response up in
another scope finds nothing, exactly as an unknown id does, so a 404 tells no one whether the
id exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from attrs import frozen

log = logging.getLogger("llmserve.responses")


def scope_of(key: str | None) -> str:
    """The store scope of requests made with ``key`` (None: no key, the one open scope)."""
    if not key:
        return ""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@frozen
class Stored:
    """One stored response and the conversation that led to it, its answer included, as
    chat-template messages (what a continuation renders before its own input)."""

    response: dict[str, Any]
    conversation: tuple[dict[str, Any], ...]


class ResponseStore:
    """An LRU map (scope, id) -> Stored within ``max_entries`` and ``max_bytes`` of JSON."""

    def __init__(self, max_entries: int, max_bytes: int, disk_path: str | None = None) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], tuple[Stored, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._path = Path(disk_path).expanduser() if disk_path else None
        self._log_lines = 0
        if self._path is not None:
            self._load(self._path)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, scope: str, stored: Stored) -> None:
        line = _line(scope, stored)
        with self._lock:
            self._insert(scope, stored, len(line))
            self._append(line)

    def get(self, scope: str, response_id: str) -> Stored | None:
        with self._lock:
            found = self._entries.get((scope, response_id))
            if found is None:
                return None
            self._entries.move_to_end((scope, response_id))
            return found[0]

    def delete(self, scope: str, response_id: str) -> bool:
        with self._lock:
            found = self._entries.pop((scope, response_id), None)
            if found is None:
                return False
            self._bytes -= found[1]
            self._append(_dumps({"deleted": response_id, "scope": scope}))
            return True

    # -- bounds ---------------------------------------------------------------------------

    def _insert(self, scope: str, stored: Stored, size: int) -> None:
        key = (scope, str(stored.response["id"]))
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        if size > self._max_bytes or self._max_entries == 0:
            return  # larger than the whole store: kept nowhere
        self._entries[key] = (stored, size)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped

    # -- the file -------------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        for n, line in enumerate(lines, 1):
            try:
                data = json.loads(line)
                if "deleted" in data:
                    found = self._entries.pop((data["scope"], data["deleted"]), None)
                    self._bytes -= found[1] if found is not None else 0
                else:
                    stored = Stored(data["response"], tuple(data["conversation"]))
                    self._insert(data["scope"], stored, len(line))
            except (ValueError, KeyError, TypeError):
                log.warning(
                    "responses store %s: line %d is not a stored response; skipped", path, n
                )
        self._compact()

    def _append(self, line: str) -> None:
        if self._path is None:
            return
        # The log keeps deletions and evicted entries until it is rewritten: rewrite it once
        # it holds twice what the store does, so the file stays within about 2 x max_bytes.
        self._log_lines += 1
        if self._log_lines > 2 * len(self._entries) + 16:
            self._compact()
            return
        with self._path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _compact(self) -> None:
        assert self._path is not None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        lines = [_line(scope, stored) for (scope, _), (stored, _) in self._entries.items()]
        partial = self._path.with_name(self._path.name + ".tmp")
        partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        partial.replace(self._path)
        self._log_lines = len(lines)


def _line(scope: str, stored: Stored) -> str:
    return _dumps(
        {"scope": scope, "response": stored.response, "conversation": list(stored.conversation)}
    )


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
