"""One llama context with N sequence slots, advanced together by one thread (continuous batching).

Each step builds ONE ``llama_decode`` batch holding the next token of every generating slot
plus prompt chunks of newly admitted slots, within ``n_batch`` tokens (``prefill_chunk`` prompt
tokens while any slot is generating), so a long prompt delays the other streams by at most one
small chunk. Sampling runs on native llama.cpp sampler chains.

Speculative decoding (``speculative = "ngram"`` or ``"draft"``) rides in the same step: a
generating slot puts its last token plus up to ``draft_max`` drafted tokens in the batch, logits
on each; the positions are sampled in order with the slot's own chain while the drafts match, so
the tokens are exactly the ones one-at-a-time decoding would give (every sampled token is
emitted, so no sampler state runs ahead), and rejected positions leave the KV. The drafts come
from each sequence's n-grams (engine/ngram.py, with a pool shared by the slots:
engine/ngrampool.py) or from a draft model, all slots at once (engine/draftmodel.py).
Events go back to the asyncio loop once per step through the injected ``deliver`` callable.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import attrs
import llama_cpp
import numpy as np

from llmserve.engine.checkpoints import chunk_size, keep_reused, open_checkpoints
from llmserve.engine.draftmodel import DraftModel, Want
from llmserve.engine.jobs import (
    Deliver,
    Group,
    Item,
    Job,
    Run,
    Sink,
    Slot,
    SpecCounts,
    WorkerConfig,
)
from llmserve.engine.model import LlamaModel
from llmserve.engine.ngram import Backoff, NgramDrafter
from llmserve.engine.ngrampool import NgramPool
from llmserve.engine.pool import LivePrefixes, at_capacity
from llmserve.engine.prefix_cache import Hit, PrefixCache
from llmserve.engine.protocol import FinishReason, TokenEvent, TokenLogprob, Usage
from llmserve.engine.sampling import SamplerChain
from llmserve.engine.textstream import TextStream
from llmserve.errors import LLMServeError, ModelLoadError, ServiceUnavailable

__all__ = ["Deliver", "Item", "Job", "Sink", "Worker", "WorkerConfig"]

log = logging.getLogger(__name__)

# After a step that finished requests with no slot left running, the worker waits up to this
# fraction of that step's duration for the finished requests' clients to send their next ones:
# arrivals spread over the event loop's ~1 ms per request, and one that misses the step waits a
# whole step (measured: 1-token completions at 8 connections, ~55 ms steps, had a p99 twice
# their median without it).
GATHER_FRACTION = 0.15
GATHER_MAX_S = 0.02  # a long prompt's step would otherwise hold them up to ~100 ms


@attrs.frozen
class StepTiming:
    """One decode step as _gather sees it: how long it took, when it ended (monotonic
    seconds) and how many jobs to wait for: those it finished (their clients may send the next
    ones) and those already queued when it ended (so that one left out does not stay behind)."""

    duration: float = 0.0
    ended: float = 0.0
    expected: int = 0


class Worker:
    """Owns a llama context and its thread; ``submit`` is the only call from other threads."""

    def __init__(
        self,
        model: LlamaModel,
        config: WorkerConfig,
        deliver: Deliver,
        max_queued: int,
        cache: PrefixCache | None = None,
        spec_counts: SpecCounts | None = None,
        draft: DraftModel | None = None,
        *,
        index: int = 0,
        track_live: bool = False,
    ) -> None:
        """``draft``: the draft model of ``speculative = "draft"``, owned by the worker from
        here (closed by ``stop``). ``index``: the replica this worker is (thread name, stats);
        ``track_live``: publish the free slots' prefixes in ``live`` for routing among
        replicas. ``cache`` may be shared with the model's other workers."""
        self.model = model
        self.index = index
        self.live = LivePrefixes()
        self._track_live = track_live and config.reuse_prefix
        self.config = config
        self.cache = cache
        self.spec_counts = spec_counts if spec_counts is not None else SpecCounts()
        self.draft = draft
        if config.speculative == "draft" and draft is None:
            raise ModelLoadError('speculative = "draft" needs a draft model')
        # A recurrent state cannot drop its last positions, so rejected drafts could not leave.
        self._speculate = config.speculative in ("ngram", "draft") and not (
            llama_cpp.llama_model_is_recurrent(model.ptr)
            or llama_cpp.llama_model_is_hybrid(model.ptr)
        )
        self._pool = (
            NgramPool(config.ngram_size)
            if config.speculative == "ngram" and config.ngram_shared
            else None
        )
        self._deliver = deliver
        self._max_queued = max_queued
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = config.n_ctx_seq * config.n_slots
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_batch
        params.n_seq_max = config.n_slots
        params.n_threads = config.n_threads
        params.n_threads_batch = config.n_threads
        params.kv_unified = config.kv_unified
        # llama.cpp's default keeps full-size sliding-window caches; like llama-server we keep
        # only the window (memory), and _usable_prefix guards the reuse rule this implies.
        params.swa_full = config.swa_full
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ctx:
            if draft is not None:
                draft.close()
            raise ModelLoadError(
                f"llama.cpp could not create a context of {params.n_ctx} tokens "
                f"for {model.facts.path}"
            )
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(config.n_batch, 0, 1)
        self._slots = [Slot(seq_id=i) for i in range(config.n_slots)]
        self._inbox: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"llmserve-worker-{index}", daemon=True
        )
        self._outbox: list[tuple[Sink, Item]] = []
        self.steps = 0
        self.peak_batch_slots = 0  # most slots one decode step has carried, for tests and stats
        self.prompt_tokens = 0  # of admitted jobs, and of those the ones served by reused KV
        self.reused_tokens = 0
        self.finished_jobs = 0
        # The last step's duration, end and the jobs to wait for after it, for _gather.
        self._last_step = StepTiming()

    # --- called from other threads -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise ServiceUnavailable("the server is shutting down")
            if self.running() + len(self._inbox) >= self._max_queued:
                raise at_capacity(self._max_queued)
            self._inbox.append(job)
            self._cond.notify()

    def wake(self) -> None:
        """Let an idle worker notice a cancelled job in its queue."""
        with self._cond:
            self._cond.notify()

    @property
    def n_slots(self) -> int:
        return self.config.n_slots

    def running(self) -> int:
        return sum(1 for s in self._slots if s.run is not None)

    def busy_slots(self) -> list[int]:
        """The sequence ids of the slots running a job (a snapshot, for stats and tests)."""
        return [s.seq_id for s in self._slots if s.run is not None]

    def waiting(self) -> int:
        return len(self._inbox)

    def slot_tokens(self, seq_id: int) -> list[int]:
        """The tokens in a slot's KV (a snapshot read off the worker thread, for tests)."""
        return list(self._slots[seq_id].kv_tokens)

    def kv_cells_in_use(self) -> int:
        """KV cells held by the running requests (a snapshot read off the worker thread).

        Slots without a run keep their KV only for prefix reuse, so they do not count.
        """
        return sum(len(s.kv_tokens) for s in self._slots if s.run is not None)

    def kv_cells(self) -> int:
        """The context's KV cells (llama.cpp may pad n_ctx up)."""
        return int(llama_cpp.llama_n_ctx(self._ctx))

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self._ctx)
        if self.draft is not None:
            self.draft.close()

    # --- the worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._inbox and not self._any_active():
                    self._cond.wait()
                self._gather()
                if self._stopping:
                    break
                self._admit()
            started, finished = time.monotonic(), self.finished_jobs
            try:
                self._step()
            except Exception:  # keep serving: fail the jobs in flight, never kill the thread
                log.exception("worker step failed")
                for slot in self._slots:
                    self._fail(slot, LLMServeError("generation failed inside the engine"))
            self._flush_outbox()
            ended = time.monotonic()
            self._last_step = StepTiming(
                ended - started, ended, self.finished_jobs - finished + len(self._inbox)
            )
        self._shutdown()

    def _gather(self) -> None:
        """Before admitting, give the clients of the jobs the last step finished a moment to
        come back, so that their next requests share one step (caller holds the lock).

        Only while no slot is running: a stream or a prompt being read is never held up for a
        request that may not come. The wait ends as soon as the jobs expected are queued (or
        would fill the slots), at the latest GATHER_FRACTION of the last step (at most
        GATHER_MAX_S) after it ended.
        """
        last, self._last_step = self._last_step, StepTiming()
        if not last.expected or self._any_active():
            return
        expected = min(last.expected, len(self._slots))
        deadline = last.ended + min(last.duration * GATHER_FRACTION, GATHER_MAX_S)
        while not self._stopping and len(self._inbox) < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _any_active(self) -> bool:
        return any(s.run is not None for s in self._slots)

    def _admit(self) -> None:
        """Move queued jobs into free slots, in arrival order (caller holds the lock)."""
        for slot in self._slots:
            if slot.run is not None and slot.run.job.sink.cancelled:
                self._save(slot)
                self._release(slot)
        while self._inbox:
            job = self._inbox[0]
            if job.sink.cancelled:
                self._inbox.popleft()
                continue
            free = [s for s in self._slots if s.run is None]
            if len(free) < job.n:
                return
            self._inbox.popleft()
            if job.cache_prompt:
                best, reuse = self._choose_slot(free, job.tokens)
                if self.cache is not None:
                    best, reuse = self._consider_cache(self.cache, job.tokens, free, best, reuse)
            else:
                best, reuse = self._fresh_slot(free), 0
            self._assign(best, job, reuse, self._followers(free, best, job.n - 1))

    def _choose_slot(self, free: list[Slot], tokens: list[int]) -> tuple[Slot, int]:
        """The free slot for a job's first choice, and the prompt tokens its live KV serves.

        Unified KV: the longest live prefix, else the least recently used slot. Per-slot KV
        streams: llama.cpp decodes only consecutive sequence ids in one ubatch, so a slot
        that leaves a gap among the busy ones costs every step a second pass over the weights;
        among the slots that leave none (every slot, when none is busy) the longest live
        prefix, else the least recently used; a live prefix elsewhere wins only when it saves
        a whole n_batch of prompt tokens.
        """
        scored = [(slot, self._usable_prefix(slot, tokens)) for slot in free]
        if self.config.kv_unified:
            return max(scored, key=lambda pair: (pair[1], -pair[0].last_used))
        near = min(scored, key=lambda pair: (self._gap(pair[0]), -pair[1], pair[0].last_used))
        far = max(scored, key=lambda pair: (pair[1], -pair[0].seq_id))
        return far if far[1] - near[1] >= self.config.n_batch else near

    def _fresh_slot(self, free: list[Slot]) -> Slot:
        """The free slot for a job computed from scratch (``cache_prompt=False``): the least
        recently used one, keeping the freshest live prefixes for other requests; with per-slot
        KV streams, the least recently used of those that leave no gap."""
        if self.config.kv_unified:
            return min(free, key=lambda s: s.last_used)
        return min(free, key=lambda s: (self._gap(s), s.last_used))

    def _consider_cache(
        self, cache: PrefixCache, tokens: list[int], free: list[Slot], best: Slot, reuse: int
    ) -> tuple[Slot, int]:
        """Restore a longer cached prefix into a free slot; the slot and reuse to go on with."""
        hit = cache.lookup(tokens)
        if self.config.kv_unified:
            # The least recently used free slot: its KV was saved when it finished.
            target = min(free, key=lambda s: s.last_used)
            wanted = hit is not None and hit.length > reuse
        else:
            # Per-slot streams: as long a prefix restored into the gap-free slot beats a live
            # one elsewhere (a restore takes milliseconds, a gap costs every step); the chosen
            # slot itself when it leaves no gap, else the least recently used gap-free one.
            target = min(free, key=lambda s: (self._gap(s), s is not best, s.last_used))
            wanted = hit is not None and (
                hit.length > reuse or (hit.length == reuse > 0 and target is not best)
            )
        if hit is not None and wanted:
            if self._restore(cache, target, hit):
                best, reuse = target, hit.length
            elif target is best:
                reuse = 0  # the failed restore emptied the slot whose live prefix we chose
        cache.record(reuse)
        return best, reuse

    def _followers(self, free: list[Slot], best: Slot, count: int) -> list[Slot]:
        """Slots for a job's other choices; their KV is overwritten by choice 0's prompt."""
        rest = [s for s in free if s is not best]
        if self.config.kv_unified:
            return sorted(rest, key=lambda s: s.last_used)[:count]
        chosen: list[Slot] = []
        for _ in range(min(count, len(rest))):
            nearest = min(rest, key=lambda s: self._gap_key(s, (best, *chosen)))
            rest.remove(nearest)
            chosen.append(nearest)
        return chosen

    def _gap(self, slot: Slot) -> int:
        """How far a free slot lies outside the busy range of sequence ids (0 inside it or with
        none busy, 1 next to it: neither leaves a gap)."""
        return self._gap_key(slot, ())[0]

    def _gap_key(self, slot: Slot, joining: Sequence[Slot]) -> tuple[int, int]:
        """Orders free slots for per-slot KV streams: those inside or next to the busy range
        of sequence ids first (no new gap), then farther ones; the lowest id among equals."""
        busy = [s.seq_id for s in self._slots if s.run is not None]
        busy += [s.seq_id for s in joining]
        if not busy:
            return 0, slot.seq_id
        low, high = min(busy), max(busy)
        distance = max(low - slot.seq_id, slot.seq_id - high, 0)
        return distance, slot.seq_id

    def _restore(self, cache: PrefixCache, slot: Slot, hit: Hit) -> bool:
        """Load a cached state into a slot's sequence; False (slot emptied) on failure."""
        data = cache.load(hit)
        self._untrack(slot)
        llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
        slot.kv_tokens.clear()
        if data is None:
            return False
        buf = (ctypes.c_uint8 * len(data)).from_buffer(data)
        n = llama_cpp.llama_state_seq_set_data(self._ctx, buf, len(data), slot.seq_id)
        end = llama_cpp.llama_memory_seq_pos_max(self._mem, slot.seq_id)
        if n == 0 or end != len(hit.entry.tokens) - 1:
            cache.reject(hit)
            llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            return False
        slot.kv_tokens.extend(hit.entry.tokens)
        return True

    def _save(self, slot: Slot, *, kept: bool = False) -> bool:
        """Copy a slot's KV state into the prefix cache (its live KV stays); ``kept``: as an
        entry evicted after ordinary ones. True if a new entry was stored."""
        cache, tokens = self.cache, slot.kv_tokens
        # The length test comes before the state copy, which walks every KV cell (~0.7 ms on
        # the demo model): a short request would pay it at every finish only to be refused.
        if cache is None or not cache.long_enough(tokens):
            return False
        if cache.contains(tokens):
            cache.touch(tokens, keep=kept)
            return False
        seq = slot.seq_id
        size = llama_cpp.llama_state_seq_get_size(self._ctx, seq)
        data = bytearray(size)
        buf = (ctypes.c_uint8 * size).from_buffer(data)
        n = llama_cpp.llama_state_seq_get_data(self._ctx, buf, size, seq)
        if n == 0:
            return False
        del buf  # a live ctypes view would forbid resizing the bytearray
        if n != size:
            del data[n:]
        return cache.store(tokens, self._saved_pos_min(seq), data, kept=kept)

    def _save_checkpoint(self, slot: Slot, run: Run) -> None:
        """The prompt is read up to a client's cache breakpoint: keep the state there, so a
        request with the same prefix (a new session's system prompt and tools) continues from
        it, even on a sliding-window model whose longer entries cannot be cut back to it."""
        position = run.checkpoints.pop(0)
        if self._save(slot, kept=True):
            run.group.cache_written = position - run.group.cached_tokens

    def _saved_pos_min(self, seq: int) -> int:
        """The first position a saved state of ``seq`` holds in every layer.

        A state save leaves out sliding-window cells the window has passed, even while the
        live cache still holds them: what a restore gets starts at pos_max - n_swa + 1.
        """
        live = llama_cpp.llama_memory_seq_pos_min(self._mem, seq)
        n_swa = self.model.facts.n_swa
        if not n_swa:
            return live
        return max(live, llama_cpp.llama_memory_seq_pos_max(self._mem, seq) - n_swa + 1)

    def _usable_prefix(self, slot: Slot, tokens: list[int]) -> int:
        """How many leading prompt tokens this slot's live KV can serve without recompute."""
        kv = slot.kv_tokens
        if not self.config.reuse_prefix:
            return 0
        limit = min(len(kv), len(tokens) - 1)  # at least one token must be decoded for logits
        p = 0
        while p < limit and kv[p] == tokens[p]:
            p += 1
        n_swa = self.model.facts.n_swa
        if p and n_swa and p < len(kv) - 1:
            # A sliding-window cache has dropped positions before pos_min; cutting back
            # further than one token would silently compute wrong tokens.
            pos_min = llama_cpp.llama_memory_seq_pos_min(self._mem, slot.seq_id)
            if pos_min > max(0, p - n_swa):
                return 0
        return p

    def _assign(self, slot: Slot, job: Job, reuse: int, followers: list[Slot]) -> None:
        try:
            samplers = self._samplers(job)
        except LLMServeError as error:
            self._outbox.append((job.sink, error))
            return
        if reuse < len(slot.kv_tokens) and not llama_cpp.llama_memory_seq_rm(
            self._mem, slot.seq_id, reuse, -1
        ):
            llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            reuse = 0
        del slot.kv_tokens[reuse:]
        for taken in (slot, *followers):
            self._untrack(taken)
        # A job's first event, sent on admission, says how long it waited for this slot.
        waited = time.monotonic() - job.enqueued_at
        self._outbox.append((job.sink, TokenEvent(text="", queue_wait_s=waited)))
        self.prompt_tokens += len(job.tokens)
        self.reused_tokens += reuse
        if self.cache is not None:
            keep_reused(self.cache, job, reuse)
        group = Group(remaining=job.n, cached_tokens=reuse)
        slot.run = Run(
            job=job,
            sampler=samplers[0],
            text=TextStream(job.stop),
            pending=job.tokens[reuse:],
            group=group,
            followers=followers,
            checkpoints=open_checkpoints(job, reuse) if self.cache is not None else [],
        )
        for i, follower in enumerate(followers, start=1):
            follower.run = Run(
                job=job,
                sampler=samplers[i],
                text=TextStream(job.stop),
                pending=[],
                group=group,
                index=i,
            )
        # Logprobs are reported from each token's own logits row; such runs do not draft.
        if self._speculate and job.logprobs is None:
            for run in (slot.run, *(f.run for f in followers if f.run is not None)):
                if self.draft is None:  # the draft model needs no state per run
                    run.drafter = NgramDrafter(self.config.ngram_size, job.tokens, self._pool)
                run.backoff = Backoff()

    def _samplers(self, job: Job) -> list[SamplerChain]:
        """One sampler chain per choice; choice i of a seeded job samples with seed + i."""
        chains: list[SamplerChain] = []
        try:
            for i in range(job.n):
                params = job.sampling
                if i and params.seed is not None:
                    params = attrs.evolve(params, seed=params.seed + i)
                chains.append(
                    SamplerChain(
                        params, self.model.n_vocab, vocab=self.model.vocab, grammar=job.grammar
                    )
                )
        except LLMServeError:
            for chain in chains:
                chain.close()
            raise
        return chains

    def _step(self) -> None:
        """One step: a shared decode for the jobs that reuse cached KV, then one decode of its
        own for each ``cache_prompt=False`` job, so that no other request changes the shape
        of the batches its tokens are computed in (and so their float rounding)."""
        active = [(s, s.run) for s in self._slots if s.run is not None]
        generating = any(run.last_token is not None for _, run in active)
        shared = [(s, run) for s, run in active if run.job.cache_prompt]
        alone: dict[int, list[tuple[Slot, Run]]] = {}
        for slot, run in active:
            if not run.job.cache_prompt:
                alone.setdefault(id(run.job), []).append((slot, run))
        if shared:
            self._decode(shared, isolated=False, generating=generating)
        for runs in alone.values():
            self._decode(runs, isolated=True, generating=generating)

    def _decode(self, active: list[tuple[Slot, Run]], *, isolated: bool, generating: bool) -> None:
        """Decode one batch of these runs' next tokens and prompt chunks, then sample."""
        n = 0
        # Drafts share the step's token budget with prompt chunks: every generating slot's
        # own token first, then drafts up to n_batch (and prefill_chunk) in slot order.
        room = self.config.n_batch - sum(1 for _, run in active if run.last_token is not None)
        drafts = self._drafts(active, min(room, self.config.prefill_chunk))
        drafted = 0
        for slot, run in active:
            run.batch_index = -1
            run.draft = []
            if run.last_token is not None:
                pos = len(slot.kv_tokens)
                self._put(n, run.last_token, pos, slot.seq_id, True)
                run.batch_index = n
                slot.kv_tokens.append(run.last_token)
                run.last_token = None
                n += 1
                draft = drafts.get(slot.seq_id, [])
                for i, token in enumerate(draft, start=1):
                    self._put(n, token, pos + i, slot.seq_id, True)
                    n += 1
                slot.kv_tokens.extend(draft)
                run.draft = draft
                drafted += len(draft)
        # An isolated job's prompt goes in chunks of one fixed size from position 0 (its
        # choices start generating only once it is all read), whatever else is running.
        budget = (
            min(self._fixed_chunk(), self.config.n_batch - n)
            if isolated
            else self._prompt_budget(n, generating, drafted)
        )
        for slot, run in sorted(active, key=lambda pair: pair[1].job.enqueued_at):
            if not run.pending or budget <= 0:
                continue
            base = len(slot.kv_tokens)
            chunk = run.pending[: chunk_size(run, base, budget)]
            del run.pending[: len(chunk)]
            last = len(chunk) - 1
            for i, token in enumerate(chunk):
                is_last = i == last and not run.pending
                self._put(n, token, base + i, slot.seq_id, is_last)
                if is_last:
                    run.batch_index = n
                n += 1
            slot.kv_tokens.extend(chunk)
            budget -= len(chunk)
        if n == 0:
            return
        self.peak_batch_slots = max(self.peak_batch_slots, len(active))
        self._batch.n_tokens = n
        rc = llama_cpp.llama_decode(self._ctx, self._batch)
        self.steps += 1
        if rc != 0:
            for slot, _ in active:
                self._fail(slot, LLMServeError(f"llama_decode failed with code {rc}"))
                llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
                slot.kv_tokens.clear()
            return
        for slot, run in active:
            if run.followers and run.batch_index >= 0:
                self._fork(slot, run)
        for slot, run in active:
            if run.draft:
                self._verify(slot, run)
            elif run.batch_index >= 0:
                first = run.n_generated == 0 and not run.index
                if first and run.job.first_logits is not None:
                    run.job.first_logits(self._logits(run.batch_index))
                self._on_token(slot, run, run.sampler.sample(self._ctx, run.batch_index))
                if first:
                    self._flush_outbox()  # the first token goes out before the state copy
                    self._checkpoint_prompt(slot)
        for slot, run in active:
            if slot.run is run and run.checkpoints and len(slot.kv_tokens) == run.checkpoints[0]:
                self._flush_outbox()  # other streams' tokens go out before the state copy
                self._save_checkpoint(slot, run)

    def _drafts(self, active: list[tuple[Slot, Run]], budget: int) -> dict[int, list[int]]:
        """The tokens each generating run drafts after its last token this step (by sequence;
        often none), ``budget`` tokens in all, given out in slot order."""
        if not self._speculate:
            return {}
        wants: list[tuple[Slot, Run, int, int]] = []
        for slot, run in active:
            last = run.last_token
            if last is None or run.backoff is None or not run.backoff.ready():
                continue
            # Never past max_tokens or the context, so that finishing happens exactly where it
            # would without drafts (last_token will sit at position len(kv_tokens)).
            limit = min(
                self.config.draft_max,
                run.job.max_tokens - run.n_generated - 1,
                self.config.n_ctx_seq - len(slot.kv_tokens) - 2,
            )
            if limit >= self.config.draft_min:
                wants.append((slot, run, last, limit))
        if not wants:
            return {}
        if self.draft is not None:
            asked = [Want(slot.seq_id, slot.kv_tokens, t, k) for slot, _, t, k in wants]
            proposals = self.draft.draft(asked)
        else:
            proposals = [r.drafter.draft(limit) if r.drafter else [] for _, r, _, limit in wants]
        drafts: dict[int, list[int]] = {}
        for (slot, *_), proposal in zip(wants, proposals, strict=True):
            draft = proposal[:budget]
            if len(draft) >= self.config.draft_min:
                drafts[slot.seq_id] = draft
                budget -= len(draft)
        return drafts

    def _verify(self, slot: Slot, run: Run) -> None:
        """Sample the last token's and each draft's position in order while the drafts
        match; emit every sampled token, and drop the rejected drafts from the KV."""
        draft, base = run.draft, run.batch_index
        run.draft = []
        sampled: list[int] = []
        for i in range(len(draft) + 1):
            token = run.sampler.sample(self._ctx, base + i)
            sampled.append(token)
            if i == len(draft) or token != draft[i] or self.model.is_eog(token):
                break
        accepted = len(sampled) - 1
        keep = len(slot.kv_tokens) - len(draft) + accepted
        if self.draft is not None:
            self.draft.keep(slot.seq_id, keep)
        if keep < len(slot.kv_tokens):
            if not llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, keep, -1):
                llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
                slot.kv_tokens.clear()
                self._fail(slot, LLMServeError("the engine could not drop rejected drafts"))
                return
            del slot.kv_tokens[keep:]
        self.spec_counts.proposed += len(draft)
        self.spec_counts.accepted += accepted
        run.group.draft_accepted += accepted
        if run.backoff is not None:
            run.backoff.record(accepted)
        for token in sampled:
            self._on_token(slot, run, token)
            if slot.run is not run:  # finished (stop, length, end of generation)
                return

    def _fixed_chunk(self) -> int:
        """Prompt tokens per decode of a job computed from scratch: prefill_chunk, always."""
        return min(self.config.prefill_chunk, self.config.n_batch)

    def _prompt_budget(self, n_generating: int, generating: bool, drafted: int = 0) -> int:
        """Prompt tokens this step may carry beside ``n_generating`` streams' next tokens
        (``generating``: whether any stream, in this batch or another, is generating).

        A step's duration grows with its prompt tokens (~650 ms for 512 on two CPU cores), and
        every generating stream waits for it: while any stream is generating, prompts go in
        smaller chunks (prefill_chunk, less the ``drafted`` tokens already in this step); with
        none, a lone prompt is read at full n_batch.
        """
        budget = self.config.n_batch - n_generating
        if generating:
            budget = min(budget, self.config.prefill_chunk - drafted)
        return budget

    def _checkpoint_prompt(self, slot: Slot) -> None:
        """On a sliding-window model, also cache the state at the end of a long prompt.

        The next chat turn re-sends this prompt plus the answer re-rendered by the template,
        which may differ from the generated tokens in their last few (a trimmed newline): the
        finish entry then cannot be cut back past its window, but this one is continued
        from its end, so only the answer and the new question are computed again.
        """
        n_swa = self.model.facts.n_swa
        if n_swa and len(slot.kv_tokens) > n_swa:
            self._save(slot)

    def _fork(self, slot: Slot, run: Run) -> None:
        """Choice 0's prompt is decoded: share its KV with the other choices' sequences, which
        sample their first tokens from the same logits."""
        for follower in run.followers:
            llama_cpp.llama_memory_seq_rm(self._mem, follower.seq_id, -1, -1)
            llama_cpp.llama_memory_seq_cp(self._mem, slot.seq_id, follower.seq_id, -1, -1)
            follower.kv_tokens[:] = slot.kv_tokens
            if follower.run is not None:
                follower.run.batch_index = run.batch_index
        run.followers = []

    def _logits(self, batch_index: int, *, copy: bool = True) -> Any:
        row = llama_cpp.llama_get_logits_ith(self._ctx, batch_index)
        view = np.ctypeslib.as_array(row, shape=(self.model.n_vocab,))
        return view.copy() if copy else view

    def _logprob(self, run: Run, token: int) -> TokenLogprob:
        from llmserve.engine.logprobs import token_logprob

        row = self._logits(run.batch_index, copy=False)
        return token_logprob(row, token, run.job.logprobs or 0, self.model.piece)

    def _put(self, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        b = self._batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits

    def _on_token(self, slot: Slot, run: Run, token: int) -> None:
        if self.model.is_eog(token):
            self._finish(slot, run, "stop")
            return
        run.n_generated += 1
        if run.drafter is not None:
            run.drafter.extend((token,))
        text = run.text.push(self.model.piece(token, special=run.job.special))
        logprobs = (self._logprob(run, token),) if run.job.logprobs is not None else ()
        event = TokenEvent(text=text, tokens=1, index=run.index, logprobs=logprobs)
        self._outbox.append((run.job.sink, event))
        if run.text.stopped:
            self._finish(slot, run, "stop")
        elif run.n_generated >= run.job.max_tokens or len(slot.kv_tokens) >= self.config.n_ctx_seq:
            self._finish(slot, run, "length")
        else:
            run.last_token = token

    def _finish(self, slot: Slot, run: Run, reason: FinishReason) -> None:
        group = run.group
        group.remaining -= 1
        group.completion_tokens += run.n_generated
        usage = None
        if not group.remaining:  # the job's last choice: usage for all of them
            self.finished_jobs += 1
            usage = Usage(
                prompt_tokens=len(run.job.tokens),
                completion_tokens=group.completion_tokens,
                cached_tokens=group.cached_tokens,
                draft_accepted=group.draft_accepted,
                cache_written_tokens=group.cache_written,
            )
        tail = "" if run.text.stopped else run.text.flush()
        event = TokenEvent(
            text=tail,
            finish_reason=reason,
            usage=usage,
            index=run.index,
            stop_sequence=run.text.matched_stop,
        )
        self._outbox.append((run.job.sink, event))
        self._flush_outbox()  # the client hears of its finish before the state copy below
        self._save(slot)
        self._release(slot)

    def _fail(self, slot: Slot, error: LLMServeError) -> None:
        if slot.run is not None:
            self._outbox.append((slot.run.job.sink, error))
        self._release(slot)

    def _release(self, slot: Slot) -> None:
        if slot.run is not None:
            slot.run.sampler.close()
        slot.run = None
        slot.last_used = time.monotonic()
        if self._track_live:
            self.live.hold(slot.seq_id, slot.kv_tokens)

    def _untrack(self, slot: Slot) -> None:
        """The slot's KV is about to change: routing must not count on its prefix."""
        if self._track_live:
            self.live.drop(slot.seq_id)

    def _flush_outbox(self) -> None:
        if self._outbox:
            items, self._outbox = self._outbox, []
            self._deliver(items)

    def _shutdown(self) -> None:
        error = ServiceUnavailable("the server is shutting down")
        for slot in self._slots:
            self._fail(slot, error)
        with self._cond:
            queued: Sequence[Job] = list(self._inbox)
            self._inbox.clear()
        self._outbox.extend((job.sink, error) for job in queued)
        self._flush_outbox()
