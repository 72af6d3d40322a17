"""A prefix cache folder shared by several llmserve processes (``[cache] disk_shared``).

Replicas serving the same model file and KV layout point their disk tier at one folder (a
ReadWriteMany volume in Kubernetes); each finds the entries the others wrote. Rules that make
that safe without any lock or coordination between processes:

- Writes are atomic: a file is written under a name of this process's own (``.tmp``) and
  renamed into place; a name already there (the same entry, written by another process) is
  only touched. Writes run on a writer thread of their own behind a bounded queue, never on
  the worker thread; a full queue drops the entry (counted, logged once).
- The budget is the folder's, not a process's: before each write the writer lists the folder
  (every process's files) and deletes the oldest (by mtime, which a hit refreshes) until the
  new file fits. Two writers evicting at once may both delete; a file already gone is fine.
- Readers never lock: a file deleted between a process's lookup and its read is a miss (POSIX
  and NFS keep an open file readable after another process unlinks it).
- The index is refreshed by listing the folder at most every ``refresh_s`` seconds, reading the
  headers of new names only (``scan``); files of another identity are ignored, never deleted
  by a reader (another model's replicas may share the folder by mistake).

Only engine code uses this; it never calls llama.cpp.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from attrs import frozen

from llmserve.engine.kv_files import SUFFIX, file_name, read_header, write_entry

log = logging.getLogger(__name__)

REFRESH_S = 2.0  # how stale a process's view of the others' files may be, at most
STALE_TMP_S = 600.0  # a temporary file this old belongs to a writer that died mid-write


@frozen
class Found:
    """A new file a scan found, with its header read."""

    name: str
    path: Path
    tokens: tuple[int, ...]
    pos_min: int
    size: int


@frozen
class Scan:
    found: list[Found]  # new files of this identity
    gone: set[str]  # names seen before and no longer there


@frozen
class _Write:
    tokens: tuple[int, ...]
    pos_min: int
    data: bytearray


class SharedFolder:
    """The shared folder of one model's disk tier: a writer thread and a folder scanner.

    ``submit`` and ``scan`` are called by the worker thread only; the writer thread touches
    the file system and its own counters only, so the two share no Python state but the queue.
    """

    def __init__(
        self,
        folder: Path,
        identity: str,
        budget: int,
        *,
        refresh_s: float = REFRESH_S,
        queue_max: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = folder
        self.identity = identity
        self.budget = budget
        self.refresh_s = refresh_s
        self.dropped = 0  # entries not written: the queue was full
        self.written = 0
        self.evicted = 0  # files this process deleted for the budget (any process's)
        self._clock = clock
        self._next_scan = 0.0
        self._seen: set[str] = set()  # names whose header was read (or that were ignored)
        self._warned_foreign = False
        self._failing = False
        self._queue: queue.Queue[_Write | None] = queue.Queue(maxsize=queue_max)
        folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="kv-folder-writer", daemon=True)
        self._thread.start()

    # --- worker thread --------------------------------------------------------------------

    def path_of(self, tokens: Sequence[int]) -> Path:
        return self.folder / file_name(self.identity, tokens)

    def submit(self, tokens: tuple[int, ...], pos_min: int, data: bytearray) -> bool:
        """Queue an entry's write-through; False (dropped, counted) when the queue is full.

        ``data`` is not copied: the cache never mutates a stored state's bytes.
        """
        try:
            self._queue.put_nowait(_Write(tokens, pos_min, data))
        except queue.Full:
            self.dropped += 1
            level = logging.DEBUG if self.dropped > 1 else logging.WARNING
            log.log(
                level,
                "prefix cache: the shared folder's writer is behind; an entry was not written "
                "(%d so far)",
                self.dropped,
            )
            return False
        return True

    def due(self) -> bool:
        return self._clock() >= self._next_scan

    def scan(self, *, force: bool = False) -> Scan | None:
        """New and gone files since the last scan; None when the last one was too recent."""
        if not force and not self.due():
            return None
        self._next_scan = self._clock() + self.refresh_s
        try:
            names = {n for n in os.listdir(self.folder) if n.endswith(SUFFIX)}
        except OSError as exc:
            log.debug("prefix cache: cannot list %s: %s", self.folder, exc)
            return Scan([], set())
        gone = self._seen - names
        self._seen -= gone
        found = []
        for name in sorted(names - self._seen):
            self._seen.add(name)
            path = self.folder / name
            try:
                header, tokens = read_header(path)
            except FileNotFoundError:
                self._seen.discard(name)  # deleted since the listing
                continue
            except (OSError, ValueError) as exc:
                log.warning("prefix cache: skipping unreadable file %s: %s", path, exc)
                continue
            if header.get("identity") != self.identity:
                if not self._warned_foreign:
                    self._warned_foreign = True
                    log.warning(
                        "prefix cache: ignoring files in %s saved for another model, version or "
                        "KV layout (such as %s)",
                        self.folder,
                        name,
                    )
                continue
            found.append(
                Found(
                    name=name,
                    path=path,
                    tokens=tuple(tokens),
                    pos_min=int(str(header["pos_min"])),
                    size=int(str(header["size"])),
                )
            )
        return Scan(found, gone)

    def forget(self, name: str) -> None:
        """Read this name's header again if it shows up again (a rewritten entry)."""
        self._seen.discard(name)

    def touch(self, path: Path) -> None:
        """A hit: the file becomes the newest, last in line for the folder's eviction."""
        with contextlib.suppress(OSError):
            os.utime(path)

    def flush(self) -> None:
        """Wait until every queued write has landed (or failed)."""
        self._queue.join()

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued writes (bounded by ``timeout``), then stop the writer."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    # --- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._write(item)
            except Exception:  # a bug must not end the writer: the next entries still count
                log.exception("prefix cache: writing to the shared folder failed")
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _write(self, item: _Write) -> None:
        path = self.path_of(item.tokens)
        size = len(item.data)
        if size > self.budget:
            return
        if path.exists():  # the same entry, written by another process (or by this one)
            self.touch(path)
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_entry(tmp, self.identity, item.tokens, item.pos_min, item.data)
            self._make_room(tmp.stat().st_size)  # with its header and tokens
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self._write_failed(exc)
            return
        self.written += 1
        if self._failing:
            self._failing = False
            log.info("prefix cache: the shared folder %s takes writes again", self.folder)

    def _make_room(self, size: int) -> None:
        """Delete the folder's oldest files, whoever wrote them, until ``size`` bytes fit."""
        files = []
        now = time.time()
        with os.scandir(self.folder) as listing:
            for item in listing:
                try:
                    stat = item.stat()
                except OSError:
                    continue  # deleted meanwhile
                if item.name.endswith(".tmp"):
                    if now - stat.st_mtime > STALE_TMP_S:
                        with contextlib.suppress(OSError):
                            os.unlink(item.path)
                    continue
                if item.name.endswith(SUFFIX):
                    files.append((stat.st_mtime, item.path, stat.st_size))
        used = sum(entry[2] for entry in files)
        files.sort()
        for _, victim, victim_size in files:
            if used + size <= self.budget:
                break
            with contextlib.suppress(FileNotFoundError):  # another process evicted it first
                os.unlink(victim)
                self.evicted += 1
            used -= victim_size

    def _write_failed(self, exc: OSError) -> None:
        if self._failing:
            log.debug("prefix cache: shared folder write failed again: %s", exc)
            return
        self._failing = True
        log.warning(
            "prefix cache: the shared folder %s takes no writes (%s: %s); entries are kept in "
            "RAM only until it does",
            self.folder,
            type(exc).__name__,
            exc.strerror or exc,
        )
