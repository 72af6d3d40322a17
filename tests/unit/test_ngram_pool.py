"""The n-gram pool shared by a model's slots: bounded, looked up by chaining, fed by output."""

from __future__ import annotations

import pytest

from llmserve.engine.ngram import NgramDrafter
from llmserve.engine.ngrampool import NgramPool


def test_pool_follows_each_ngram_to_the_token_after_it() -> None:
    """A draft chains lookups: each token is what followed the n-gram ending at the previous."""
    pool = NgramPool(2)
    for ngram, token in (((1, 2), 3), ((2, 3), 4), ((3, 4), 5)):
        pool.add(ngram, token)
    assert pool.follow((1, 2), 8) == [3, 4, 5]
    assert pool.follow((1, 2), 2) == [3, 4]
    assert pool.follow((9, 9), 8) == []


def test_latest_write_of_an_ngram_wins() -> None:
    """An n-gram seen again with another follower proposes the newer one."""
    pool = NgramPool(2)
    pool.add((1, 2), 3)
    pool.add((1, 2), 7)
    assert pool.follow((1, 2), 1) == [7]
    assert len(pool) == 1


def test_pool_forgets_the_least_recently_written_ngram_when_full() -> None:
    """At max_entries the oldest write goes; rewriting an n-gram makes it new again."""
    pool = NgramPool(1, max_entries=3)
    for token in (10, 20, 30):
        pool.add((token,), token + 1)
    pool.add((10,), 11)  # refreshed: now 20 is the oldest
    pool.add((40,), 41)
    assert len(pool) == 3
    assert pool.follow((20,), 1) == []
    assert [pool.follow((t,), 1) for t in (10, 30, 40)] == [[11], [31], [41]]


def test_pool_that_loops_drafts_up_to_the_limit() -> None:
    """A pool whose n-grams loop proposes the loop up to the limit (verification decides)."""
    pool = NgramPool(1)
    pool.add((1,), 2)
    pool.add((2,), 1)
    assert pool.follow((1,), 5) == [2, 1, 2, 1, 2]


def test_pool_sizes_must_be_positive() -> None:
    """n = 0 or an empty table is refused."""
    with pytest.raises(ValueError, match="n must be at least 1"):
        NgramPool(0)
    with pytest.raises(ValueError, match="max_entries must be at least 1"):
        NgramPool(2, max_entries=0)


def test_drafter_consults_the_pool_when_its_own_tokens_have_no_match() -> None:
    """A sequence whose tail it never saw before drafts what another sequence wrote after it."""
    pool = NgramPool(2)
    writer = NgramDrafter(2, [1, 2], pool)
    writer.extend([50, 51, 52, 53])
    reader = NgramDrafter(2, [9, 9, 9, 50, 51], pool)
    assert reader.draft(3) == [52, 53]
    assert NgramDrafter(2, [9, 9, 9, 50, 51]).draft(3) == []


def test_drafter_prefers_its_own_tokens_over_the_pool() -> None:
    """With a match in its own sequence, the pool is not asked."""
    pool = NgramPool(2)
    pool.add((5, 6), 99)
    drafter = NgramDrafter(2, [5, 6, 7, 8, 5, 6], pool)
    assert drafter.draft(2) == [7, 8]


def test_only_generated_tokens_feed_the_pool() -> None:
    """The prompt stays the sequence's own; each appended token adds the n-gram before it."""
    pool = NgramPool(2)
    drafter = NgramDrafter(2, [1, 2, 3, 4], pool)
    assert len(pool) == 0
    drafter.extend([5, 6])
    assert pool.follow((3, 4), 4) == [5, 6]
    assert len(pool) == 2


def test_pool_and_drafter_must_match_on_n() -> None:
    """A pool of other n-gram sizes could never be looked up; it is refused."""
    with pytest.raises(ValueError, match="same size"):
        NgramDrafter(3, [], NgramPool(2))
