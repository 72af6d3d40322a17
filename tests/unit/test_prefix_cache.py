"""The prefix cache's index, budgets, policies and disk tier (no llama.cpp: bytes stand in)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmserve.engine.prefix_cache import BLOCK, PrefixCache, SwaRule

MB = 1 << 20


def toks(start: int, n: int) -> list[int]:
    return list(range(start, start + n))


def state(size: int, fill: int = 7) -> bytearray:
    return bytearray([fill]) * size


def cache(ram: int = 10 * MB, **kwargs: object) -> PrefixCache:
    return PrefixCache(identity="model-a|v1", ram_bytes=ram, **kwargs)  # type: ignore[arg-type]


def test_lookup_finds_the_longest_shared_prefix() -> None:
    """Of two entries sharing a prompt's prefix, the longer match wins."""
    c = cache()
    short, long_ = toks(0, 64), toks(0, 200)
    c.store(short, 0, state(100))
    c.store(long_, 0, state(100))
    hit = c.lookup([*toks(0, 150), 9999])
    assert hit is not None
    assert hit.entry.tokens == tuple(long_)
    assert hit.length == 150


def test_lookup_keeps_one_token_to_decode() -> None:
    """A prompt equal to an entry reuses all but its last token (its logits are needed)."""
    c = cache()
    c.store(toks(0, 100), 0, state(10))
    hit = c.lookup(toks(0, 100))
    assert hit is not None
    assert hit.length == 99


def test_prompt_sharing_less_than_a_block_misses() -> None:
    """Prefixes shorter than one index block are not worth a restore."""
    c = cache()
    c.store(toks(0, 100), 0, state(10))
    assert c.lookup([*toks(0, BLOCK - 1), 5000, *toks(40, 60)]) is None


def test_entries_shorter_than_a_block_are_not_stored() -> None:
    """Tiny prompts are cheaper to recompute than to keep."""
    c = cache()
    assert not c.store(toks(0, BLOCK - 1), 0, state(10))


def test_the_worker_can_tell_a_state_too_short_to_store_before_copying_it() -> None:
    """The worker asks first: copying a state walks every KV cell, and at each finish of a
    short request that copy was most of its cost beyond the decode (issue 19)."""
    assert not PrefixCache.long_enough(toks(0, BLOCK - 1))
    assert PrefixCache.long_enough(toks(0, BLOCK))
    assert cache().store(toks(0, BLOCK), 0, state(10))


def test_window_rule_refuses_cutting_back_past_the_window() -> None:
    """A sliding-window state serves a prompt only where its window covers the cut point."""
    c = cache(swa=SwaRule(512))
    c.store(toks(0, 1000), 488, state(10))  # a saved state holding positions 488..999
    assert c.lookup([*toks(0, 900), 77]) is None  # 900 - 512 < 488: wrong tokens
    hit = c.lookup([*toks(0, 1000), 77])  # continued from its end: fine
    assert hit is not None
    assert hit.length == 1000


def test_window_rule_allows_cut_when_window_covers_it() -> None:
    """Cutting back to p is fine when pos_min <= p - n_swa."""
    rule = SwaRule(512)
    assert rule.usable(pos_min=100, n_tokens=1000, p=612)
    assert not rule.usable(pos_min=100, n_tokens=1000, p=611)
    assert rule.usable(pos_min=900, n_tokens=1000, p=999)  # one token back


def test_budget_is_never_exceeded_and_lru_evicts_oldest() -> None:
    """Inserting past the RAM budget evicts the least recently used entry first."""
    c = cache(ram=3 * MB)
    a, b, d = toks(0, 64), toks(1000, 64), toks(2000, 64)
    c.store(a, 0, state(MB))
    c.store(b, 0, state(MB))
    assert c.lookup([*a, 1]) is not None
    c.load(c.lookup([*a, 1]))  # type: ignore[arg-type]  # a is now the most recent
    c.store(d, 0, state(2 * MB))
    assert c.stats.bytes["ram"] <= 3 * MB
    assert c.lookup([*b, 1]) is None
    assert c.lookup([*a, 1]) is not None
    assert c.stats.evictions["ram"] == 1


def test_fifo_evicts_first_inserted_despite_use() -> None:
    """FIFO ignores use: the first entry in goes first."""
    c = cache(ram=2 * MB, policy="fifo")
    a, b = toks(0, 64), toks(1000, 64)
    c.store(a, 0, state(MB))
    c.store(b, 0, state(MB))
    c.load(c.lookup([*a, 1]))  # type: ignore[arg-type]
    c.store(toks(2000, 64), 0, state(MB))
    assert c.lookup([*a, 1]) is None
    assert c.lookup([*b, 1]) is not None


def test_entry_larger_than_budget_is_not_stored() -> None:
    """A state bigger than the whole budget is refused, evicting nothing."""
    c = cache(ram=MB)
    c.store(toks(0, 64), 0, state(MB // 2))
    assert not c.store(toks(500, 64), 0, state(2 * MB))
    assert c.stats.entries["ram"] == 1


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=5 * MB), min_size=1, max_size=30))
def test_ram_budget_holds_after_every_insert(sizes: list[int]) -> None:
    """Whatever arrives, bytes in RAM never exceed the budget."""
    budget = 8 * MB
    c = cache(ram=budget)
    for i, size in enumerate(sizes):
        c.store(toks(i * 1000, 40), 0, state(size, fill=i % 256))
        assert c.stats.bytes["ram"] <= budget


def test_evicted_entries_spill_to_disk_and_come_back(tmp_path: Path) -> None:
    """RAM evictions land on disk; a disk hit returns the very same bytes."""
    c = cache(ram=MB, disk_dir=tmp_path, disk_bytes=10 * MB)
    a = toks(0, 64)
    c.store(a, 3, state(MB, fill=1))
    c.store(toks(1000, 64), 0, state(MB, fill=2))  # pushes a out of RAM
    assert c.stats.entries == {"ram": 1, "disk": 1}
    hit = c.lookup([*a, 1])
    assert hit is not None
    assert c.load(hit) == state(MB, fill=1)
    assert hit.entry.pos_min == 3


def test_disk_tier_survives_a_restart(tmp_path: Path) -> None:
    """A new cache on the same folder and identity finds the spilled entries."""
    first = cache(ram=MB, disk_dir=tmp_path, disk_bytes=10 * MB)
    a = toks(0, 64)
    first.store(a, 0, state(MB, fill=5))
    first.store(toks(1000, 64), 0, state(MB))
    second = cache(ram=MB, disk_dir=tmp_path, disk_bytes=10 * MB)
    hit = second.lookup([*a, 1])
    assert hit is not None
    assert second.load(hit) == state(MB, fill=5)


def test_file_of_another_model_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Entries saved under another identity are never offered."""
    first = cache(ram=MB, disk_dir=tmp_path, disk_bytes=10 * MB)
    first.store(toks(0, 64), 0, state(MB))
    first.store(toks(1000, 64), 0, state(MB))
    with caplog.at_level(logging.WARNING):
        other = PrefixCache(
            identity="model-b|v1", ram_bytes=MB, disk_dir=tmp_path, disk_bytes=10 * MB
        )
    assert other.lookup([*toks(0, 64), 1]) is None
    assert "another model" in caplog.text


def test_corrupt_file_is_skipped_never_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file whose bytes no longer match its checksum is dropped with a warning."""
    first = cache(ram=MB, disk_dir=tmp_path, disk_bytes=10 * MB)
    a = toks(0, 64)
    first.store(a, 0, state(MB))
    first.store(toks(1000, 64), 0, state(MB))
    (path,) = tmp_path.glob("*.kv")
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    second = cache(ram=MB, disk_dir=tmp_path, disk_bytes=10 * MB)
    hit = second.lookup([*a, 1])
    assert hit is not None
    with caplog.at_level(logging.WARNING):
        assert second.load(hit) is None
    assert "checksum" in caplog.text
    assert not path.exists()
    assert second.lookup([*a, 1]) is None


def test_disk_budget_is_never_exceeded(tmp_path: Path) -> None:
    """The disk tier evicts by its own policy within its own budget."""
    c = cache(ram=MB, disk_dir=tmp_path, disk_bytes=2 * MB)
    for i in range(6):
        c.store(toks(i * 1000, 64), 0, state(MB))
        assert c.stats.bytes["disk"] <= 2 * MB
    assert sum(p.stat().st_size for p in tmp_path.glob("*.kv")) < 3 * MB
    assert c.stats.evictions["disk"] >= 1


def test_record_counts_hits_misses_and_saved_tokens() -> None:
    """Each admitted prompt counts once: a hit with its reused tokens, or a miss."""
    c = cache()
    c.record(0)
    c.record(120)
    assert (c.stats.hits, c.stats.misses, c.stats.tokens_saved) == (1, 1, 120)


def unwritable(folder: Path) -> None:
    """Make ``folder`` take no writes, as root too (root ignores permission bits): a regular
    file takes its place, so every create under it fails (ENOTDIR) as on a read-only mount."""
    folder.rename(folder.with_name(folder.name + ".gone"))
    folder.write_bytes(b"")


def test_spill_to_an_unwritable_folder_drops_the_entry_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Entries leaving RAM for a folder that takes no writes are dropped, with one warning
    for all of them; RAM stays within its budget and nothing is raised."""
    folder = tmp_path / "kv"
    c = cache(ram=MB, disk_dir=folder, disk_bytes=10 * MB)
    unwritable(folder)
    with caplog.at_level(logging.DEBUG, logger="llmserve.engine.prefix_cache"):
        for i in range(5):
            assert c.store(toks(i * 1000, 64), 0, state(MB))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "takes no writes" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    assert c.stats.entries == {"ram": 1, "disk": 0}
    assert c.stats.bytes["ram"] <= MB
    assert c.lookup([*toks(0, 64), 1]) is None  # dropped, not half kept


def test_spilling_resumes_once_the_folder_takes_writes_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After the fault is gone (even the folder removed meanwhile), the next spill works."""
    folder = tmp_path / "kv"
    c = cache(ram=MB, disk_dir=folder, disk_bytes=10 * MB)
    unwritable(folder)
    c.store(toks(0, 64), 0, state(MB))
    c.store(toks(1000, 64), 0, state(MB))
    folder.unlink()
    with caplog.at_level(logging.INFO, logger="llmserve.engine.prefix_cache"):
        c.store(toks(2000, 64), 0, state(MB))  # spills the entry of toks(1000, 64)
    assert "takes writes again" in caplog.text
    assert c.stats.entries == {"ram": 1, "disk": 1}
    hit = c.lookup([*toks(1000, 64), 1])
    assert hit is not None
    assert c.load(hit) == state(MB)


def test_spill_failing_mid_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write cut short by the disk (ENOSPC after the first bytes, simulated at the file
    object) leaves neither a half file nor a temporary one, and evicts nothing for it."""
    real_open = Path.open
    c = cache(ram=MB, disk_dir=tmp_path, disk_bytes=10 * MB)
    c.store(toks(0, 64), 0, state(MB))
    c.store(toks(1000, 64), 0, state(MB))  # one entry on disk before the fault
    before = sorted(tmp_path.iterdir())

    class FullDisk:
        def __init__(self, f: object) -> None:
            self._f = f

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()  # type: ignore[attr-defined]

        def write(self, data: bytes) -> int:
            self._f.write(bytes(data[:10]))  # type: ignore[attr-defined]
            raise OSError(28, "No space left on device")

    def open_full(path: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        f = real_open(path, mode, *args, **kwargs)  # type: ignore[arg-type]
        return FullDisk(f) if "w" in mode else f

    monkeypatch.setattr(Path, "open", open_full)
    c.store(toks(2000, 64), 0, state(MB))
    monkeypatch.undo()
    assert sorted(tmp_path.iterdir()) == before
    assert c.stats.entries == {"ram": 1, "disk": 1}


def test_a_hit_evicted_by_another_replica_still_loads_its_bytes() -> None:
    """Replicas share the cache: an entry evicted between lookup and load still restores from
    the bytes its hit holds, and is not put back in the index."""
    c = cache(ram=150)
    c.store(toks(0, 64), 0, state(100, fill=1))
    hit = c.lookup(toks(0, 80))
    assert hit is not None
    c.store(toks(1000, 64), 0, state(100, fill=2))  # another replica's save evicts it
    assert c.load(hit) == state(100, fill=1)
    assert c.lookup(toks(0, 80)) is None


def test_a_hit_whose_file_another_replica_took_is_a_miss(tmp_path: Path) -> None:
    """A disk entry dropped between lookup and load loads as nothing: a miss, no error."""
    c = cache(ram=150, disk_dir=tmp_path, disk_bytes=150)
    c.store(toks(0, 64), 0, state(100, fill=1))
    c.store(toks(1000, 64), 0, state(100, fill=2))  # spills the first to disk
    hit = c.lookup(toks(0, 80))
    assert hit is not None
    assert hit.entry.data is None
    c.store(toks(2000, 64), 0, state(100, fill=3))  # its spill evicts the first from disk
    assert c.load(hit) is None


def test_replica_threads_share_one_cache_without_losing_entries() -> None:
    """Four threads storing, looking up and loading at once leave a consistent index."""
    import threading

    c = cache(ram=64 * 100)
    errors: list[BaseException] = []

    def replica(offset: int) -> None:
        try:
            for i in range(200):
                tokens = toks(offset * 100_000 + (i % 40) * 1000, 64)
                c.store(tokens, 0, state(100, fill=offset))
                hit = c.lookup([*tokens, 1])
                if hit is not None:
                    c.load(hit)
                c.record(64)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert c.stats.hits == 800
    assert c.stats.entries["ram"] == 64
    assert c.stats.bytes["ram"] == 64 * 100
