"""N-gram drafting: the index of a sequence's n-grams and the adaptive back-off."""

from __future__ import annotations

import pytest

from llmserve.engine.ngram import Backoff, NgramDrafter


def test_draft_continues_the_latest_earlier_occurrence_of_the_tail() -> None:
    """The tokens after the most recent earlier match of the last n tokens are proposed."""
    drafter = NgramDrafter(2, [1, 2, 3, 4, 9, 1, 2, 5, 6, 7, 1, 2])
    assert drafter.draft(3) == [5, 6, 7]


def test_draft_is_cut_at_the_limit_and_at_the_sequence_end() -> None:
    """A draft never exceeds its limit, nor runs past the tokens known so far."""
    drafter = NgramDrafter(1, [7, 8, 9, 7])
    assert drafter.draft(2) == [8, 9]
    assert drafter.draft(10) == [8, 9, 7]
    assert drafter.draft(0) == []


def test_no_draft_without_an_earlier_match() -> None:
    """A tail that never appeared before (or a sequence shorter than n) drafts nothing."""
    assert NgramDrafter(3, [1, 2, 3, 4, 5]).draft(4) == []
    assert NgramDrafter(3, [1, 2]).draft(4) == []


def test_extend_keeps_the_index_current() -> None:
    """Appending tokens one by one finds matches as a whole-sequence build would."""
    tokens = [5, 6, 7, 8, 5, 6, 7, 9, 5, 6]
    grown = NgramDrafter(2)
    for token in tokens:
        grown.extend([token])
    assert grown.draft(4) == NgramDrafter(2, tokens).draft(4) == [7, 9, 5, 6]
    assert len(grown) == len(tokens)


def test_ngram_size_must_be_positive() -> None:
    """n = 0 would match everything; it is refused."""
    with pytest.raises(ValueError, match="at least 1"):
        NgramDrafter(0)


def test_backoff_waits_longer_after_each_rejected_draft() -> None:
    """The first miss costs nothing; then 4, 8, ... steps without drafting, up to the cap."""
    backoff = Backoff(cap=8)
    backoff.record(0)
    assert backoff.ready()
    backoff.record(0)
    assert [backoff.ready() for _ in range(5)] == [False] * 4 + [True]
    backoff.record(0)
    backoff.record(0)
    assert [backoff.ready() for _ in range(9)] == [False] * 8 + [True]


def test_an_accepted_token_resets_the_backoff() -> None:
    """After an accepted draft, a later miss starts from the beginning again."""
    backoff = Backoff()
    backoff.record(0)
    backoff.record(3)
    backoff.record(0)
    assert backoff.ready()
