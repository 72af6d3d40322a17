"""Whether a draft model's vocabulary is the target's: llama.cpp's checks, on a sample."""

from __future__ import annotations

import attrs

from llmserve.engine.vocabmatch import (
    FIRST_CHECKED,
    HEAD,
    SPREAD,
    VocabSample,
    compared_ids,
    mismatch,
    sample_ids,
)

N_VOCAB = 5000
TEXTS = {i: f"t{i}".encode() for i in sample_ids(N_VOCAB)}
TARGET = VocabSample(
    kind=1, n_vocab=N_VOCAB, add_bos=True, bos=2, add_eos=False, eos=1, texts=TEXTS
)


def test_the_same_vocabulary_is_compatible() -> None:
    """Same kind, specials, size and texts: no reason to refuse."""
    assert mismatch(TARGET, attrs.evolve(TARGET)) is None


def test_sizes_within_the_padding_slack_are_compatible() -> None:
    """A vocabulary padded by up to 128 ids (as Qwen's sizes differ) still drafts."""
    assert mismatch(TARGET, attrs.evolve(TARGET, n_vocab=N_VOCAB + 128)) is None


def test_sizes_far_apart_are_refused_with_both_counts() -> None:
    """More than 128 ids apart: another tokenizer."""
    assert mismatch(TARGET, attrs.evolve(TARGET, n_vocab=262144)) == (
        "their vocabularies differ: 5000 tokens in the target, 262144 in the draft"
    )


def test_a_token_of_another_text_is_refused_naming_it_on_one_line() -> None:
    """The first compared id whose text differs is named, both texts quoted (newlines too)."""
    texts = {**TEXTS, 700: b"\n\n", 900: b"other"}
    reason = mismatch(TARGET, attrs.evolve(TARGET, texts=texts))
    assert (
        reason
        == 'their vocabularies differ: token 700 is "t700" in the target, "\\n\\n" in the draft'
    )


def test_other_kinds_and_special_tokens_are_refused() -> None:
    """SentencePiece against BPE, or another BOS, is refused before any text is compared."""
    assert mismatch(TARGET, attrs.evolve(TARGET, kind=2)) == (
        "their vocabularies are of different kinds (SPM in the target, BPE in the draft)"
    )
    assert mismatch(TARGET, attrs.evolve(TARGET, bos=7)) == (
        "their beginning-of-text tokens differ (target: id 2, added yes; draft: id 7, added yes)"
    )
    assert mismatch(TARGET, attrs.evolve(TARGET, add_eos=True)) is not None


def test_the_sample_covers_the_first_ids_and_spreads_to_the_end() -> None:
    """Every id of the head, then evenly spaced ones up to the last shared id, bounded."""
    ids = sample_ids(262144)
    assert ids[:HEAD] == list(range(FIRST_CHECKED, FIRST_CHECKED + HEAD))
    assert ids[-1] == 262143
    assert len(ids) <= HEAD + SPREAD + 2
    assert ids == sorted(set(ids))
    assert sample_ids(300) == list(range(FIRST_CHECKED, 300))


def test_the_targets_special_tokens_are_always_compared() -> None:
    """Special ids beyond the sample (an end-of-turn token high up) are added to it."""
    ids = compared_ids((1, 4999, 4001, -1), N_VOCAB)
    assert 4999 in ids
    assert 4001 in ids
    assert -1 not in ids
    assert 1 not in ids  # below FIRST_CHECKED, as llama.cpp skips them
