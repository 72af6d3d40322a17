"""A draft model (speculative = "draft"): a smaller GGUF of the target's vocabulary that guesses
the target's next tokens, in a llama context of its own with one sequence per worker slot.

Each draft sequence holds the KV of a prefix of its slot's tokens (``_tokens``). To draft after
a slot's last sampled token, the sequence is first brought up to date: cut back to the longest
prefix it shares with the slot (``llama_memory_seq_rm``), then the missing tokens are decoded
(a new prompt included, at most ``prefill_chunk`` tokens a step over all slots, so that a long
prompt delays the step little; such a slot drafts once it has caught up). Then k drafted tokens
cost k small decodes, each carrying one token of every slot still drafting, and each token is
the draft model's greedy choice. After the target's verification, ``keep`` cuts the sequence
back to the tokens the target kept, so rejected drafts leave the draft KV as they leave the
target's.

A sliding-window draft model keeps full-size window caches (``swa_full``): its sequences are cut
back across several decodes, which a window-sized cache cannot do exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import llama_cpp

from llmserve.engine.jobs import WorkerConfig
from llmserve.engine.model import LlamaModel
from llmserve.engine.protocol import SamplingParams
from llmserve.engine.sampling import SamplerChain
from llmserve.engine.vocabmatch import VocabSample, compared_ids, mismatch
from llmserve.errors import ModelLoadError

log = logging.getLogger(__name__)


class Want(NamedTuple):
    """A slot that wants a draft: its sequence, its tokens in the target KV, the sampled token
    that follows them, and the most tokens to draft."""

    seq_id: int
    tokens: list[int]
    last: int
    limit: int


class DraftModel:
    """Owns the draft model and its context; used by the worker thread only."""

    def __init__(self, model: LlamaModel, target: LlamaModel, config: WorkerConfig) -> None:
        """Check ``model`` against ``target`` and make its context; owns ``model`` from here
        (closed by ``close``, or now when this fails)."""
        try:
            self._check(model, target)
            self.model = model
            self._target = target
            # A drafting decode carries one token of each slot, whatever n_batch is.
            n_batch = max(config.n_batch, config.n_slots)
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = config.n_ctx_seq * config.n_slots
            params.n_batch = n_batch
            params.n_ubatch = n_batch
            params.n_seq_max = config.n_slots
            params.n_threads = config.n_threads
            params.n_threads_batch = config.n_threads
            params.kv_unified = config.kv_unified
            params.swa_full = True
            params.no_perf = True
            ctx = llama_cpp.llama_init_from_model(model.ptr, params)
            if not ctx:
                raise ModelLoadError(
                    f"llama.cpp could not create a context of {params.n_ctx} tokens for the "
                    f"draft model {model.facts.path}"
                )
        except BaseException:
            model.close()
            raise
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        # Tokens a step may decode to bring sequences up to date, over all slots.
        self._catch_up = min(config.prefill_chunk, config.n_batch)
        self._greedy = SamplerChain(SamplingParams(temperature=0.0), model.n_vocab)
        self._tokens: list[list[int]] = [[] for _ in range(config.n_slots)]
        self.decodes = 0  # llama_decode calls of the draft context, for tests and profiles

    @classmethod
    def open(cls, path: Path, target: LlamaModel, config: WorkerConfig) -> DraftModel:
        """Load the draft GGUF at ``path`` for ``target``; ModelLoadError (one line) when it
        cannot draft for it."""
        return cls(LlamaModel(path, n_gpu_layers=config.n_gpu_layers), target, config)

    @staticmethod
    def _check(model: LlamaModel, target: LlamaModel) -> None:
        where = f"the draft model {model.facts.path} cannot draft for {target.facts.path}"
        if llama_cpp.llama_model_is_recurrent(model.ptr) or llama_cpp.llama_model_is_hybrid(
            model.ptr
        ):
            raise ModelLoadError(
                f"{where}: it keeps a recurrent state, which cannot drop rejected drafts"
            )
        n_shared = min(model.n_vocab, target.n_vocab)
        ours = _vocab_sample(target, compared_ids(_specials(target), n_shared))
        theirs = _vocab_sample(model, list(ours.texts))
        reason = mismatch(ours, theirs)
        if reason is not None:
            raise ModelLoadError(f"{where}: {reason}")

    # --- drafting -------------------------------------------------------------------------

    def draft(self, wants: Sequence[Want]) -> list[list[int]]:
        """The greedy drafts for ``wants``, in order ([] for a slot still catching up)."""
        drafts: list[list[int]] = [[] for _ in wants]
        missing: list[list[int]] = []
        for want in wants:
            have = self._sync(want.seq_id, want.tokens, want.last)
            rest = want.tokens[have:]
            rest.append(want.last)
            missing.append(rest)
        # The first decode brings the sequences up to date, the nearest first, with logits on
        # each one's last token; a sequence that does not fit whole drafts a later step.
        rows: list[tuple[int, int, int]] = []  # (want, batch row, position of the next token)
        n = 0
        for i in sorted(range(len(wants)), key=lambda i: len(missing[i])):
            room = self._catch_up - n
            if room <= 0:
                break
            seq, chunk = wants[i].seq_id, missing[i][:room]
            start = len(self._tokens[seq])
            complete = len(chunk) == len(missing[i])
            n = self._add(n, chunk, start, seq, logits_last=complete)
            if complete:
                rows.append((i, n - 1, start + len(chunk)))
        if n == 0 or not self._decode(n, [w.seq_id for w in wants]):
            return drafts
        # Then one decode per drafted token, each carrying every sequence still drafting.
        while rows:
            following: list[tuple[int, int, int]] = []
            n = 0
            for i, row, pos in rows:
                token = self._greedy.sample(self._ctx, row)
                # Never a token the target cannot decode, nor an end of generation: the target
                # samples that one itself at the position after the accepted drafts.
                if token >= self._target.n_vocab or self._target.is_eog(token):
                    continue
                drafts[i].append(token)
                if len(drafts[i]) >= wants[i].limit:
                    continue
                following.append((i, n, pos + 1))
                n = self._add(n, [token], pos, wants[i].seq_id, logits_last=True)
            if n == 0 or not self._decode(n, [wants[i].seq_id for i, _, _ in following]):
                break
            rows = following
        return drafts

    def keep(self, seq_id: int, n: int) -> None:
        """Cut the draft sequence back to its first ``n`` tokens (the ones the target kept)."""
        tokens = self._tokens[seq_id]
        if n >= len(tokens):
            return
        if not llama_cpp.llama_memory_seq_rm(self._mem, seq_id, n, -1):
            self._clear(seq_id)
            return
        del tokens[n:]

    def cached(self, seq_id: int) -> list[int]:
        """The tokens whose KV the draft sequence holds (a copy)."""
        return list(self._tokens[seq_id])

    def kv_end(self, seq_id: int) -> int:
        """One past the last position in the draft sequence's KV, as llama.cpp sees it."""
        return int(llama_cpp.llama_memory_seq_pos_max(self._mem, seq_id)) + 1

    def close(self) -> None:
        if self._ctx is not None:
            self._greedy.close()
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
            self.model.close()

    # --- internals ------------------------------------------------------------------------

    def _sync(self, seq_id: int, tokens: list[int], last: int) -> int:
        """Cut the sequence back to the longest prefix it shares with ``tokens + [last]``, less
        at least that last token (its logits are needed); returns the length kept."""
        have = self._tokens[seq_id]
        limit = min(len(have), len(tokens))
        if have[:limit] == tokens[:limit]:
            p = limit
        else:
            p = 0
            while have[p] == tokens[p]:
                p += 1
        if p < len(have):
            if not llama_cpp.llama_memory_seq_rm(self._mem, seq_id, p, -1):
                self._clear(seq_id)
                return 0
            del have[p:]
        return p

    def _decode(self, n: int, seqs: Sequence[int]) -> bool:
        self._batch.n_tokens = n
        rc = llama_cpp.llama_decode(self._ctx, self._batch)
        self.decodes += 1
        if rc == 0:
            return True
        # The draft only guesses: drop what these sequences hold and let them catch up again.
        log.warning("the draft model's llama_decode failed with code %d", rc)
        for seq in set(seqs):
            self._clear(seq)
        return False

    def _clear(self, seq_id: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._mem, seq_id, -1, -1)
        self._tokens[seq_id].clear()

    def _add(self, n: int, tokens: list[int], pos: int, seq_id: int, *, logits_last: bool) -> int:
        """Put ``tokens`` at positions ``pos``.. of a sequence into the batch from row ``n`` on
        (logits on the last one, if asked), as tokens of that sequence; the next free row."""
        b, last = self._batch, len(tokens) - 1
        for j, token in enumerate(tokens):
            row = n + j
            b.token[row], b.pos[row] = token, pos + j
            b.n_seq_id[row], b.seq_id[row][0] = 1, seq_id
            b.logits[row] = logits_last and j == last
        self._tokens[seq_id].extend(tokens)
        return n + len(tokens)


def _specials(model: LlamaModel) -> tuple[int, ...]:
    vocab = model.vocab
    return (
        llama_cpp.llama_vocab_bos(vocab),
        llama_cpp.llama_vocab_eos(vocab),
        llama_cpp.llama_vocab_eot(vocab),
        llama_cpp.llama_vocab_sep(vocab),
        llama_cpp.llama_vocab_nl(vocab),
        llama_cpp.llama_vocab_pad(vocab),
        *model.fim,
        llama_cpp.llama_vocab_fim_rep(vocab),
        llama_cpp.llama_vocab_fim_sep(vocab),
        llama_cpp.llama_vocab_fim_pad(vocab),
    )


def _vocab_sample(model: LlamaModel, ids: list[int]) -> VocabSample:
    vocab = model.vocab
    return VocabSample(
        kind=int(llama_cpp.llama_vocab_type(vocab)),
        n_vocab=model.n_vocab,
        add_bos=bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        bos=int(llama_cpp.llama_vocab_bos(vocab)),
        add_eos=bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        eos=int(llama_cpp.llama_vocab_eos(vocab)),
        texts={i: llama_cpp.llama_vocab_get_text(vocab, i) or b"" for i in ids},
    )
