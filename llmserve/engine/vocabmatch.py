"""Whether a draft model's token ids mean what the target model's mean (speculative = "draft").

Drafts are verified id by id: a draft model whose token 1234 is another text than the target's
would propose tokens the target never accepts. The checks are llama.cpp's
(common_speculative_are_compatible): the same kind of vocabulary, the same BOS/EOS handling,
sizes at most 128 apart (vocabularies padded for the hardware), and the same text for the same
id. llama.cpp compares every token; here the special tokens and a sample spread over the shared
ids are compared (every one of the first ids, then evenly spaced ones), enough to tell two
tokenizers apart without reading all 262,144 texts of a Gemma vocabulary at each start.

Plain data in, a reason out: the llama.cpp side reads the vocabularies (engine/draftmodel.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from attrs import frozen

# llama.cpp's SPEC_VOCAB_MAX_SIZE_DIFFERENCE and SPEC_VOCAB_CHECK_START_TOKEN_ID.
SIZE_SLACK = 128
FIRST_CHECKED = 5
HEAD = 1024  # the first ids past FIRST_CHECKED, all compared (bytes, specials, common pieces)
SPREAD = 1024  # then this many ids evenly spaced up to the end of the shared range
# llama.h's enum llama_vocab_type
KINDS = {0: "none", 1: "SPM", 2: "BPE", 3: "WPM", 4: "UGM", 5: "RWKV", 6: "PLaMo-2"}


@frozen
class VocabSample:
    """What is compared of one model's vocabulary."""

    kind: int  # llama_vocab_type
    n_vocab: int
    add_bos: bool
    bos: int
    add_eos: bool
    eos: int
    texts: Mapping[int, bytes]  # the text of each compared id


def sample_ids(n_shared: int) -> list[int]:
    """The ids compared in a shared range of ``n_shared`` ids."""
    head = list(range(FIRST_CHECKED, min(n_shared, FIRST_CHECKED + HEAD)))
    start = FIRST_CHECKED + HEAD
    if n_shared <= start:
        return head
    step = max(1, -(-(n_shared - start) // SPREAD))
    spread = list(range(start, n_shared, step))
    if spread[-1] != n_shared - 1:
        spread.append(n_shared - 1)
    return head + spread


def compared_ids(target_specials: tuple[int, ...], n_shared: int) -> list[int]:
    """The sample plus the target's special tokens inside the shared range."""
    ids = sample_ids(n_shared)
    ids += sorted({t for t in target_specials if FIRST_CHECKED <= t < n_shared} - set(ids))
    return ids


def mismatch(target: VocabSample, draft: VocabSample) -> str | None:
    """Why ``draft`` cannot draft for ``target``; None when its tokens are the target's."""
    if target.kind != draft.kind:
        return (
            f"their vocabularies are of different kinds ({_kind(target.kind)} in the target, "
            f"{_kind(draft.kind)} in the draft)"
        )
    if target.add_bos != draft.add_bos or (target.add_bos and target.bos != draft.bos):
        return (
            f"their beginning-of-text tokens differ (target: id {target.bos}, added "
            f"{_yes(target.add_bos)}; draft: id {draft.bos}, added {_yes(draft.add_bos)})"
        )
    if target.add_eos != draft.add_eos or (target.add_eos and target.eos != draft.eos):
        return (
            f"their end-of-text tokens differ (target: id {target.eos}, added "
            f"{_yes(target.add_eos)}; draft: id {draft.eos}, added {_yes(draft.add_eos)})"
        )
    if abs(target.n_vocab - draft.n_vocab) > SIZE_SLACK:
        return (
            f"their vocabularies differ: {target.n_vocab} tokens in the target, "
            f"{draft.n_vocab} in the draft"
        )
    for token in sorted(target.texts.keys() & draft.texts.keys()):
        ours, theirs = target.texts[token], draft.texts[token]
        if ours != theirs:
            return (
                f"their vocabularies differ: token {token} is {_shown(ours)} in the target, "
                f"{_shown(theirs)} in the draft"
            )
    return None


def _kind(kind: int) -> str:
    return KINDS.get(kind, f"type {kind}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _shown(text: bytes) -> str:
    # JSON quoting keeps a token of newlines or control bytes on the error's one line.
    return json.dumps(text.decode("utf-8", errors="replace"), ensure_ascii=False)
