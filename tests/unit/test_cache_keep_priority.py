"""Entries saved at a client's cache breakpoint are kept longer: the KeepPriority order and
the prefix cache tiers that use it (no llama.cpp: bytes stand in)."""

from __future__ import annotations

from pathlib import Path

from llmserve.engine.eviction import KeepPriority
from llmserve.engine.prefix_cache import PrefixCache

MB = 1 << 20


def toks(start: int, n: int = 64) -> list[int]:
    return list(range(start, start + n))


def state(size: int, fill: int = 7) -> bytearray:
    return bytearray([fill]) * size


def held(c: PrefixCache, tokens: list[int]) -> bool:
    return c.lookup([*tokens, 1]) is not None


def test_ordinary_keys_go_before_kept_ones() -> None:
    """The victim is the oldest ordinary key even when a kept key is older."""
    order = KeepPriority("lru", budget=100)
    order.insert("kept", 10, kept=True)
    order.insert("a", 10)
    order.insert("b", 10)
    assert order.victim() == "a"
    order.remove("a")
    order.remove("b")
    assert order.victim() == "kept"


def test_kept_keys_over_their_share_go_first() -> None:
    """Kept keys holding more than half the budget are evicted before ordinary ones."""
    order = KeepPriority("lru", budget=100)
    order.insert("old", 30, kept=True)
    order.insert("a", 10)
    order.insert("new", 30, kept=True)
    assert order.kept_bytes == 60
    assert order.victim() == "old"


def test_keep_promotes_an_ordinary_key() -> None:
    """An ordinary key marked kept later is evicted after the other ordinary keys."""
    order = KeepPriority("lru", budget=100)
    order.insert("a", 10)
    order.insert("b", 10)
    order.keep("a", 10)
    assert order.victim() == "b"
    assert order.kept_bytes == 10


def test_touch_orders_within_a_class() -> None:
    """Use reorders kept keys among themselves by the tier's policy."""
    order = KeepPriority("lru", budget=100)
    order.insert("x", 10, kept=True)
    order.insert("y", 10, kept=True)
    order.touch("x")
    assert order.victim() == "y"


def test_a_kept_entry_outlives_newer_ordinary_ones() -> None:
    """In a full RAM tier, a breakpoint entry stays while ordinary entries come and go."""
    c = PrefixCache(identity="m", ram_bytes=3 * MB)
    system = toks(0)
    c.store(system, 0, state(MB), kept=True)
    for i in range(1, 6):
        c.store(toks(1000 * i), 0, state(MB))
    assert held(c, system)
    assert c.stats.entries["ram"] == 3


def test_a_repeated_breakpoint_promotes_the_held_entry() -> None:
    """touch(keep=True) on an ordinary entry (saved at a finish) makes it a kept one."""
    c = PrefixCache(identity="m", ram_bytes=3 * MB)
    first = toks(0)
    c.store(first, 0, state(MB))
    c.touch(first, keep=True)
    for i in range(1, 6):
        c.store(toks(1000 * i), 0, state(MB))
    assert held(c, first)


def test_a_kept_entry_spilled_to_disk_stays_kept(tmp_path: Path) -> None:
    """A kept entry pushed to disk and read back is still kept in RAM."""
    c = PrefixCache(identity="m", ram_bytes=MB, disk_dir=tmp_path, disk_bytes=10 * MB)
    system = toks(0)
    c.store(system, 0, state(MB), kept=True)
    c.store(toks(1000), 0, state(MB))  # the only entry to evict: it spills
    assert c.stats.entries == {"ram": 1, "disk": 1}
    hit = c.lookup([*system, 1])
    assert hit is not None
    assert c.load(hit) is not None
    assert hit.entry.kept
