"""The prefix cache: saved sequence KV states, found by their token prefix, in RAM and on disk.

An entry is the llama.cpp state of one sequence (``llama_state_seq_get_data``) plus the tokens
it holds. A prompt can reuse an entry up to their common prefix. Lookup never scans entries'
tokens: a block-hash index maps every ``BLOCK``-token prefix boundary of every entry to the
entries sharing it, so a lookup costs one hash per block of the prompt plus one comparison.

Tiers, each with its own byte budget and eviction policy: RAM, and optionally a disk folder.
Entries evicted from RAM spill to disk; a disk hit moves back to RAM. Disk files carry the
cache identity (model file, llama-cpp-python version, context layout) and a checksum, and are
checked before use: a stale or corrupt file is skipped with a warning, never loaded. A folder
that stops taking writes (read-only, full, removed) costs the entries leaving RAM, never a
request: they are dropped, one warning says so, and the next spill that works resumes the tier.

A shared disk tier (``disk_shared``, see kv_folder.py) is a folder several processes serve
from: every stored entry is written through to it by a writer thread, RAM evictions only drop
the RAM copy, lookups first pick up the files other processes wrote (at most every
``refresh_s``), and its budget is the whole folder's, enforced by the writers. A file deleted
by another process before it is read is a miss.

This module never calls llama.cpp; the worker saves and restores the bytes. The worker
threads of a model's replicas (``[model] replicas``) share one PrefixCache, so that a state
saved by one context restores into another: each public operation holds the cache's lock
(dictionary work, and the disk tier's own file reads and spills; never llama.cpp, never the
shared folder's write-through, which its writer thread does). A hit may be gone by the time
it is loaded (another replica evicted or replaced it): ``load`` then returns the bytes the
entry still holds, or None, a miss. ``stats`` are plain counters, read anywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from attrs import define, field, frozen

from llmserve.engine.eviction import KeepPriority, PolicyName
from llmserve.engine.kv_files import file_name, read_entry, read_header, write_entry
from llmserve.engine.kv_folder import REFRESH_S, SharedFolder

log = logging.getLogger(__name__)

BLOCK = 32  # tokens per index block; shorter prompts are cheap to recompute anyway


def file_fingerprint(path: Path) -> str:
    """A cheap identity of a model file: its size and hashes of its first and last 4 MiB.

    Hashing a whole multi-GB model at every start would cost seconds; the ends hold the GGUF
    header (metadata, tensor index) and the last tensors, which differ between any two models.
    """
    chunk = 4 << 20
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(chunk))
        f.seek(max(0, size - chunk))
        digest.update(f.read(chunk))
    return digest.hexdigest()


def block_hashes(tokens: Sequence[int]) -> list[int]:
    """Chained hashes of the prompt at every whole-block boundary."""
    out: list[int] = []
    h = 0
    for start in range(0, len(tokens) - BLOCK + 1, BLOCK):
        h = hash((h, tuple(tokens[start : start + BLOCK])))
        out.append(h)
    return out


def common_prefix(a: Sequence[int], b: Sequence[int], start: int = 0) -> int:
    n = min(len(a), len(b))
    i = start
    while i < n and a[i] == b[i]:
        i += 1
    return i


@frozen
class SwaRule:
    """When a restored state may be cut back (see DESIGN.md, the sliding-window trap)."""

    n_swa: int  # 0: no sliding window, any cut is fine

    def usable(self, *, pos_min: int, n_tokens: int, p: int) -> bool:
        """Whether a state of n_tokens whose cache starts at pos_min can serve position p."""
        if p >= n_tokens - 1 or not self.n_swa:
            return True  # continued from its end (or one token back), or a full cache
        return pos_min <= max(0, p - self.n_swa)


@define(eq=False)
class Entry:
    key: int
    tokens: tuple[int, ...]
    pos_min: int
    size: int
    data: bytearray | None = None  # in RAM; None while on disk only
    path: Path | None = None  # on disk
    kept: bool = False  # saved at a client's cache breakpoint: evicted after ordinary entries


@frozen
class Hit:
    entry: Entry
    length: int  # prompt tokens the entry serves


@define
class CacheStats:
    """Counters for /metrics; written by the worker thread, read anywhere."""

    hits: int = 0
    misses: int = 0
    tokens_saved: int = 0
    evictions: dict[str, int] = field(factory=lambda: {"ram": 0, "disk": 0})
    bytes: dict[str, int] = field(factory=lambda: {"ram": 0, "disk": 0})
    entries: dict[str, int] = field(factory=lambda: {"ram": 0, "disk": 0})


class _Tier:
    """One budgeted set of entries with its policy."""

    def __init__(self, name: str, budget: int, policy: PolicyName, stats: CacheStats) -> None:
        self.name = name
        self.budget = budget
        self.policy = KeepPriority(policy, budget)
        self.entries: dict[int, Entry] = {}
        self.used = 0
        self._stats = stats

    def add(self, entry: Entry) -> None:
        self.entries[entry.key] = entry
        self.policy.insert(entry.key, entry.size, kept=entry.kept)
        self.used += entry.size
        self._count()

    def drop(self, entry: Entry) -> None:
        del self.entries[entry.key]
        self.policy.remove(entry.key)
        self.used -= entry.size
        self._count()

    def make_room(self, size: int) -> list[Entry]:
        """Evict by policy until ``size`` more bytes fit; returns the evicted entries."""
        evicted = []
        while self.used + size > self.budget and self.entries:
            victim = self.entries[self.policy.victim()]  # type: ignore[index]
            self.drop(victim)
            evicted.append(victim)
        self._stats.evictions[self.name] += len(evicted)
        return evicted

    def _count(self) -> None:
        self._stats.bytes[self.name] = self.used
        self._stats.entries[self.name] = len(self.entries)


class PrefixCache:
    """Saved sequence states by token prefix, in a RAM tier and an optional disk tier."""

    def __init__(
        self,
        *,
        identity: str,
        ram_bytes: int,
        policy: PolicyName = "lru",
        swa: SwaRule | None = None,
        disk_dir: Path | None = None,
        disk_bytes: int = 0,
        disk_policy: PolicyName | None = None,
        disk_shared: bool = False,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.identity = identity
        self.swa = swa or SwaRule(0)
        self.stats = CacheStats()
        self._ram = _Tier("ram", ram_bytes, policy, self.stats)
        self._disk = (
            _Tier("disk", disk_bytes, disk_policy or policy, self.stats)
            if disk_dir is not None and disk_bytes > 0
            else None
        )
        self._disk_dir = disk_dir
        self._disk_failing = False  # the last spill failed: warned once, retried on each spill
        self._index: dict[int, set[int]] = {}  # block-prefix hash -> entry keys
        self._by_key: dict[int, Entry] = {}
        self._by_tokens: dict[tuple[int, ...], int] = {}
        self._keys = itertools.count(1)
        self._shared: SharedFolder | None = None
        self._files: dict[str, Entry] = {}  # shared folder: file name -> the entry it holds
        self._touch_files = (disk_policy or policy) != "fifo"  # a hit renews a shared file
        self._lock = threading.Lock()  # the replicas' worker threads share this cache
        if self._disk is not None and disk_dir is not None:
            if disk_shared:
                self._shared = SharedFolder(disk_dir, identity, disk_bytes, refresh_s=refresh_s)
                self._refresh(force=True)
            else:
                disk_dir.mkdir(parents=True, exist_ok=True)
                self._scan_disk(disk_dir)

    def close(self) -> None:
        """Finish the shared folder's queued writes and stop its writer (no-op otherwise)."""
        if self._shared is not None:
            self._shared.close()

    def flush(self) -> None:
        """Wait until the entries queued for the shared folder are written (no-op otherwise)."""
        if self._shared is not None:
            self._shared.flush()

    @property
    def write_drops(self) -> int:
        """Entries not written through to the shared folder: its writer was behind."""
        return self._shared.dropped if self._shared is not None else 0

    # --- lookup -------------------------------------------------------------------------

    def lookup(self, tokens: Sequence[int]) -> Hit | None:
        """The entry serving the longest usable prefix of ``tokens`` (a miss counts)."""
        with self._lock:
            if self._shared is not None:
                self._refresh()
            best: Hit | None = None
            hashes = block_hashes(tokens)
            for depth in range(len(hashes), 0, -1):
                keys = self._index.get(hashes[depth - 1])
                if not keys:
                    continue
                start = depth * BLOCK
                for key in keys:
                    entry = self._by_key[key]
                    length = min(common_prefix(entry.tokens, tokens, start), len(tokens) - 1)
                    usable = self.swa.usable(
                        pos_min=entry.pos_min, n_tokens=len(entry.tokens), p=length
                    )
                    if usable and (best is None or length > best.length):
                        best = Hit(entry, length)
                if best is not None:
                    break  # a shallower block cannot beat a usable deeper one
            return best

    @staticmethod
    def long_enough(tokens: Sequence[int]) -> bool:
        """Whether a state of these tokens may be stored (shorter ones are not worth it)."""
        return len(tokens) >= BLOCK

    def contains(self, tokens: Sequence[int]) -> bool:
        with self._lock:
            return tuple(tokens) in self._by_tokens

    def load(self, hit: Hit) -> bytearray | None:
        """The state bytes of a hit, moving a disk entry back to RAM; None if unusable."""
        with self._lock:
            entry = hit.entry
            if entry.key not in self._by_key:  # dropped since the lookup, by another replica
                return entry.data  # still that prefix's state while it is in memory
            data = entry.data
            if data is None:
                data = self._read_disk(entry)
                if data is None:
                    return None
                if self._shared is not None:  # the file stays, for every process
                    self._forget(entry, delete=False)
                    entry.data = data
                    self._insert(entry)
                    if entry.path is not None:
                        self._files[entry.path.name] = entry
                else:
                    self._forget(entry)
                    entry.data, entry.path = data, None
                    self._insert(entry)
            elif entry.key in self._ram.entries:
                self._ram.policy.touch(entry.key)
            if self._shared is not None and entry.path is not None and self._touch_files:
                self._shared.touch(entry.path)
            return data

    def reject(self, hit: Hit) -> None:
        """llama.cpp refused the state of a hit: drop it so it is never offered again."""
        with self._lock:
            log.warning("dropping a prefix cache entry llama.cpp could not restore")
            self._forget(hit.entry, delete=self._shared is None)

    def record(self, reused_tokens: int) -> None:
        """Count one admitted prompt: a hit if any of its KV was reused (cache or live slot)."""
        with self._lock:
            if reused_tokens:
                self.stats.hits += 1
                self.stats.tokens_saved += reused_tokens
            else:
                self.stats.misses += 1

    # --- store --------------------------------------------------------------------------

    def store(
        self, tokens: Sequence[int], pos_min: int, data: bytearray, *, kept: bool = False
    ) -> bool:
        """Keep a saved state (``kept``: at a client's cache breakpoint, evicted after the
        ordinary entries); False when it is too large for the budget or too short."""
        with self._lock:
            return self._store(tokens, pos_min, data, kept)

    def _store(self, tokens: Sequence[int], pos_min: int, data: bytearray, kept: bool) -> bool:
        key_tokens = tuple(tokens)
        if not self.long_enough(key_tokens) or len(data) > self._ram.budget:
            return False
        old = self._by_tokens.get(key_tokens)
        path = None
        if old is not None:
            path = self._by_key[old].path if self._shared is not None else None
            kept = kept or self._by_key[old].kept
            self._forget(self._by_key[old], delete=self._shared is None)
        entry = Entry(
            key=next(self._keys),
            tokens=key_tokens,
            pos_min=pos_min,
            size=len(data),
            data=data,
            path=path,
            kept=kept,
        )
        self._insert(entry)
        if self._shared is not None:
            if path is not None:
                self._files[path.name] = entry
            self._shared.submit(key_tokens, pos_min, data)
        return True

    def touch(self, tokens: Sequence[int], *, keep: bool = False) -> None:
        """A held entry was used again; ``keep``: at a cache breakpoint, kept from now on."""
        with self._lock:
            self._touch(tokens, keep)

    def _touch(self, tokens: Sequence[int], keep: bool) -> None:
        key = self._by_tokens.get(tuple(tokens))
        if key is None:
            return
        if key in self._ram.entries:
            self._ram.policy.touch(key)
        if keep:
            entry = self._by_key[key]
            entry.kept = True
            for tier in (self._ram, self._disk):
                if tier is not None and key in tier.entries:
                    tier.policy.keep(key, entry.size)

    def _insert(self, entry: Entry) -> None:
        ram = self._ram
        for victim in ram.make_room(entry.size):
            self._unindex(victim)
            self._spill(victim)
        ram.add(entry)
        self._index_entry(entry)

    def _index_entry(self, entry: Entry) -> None:
        self._by_key[entry.key] = entry
        self._by_tokens[entry.tokens] = entry.key
        for h in block_hashes(entry.tokens):
            self._index.setdefault(h, set()).add(entry.key)

    def _unindex(self, entry: Entry) -> None:
        del self._by_key[entry.key]
        self._by_tokens.pop(entry.tokens, None)
        for h in block_hashes(entry.tokens):
            keys = self._index.get(h)
            if keys is not None:
                keys.discard(entry.key)
                if not keys:
                    del self._index[h]

    def _forget(self, entry: Entry, *, delete: bool = True) -> None:
        """Remove an entry from wherever it is (and its file, if on disk and ``delete``)."""
        if entry.path is not None and self._files.get(entry.path.name) is entry:
            del self._files[entry.path.name]
        if entry.key in self._ram.entries:
            self._ram.drop(entry)
        elif self._disk is not None and entry.key in self._disk.entries:
            self._disk.drop(entry)
            if delete:
                if self._shared is not None and entry.path is not None:
                    self._shared.forget(entry.path.name)  # read it again if rewritten
                self._delete_file(entry)
        if entry.key in self._by_key:
            self._unindex(entry)

    # --- disk tier ----------------------------------------------------------------------

    def _spill(self, entry: Entry) -> None:
        disk, data, folder = self._disk, entry.data, self._disk_dir
        if disk is None or folder is None or data is None or entry.size > disk.budget:
            return
        if self._shared is not None:
            self._keep_written(entry)
            return
        path = folder / file_name(self.identity, entry.tokens)
        tmp = path.with_suffix(".tmp")
        try:
            if self._disk_failing:  # a removed folder comes back once it can be made again
                folder.mkdir(parents=True, exist_ok=True)
            # Written before evicting for it: a folder that takes no writes keeps its entries.
            write_entry(tmp, self.identity, entry.tokens, entry.pos_min, data)
            for victim in disk.make_room(entry.size):
                self._unindex(victim)
                self._delete_file(victim)
            os.replace(tmp, path)  # a crash mid-write never leaves a half file under the name
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self._spill_failed(exc)
            return
        if self._disk_failing:
            self._disk_failing = False
            log.info("prefix cache: the disk tier at %s takes writes again", folder)
        entry.data, entry.path = None, path
        disk.add(entry)
        self._index_entry(entry)

    def _keep_written(self, entry: Entry) -> None:
        """Shared folder: an entry leaving RAM stays findable if its write-through landed
        (one stat); if it is still queued, the refresh after it lands finds it."""
        shared, disk = self._shared, self._disk
        assert shared is not None
        assert disk is not None
        if entry.path is None:
            path = shared.path_of(entry.tokens)
            if not path.exists():
                return
            entry.path = path
        self._files[entry.path.name] = entry
        entry.data = None
        disk.add(entry)
        self._index_entry(entry)

    def _refresh(self, *, force: bool = False) -> None:
        """Shared folder: index the files other processes wrote, drop those they deleted."""
        shared, disk = self._shared, self._disk
        assert shared is not None
        assert disk is not None
        scan = shared.scan(force=force)
        if scan is None:
            return
        for name in scan.gone:
            entry = self._files.pop(name, None)
            if entry is None:
                continue
            entry.path = None
            if entry.key in disk.entries:  # nothing left to load it from
                disk.drop(entry)
                self._unindex(entry)
        for found in scan.found:
            key = self._by_tokens.get(found.tokens)
            if key is not None:  # this process holds it already (its own write, or a copy)
                held = self._by_key[key]
                if held.path is None:
                    held.path = found.path
                    self._files[found.name] = held
                continue
            entry = Entry(
                key=next(self._keys),
                tokens=found.tokens,
                pos_min=found.pos_min,
                size=found.size,
                path=found.path,
            )
            disk.add(entry)
            self._index_entry(entry)
            self._files[found.name] = entry

    def _spill_failed(self, exc: OSError) -> None:
        """The entry leaving RAM is lost, not the request; say so once, not once a spill."""
        if self._disk_failing:
            log.debug("prefix cache: spill failed again: %s", exc)
            return
        self._disk_failing = True
        log.warning(
            "prefix cache: the disk tier at %s takes no writes (%s: %s); entries leaving RAM "
            "are dropped until it does",
            self._disk_dir,
            type(exc).__name__,
            exc.strerror or exc,
        )

    def _read_disk(self, entry: Entry) -> bytearray | None:
        path = entry.path
        if path is None:
            return None
        try:
            header, tokens, data = read_entry(path)
        except FileNotFoundError:
            # Another process evicted it since the lookup (shared folder): a miss.
            log.debug("prefix cache: %s is gone", path)
            self._forget(entry, delete=False)
            return None
        except (OSError, ValueError) as exc:
            log.warning("prefix cache: skipping unreadable file %s: %s", path, exc)
            self._forget(entry)
            return None
        if header.get("identity") != self.identity or tuple(tokens) != entry.tokens:
            log.warning("prefix cache: skipping stale file %s", path)
            self._forget(entry, delete=self._shared is None)
            return None
        return data

    def _scan_disk(self, folder: Path) -> None:
        """Index the files a previous run left, reading headers only."""
        disk = self._disk
        if disk is None:
            return
        for path in sorted(folder.glob("*.kv"), key=lambda p: p.stat().st_mtime):
            try:
                header, tokens = read_header(path)
            except (OSError, ValueError) as exc:
                log.warning("prefix cache: skipping unreadable file %s: %s", path, exc)
                continue
            if header.get("identity") != self.identity:
                log.warning("prefix cache: skipping %s, saved for another model or version", path)
                continue
            size = int(header["size"])
            if disk.used + size > disk.budget or tuple(tokens) in self._by_tokens:
                continue
            entry = Entry(
                key=next(self._keys),
                tokens=tuple(tokens),
                pos_min=int(header["pos_min"]),
                size=size,
                path=path,
            )
            disk.add(entry)
            self._index_entry(entry)

    @staticmethod
    def _delete_file(entry: Entry) -> None:
        if entry.path is not None:
            with contextlib.suppress(OSError):
                entry.path.unlink()
            entry.path = None
