"""A disk tier shared by several processes (``[cache] disk_shared``): two PrefixCache objects on
one folder stand in for two llmserve processes (no llama.cpp: bytes stand in for states)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmserve.engine import kv_folder
from llmserve.engine.kv_folder import SharedFolder
from llmserve.engine.prefix_cache import PrefixCache

MB = 1 << 20
IDENTITY = "model-a|v1"


def toks(start: int, n: int = 64) -> list[int]:
    return list(range(start, start + n))


def state(size: int, fill: int = 7) -> bytearray:
    return bytearray([fill]) * size


Replica = Callable[..., PrefixCache]


@pytest.fixture(name="open_caches")
def fixture_open_caches() -> Iterator[list[PrefixCache]]:
    """Caches made by a test; their writer threads are stopped after it."""
    made: list[PrefixCache] = []
    yield made
    for c in made:
        c.close()


@pytest.fixture(name="replica")
def fixture_replica(tmp_path: Path, open_caches: list[PrefixCache]) -> Replica:
    """Makes a process's cache on the shared folder ``tmp_path / "kv"``."""

    def make(
        ram: int = 10 * MB, disk: int = 10 * MB, identity: str = IDENTITY, refresh_s: float = 0.0
    ) -> PrefixCache:
        c = PrefixCache(
            identity=identity,
            ram_bytes=ram,
            disk_dir=tmp_path / "kv",
            disk_bytes=disk,
            disk_shared=True,
            refresh_s=refresh_s,
        )
        open_caches.append(c)
        return c

    return make


def kv_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.kv"))


def test_entry_stored_by_one_process_is_found_by_another(replica: Replica, tmp_path: Path) -> None:
    """A stores (written through, still in its RAM); B's next lookup refreshes and finds it."""
    a, b = replica(), replica()
    prompt = toks(0, 200)
    assert a.store(prompt, 3, state(MB, fill=9))
    a.flush()
    assert a.stats.entries == {"ram": 1, "disk": 0}  # written through, not spilled
    assert len(kv_files(tmp_path / "kv")) == 1
    hit = b.lookup([*prompt, 1])
    assert hit is not None
    assert hit.length == 200
    assert hit.entry.pos_min == 3
    assert b.load(hit) == state(MB, fill=9)
    assert len(kv_files(tmp_path / "kv")) == 1  # a hit keeps the file for everyone


def test_refresh_reads_the_folder_at_most_every_refresh_s(tmp_path: Path) -> None:
    """Lookups between two refreshes do not list the folder; only new files' headers are read."""
    now = [0.0]
    reader = SharedFolder(tmp_path, IDENTITY, 10 * MB, refresh_s=5.0, clock=lambda: now[0])
    writer = SharedFolder(tmp_path, IDENTITY, 10 * MB)
    try:
        assert reader.scan() is not None
        writer.submit(tuple(toks(0)), 0, state(100))
        writer.flush()
        now[0] = 4.9
        assert reader.scan() is None  # too soon
        now[0] = 5.0
        first = reader.scan()
        assert first is not None
        assert [f.tokens for f in first.found] == [tuple(toks(0))]
        now[0] = 10.0
        again = reader.scan()
        assert again is not None
        assert again.found == []  # known names are not read again
    finally:
        reader.close()
        writer.close()


def test_eviction_by_one_process_while_another_reads_is_a_miss(
    replica: Replica, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """B found A's file; A's writer evicts it for the folder budget; B's load is a plain miss
    (no error, no warning) and B's next refresh forgets the entry."""
    a, b = replica(disk=2 * MB + 4096), replica(disk=2 * MB + 4096)
    first = toks(0)
    a.store(first, 0, state(MB))
    a.flush()
    hit = b.lookup([*first, 1])
    assert hit is not None
    assert hit.entry.data is None  # on disk only, for B
    time.sleep(0.01)  # distinct mtimes: first is the oldest
    for i in (1, 2):
        a.store(toks(i * 1000), 0, state(MB))
        a.flush()
    assert not (tmp_path / "kv" / hit.entry.path.name).exists()  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING):
        assert b.load(hit) is None
    assert caplog.records == []
    assert b.lookup([*first, 1]) is None
    assert b.lookup([*toks(2000), 1]) is not None


def test_shared_budget_counts_every_process_files_oldest_first(
    replica: Replica, tmp_path: Path
) -> None:
    """Two writers alternate; the folder stays within the one budget, the newest files stay."""
    a, b = replica(disk=3 * MB), replica(disk=3 * MB)
    for i in range(6):
        (a if i % 2 else b).store(toks(i * 1000), 0, state(MB // 2 + 1000))
        a.flush()
        b.flush()
        time.sleep(0.01)
    files = kv_files(tmp_path / "kv")
    assert sum(p.stat().st_size for p in files) <= 3 * MB
    assert len(files) == 5
    c = replica()
    assert c.lookup([*toks(0), 1]) is None  # the oldest went
    assert c.lookup([*toks(5000), 1]) is not None


def test_foreign_identity_is_ignored_and_kept(
    replica: Replica, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Files of another model or version are never offered, warned about once, not deleted."""
    other = replica(identity="model-b|v1")
    other.store(toks(0), 0, state(100))
    other.store(toks(1000), 0, state(100))
    other.flush()
    with caplog.at_level(logging.WARNING):
        mine = replica()
        assert mine.lookup([*toks(0), 1]) is None
        assert mine.lookup([*toks(1000), 1]) is None
    assert caplog.text.count("another model") == 1
    assert len(kv_files(tmp_path / "kv")) == 2


def test_same_entry_from_two_processes_is_one_file_written_atomically(
    replica: Replica, tmp_path: Path
) -> None:
    """A second writer of an existing entry only touches it; no temporary file is left."""
    a, b = replica(), replica()
    a.store(toks(0), 0, state(100, fill=1))
    a.flush()
    b.store(toks(0), 0, state(100, fill=1))
    b.flush()
    assert [p.suffix for p in (tmp_path / "kv").iterdir()] == [".kv"]


def test_ram_eviction_keeps_the_written_entry_findable_from_disk(
    replica: Replica, tmp_path: Path
) -> None:
    """An entry leaving RAM is not written again: its write-through file serves the next hit."""
    c = replica(ram=MB)
    c.store(toks(0), 0, state(MB, fill=4))
    c.flush()
    c.store(toks(1000), 0, state(MB))
    assert c.stats.entries == {"ram": 1, "disk": 1}
    hit = c.lookup([*toks(0), 1])
    assert hit is not None
    assert c.load(hit) == state(MB, fill=4)
    c.flush()
    assert len(kv_files(tmp_path / "kv")) == 2


def test_full_write_queue_drops_with_a_count_and_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer that is behind never blocks the worker thread: the entry is dropped, counted."""
    release = threading.Event()
    real_write = kv_folder.write_entry

    def slow_write(*args: object) -> None:
        release.wait(5)
        real_write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(kv_folder, "write_entry", slow_write)
    folder = SharedFolder(tmp_path, IDENTITY, 10 * MB, queue_max=1)
    try:
        with caplog.at_level(logging.WARNING):
            results = [folder.submit(tuple(toks(i * 1000)), 0, state(10)) for i in range(4)]
        assert results[0]
        assert not results[-1]
        assert folder.dropped >= 2
        assert caplog.text.count("writer is behind") == 1
    finally:
        release.set()
        folder.close()
    assert 1 <= len(kv_files(tmp_path)) <= 2


def test_stale_temporary_file_of_a_dead_writer_is_removed(tmp_path: Path) -> None:
    """A .tmp left by a process killed mid-write is swept by the next write's budget scan."""
    stale = tmp_path / ".x.kv.1.2.tmp"
    stale.write_bytes(b"half")
    old = time.time() - kv_folder.STALE_TMP_S - 10
    os.utime(stale, (old, old))
    folder = SharedFolder(tmp_path, IDENTITY, 10 * MB)
    try:
        folder.submit(tuple(toks(0)), 0, state(10))
        folder.flush()
    finally:
        folder.close()
    assert not stale.exists()
    assert len(kv_files(tmp_path)) == 1


def test_entry_whose_file_another_process_deleted_is_not_kept_after_ram(
    replica: Replica,
) -> None:
    """B restored A's entry into RAM; A evicts the file; when B's RAM evicts it too, B no
    longer offers it (no dead disk entry)."""
    a, b = replica(disk=2 * MB + 4096), replica(ram=MB)
    a.store(toks(0), 0, state(MB))
    a.flush()
    hit = b.lookup([*toks(0), 1])
    assert hit is not None
    assert b.load(hit) == state(MB)
    time.sleep(0.01)
    for i in (1, 2):
        a.store(toks(i * 1000), 0, state(MB))
        a.flush()
    assert b.lookup([*toks(0), 1]) is not None  # still in B's RAM; the refresh saw it go
    b.store(toks(5000), 0, state(MB))  # B's RAM evicts it
    assert b.lookup([*toks(0), 1]) is None
    assert b.stats.entries["ram"] == 1
