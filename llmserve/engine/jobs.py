"""The worker's data: a job, its choices' runs in slots, and the worker's configuration.

Plain data, shared by ``worker`` (which owns and mutates it on its thread) and ``service``
(which builds jobs); no llama.cpp calls here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from attrs import define, field

from llmserve.engine.protocol import SamplingParams, TokenEvent
from llmserve.errors import LLMServeError

if TYPE_CHECKING:
    from llmserve.engine.ngram import Backoff, NgramDrafter
    from llmserve.engine.sampling import Gbnf, SamplerChain
    from llmserve.engine.textstream import TextStream


class Sink(Protocol):
    """Where a job's events go; ``cancelled`` is read by the worker thread every step."""

    @property
    def cancelled(self) -> bool: ...


Item = TokenEvent | LLMServeError
Deliver = Callable[[list[tuple[Sink, Item]]], None]


@define
class Job:
    """A validated request, ready for a slot."""

    tokens: list[int]
    max_tokens: int
    stop: tuple[str, ...]
    sampling: SamplingParams
    sink: Sink
    n: int = 1  # choices; they share the prompt's KV (llama_memory_seq_cp) and need n slots
    logprobs: int | None = None  # top alternatives to report per token; None: no logprobs
    grammar: Gbnf | None = None
    special: bool = False  # control tokens render as text (tool-call markup)
    enqueued_at: float = field(factory=time.monotonic)
    # Called with the logits of the first generated position (a numpy copy); for tests that
    # compare cached and uncached computations.
    first_logits: Callable[[Any], None] | None = None
    # False: no reused KV (live slot or prefix cache), and decoded in batches of its own, so
    # that greedy output does not depend on what was cached or what else is running.
    cache_prompt: bool = True
    # Prompt positions (ascending, inside the prompt) where the state is saved into the prefix
    # cache while the prompt is read, as a kept entry: a client's cache breakpoints.
    checkpoints: tuple[int, ...] = ()


@define
class Group:
    """The choices of one job: its usage is reported once, when the last choice finishes."""

    remaining: int
    cached_tokens: int
    completion_tokens: int = 0
    draft_accepted: int = 0  # drafted tokens that verification accepted, all choices
    cache_written: int = 0  # prompt tokens past cached_tokens that checkpoint saves stored


@define
class Run:
    """A job (one of its choices) in a slot: its sampler, text stream and progress."""

    job: Job
    sampler: SamplerChain
    text: TextStream
    pending: list[int]  # prompt tokens still to decode
    group: Group
    checkpoints: list[int] = field(factory=list)  # positions still to save at, ascending
    index: int = 0  # the choice; choices > 0 wait for choice 0's prompt, then fork its KV
    followers: list[Slot] = field(factory=list)  # choice 0: the slots of the other choices
    last_token: int | None = None  # sampled, not yet decoded
    n_generated: int = 0
    batch_index: int = -1  # where this run's logits are in the current batch, -1 if none
    # Speculative decoding (None: this run does not draft): the n-gram index of its
    # sequence, when it may draft, and the tokens drafted after last_token this step.
    drafter: NgramDrafter | None = None
    backoff: Backoff | None = None
    draft: list[int] = field(factory=list)


@define
class SpecCounts:
    """Drafted and accepted tokens of one model, kept across its workers (for /metrics)."""

    proposed: int = 0
    accepted: int = 0


@define
class Slot:
    """One sequence of the context; keeps its KV (``kv_tokens``) after a run for reuse."""

    seq_id: int
    kv_tokens: list[int] = field(factory=list)  # tokens at positions 0.. in this sequence's KV
    run: Run | None = None
    last_used: float = 0.0


@define(frozen=True)
class WorkerConfig:
    n_slots: int
    n_ctx_seq: int  # context of one sequence
    n_batch: int
    n_threads: int
    n_gpu_layers: int
    # Prompt tokens per step while another slot is generating: a smaller chunk keeps their
    # inter-token latency down; with no slot generating, a prompt gets all of n_batch.
    prefill_chunk: int = 256
    # One KV stream shared by all slots (True), or one stream per slot (False): see
    # README's configuration reference for the measured trade-off.
    kv_unified: bool = False
    swa_full: bool = False
    reuse_prefix: bool = True  # serve a prompt's prefix from a slot's live KV when it matches
    # Speculative decoding ([model] speculative): "ngram" drafts up to draft_max tokens (none
    # shorter than draft_min) from the sequence's latest earlier match of its last ngram_size;
    # "draft" drafts them with a draft model (the Worker's ``draft``).
    speculative: str = "off"
    draft_max: int = 8
    draft_min: int = 2
    ngram_size: int = 3
    ngram_shared: bool = False  # "ngram": also from a table shared by all slots (NgramPool)
