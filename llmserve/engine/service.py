"""LlamaEngine: the real Engine — one model, its replicas' workers, requests bridged from asyncio.

The model's weights load once (once per GPU named in ``[model] devices``); each of the
``replicas`` is a Worker, a llama context with its own thread, slots and KV, and all of them
share one prefix cache. A request goes to the replica the pool chooses (engine/pool.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import llama_cpp

from llmserve.config import Settings
from llmserve.engine.checkpoints import token_positions
from llmserve.engine.draftmodel import DraftModel
from llmserve.engine.embeddings import Embedder
from llmserve.engine.jobs import SpecCounts
from llmserve.engine.model import LlamaModel
from llmserve.engine.pool import ReplicaPool
from llmserve.engine.prefix_cache import PrefixCache, SwaRule, file_fingerprint
from llmserve.engine.protocol import (
    CacheSnapshot,
    ChatRenderer,
    Embeddings,
    EngineStats,
    GenerationRequest,
    KvSnapshot,
    ModelInfo,
    ReplicaStats,
    SamplingParams,
    TemplateFactory,
    TemplateSource,
    TokenEvent,
)
from llmserve.engine.sampling import Gbnf, check_grammar, compile_grammar
from llmserve.engine.worker import Item, Job, Sink, Worker, WorkerConfig
from llmserve.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    LLMServeError,
    ModelLoadError,
    PromptTooLong,
    ServiceUnavailable,
)
from llmserve.models.resolve import resolve_draft_model_path, resolve_model_path

log = logging.getLogger(__name__)

# Tokenizing a prompt longer than this many characters moves off the event loop.
_INLINE_TOKENIZE_CHARS = 16_384


class StreamedGeneration:
    """A queued request as the HTTP layer sees it: async-iterate its events, or cancel it."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._cancelled = False
        self._done = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def put(self, item: Item) -> None:
        self._queue.put_nowait(item)

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        while not self._done:
            item = await self._queue.get()
            if isinstance(item, LLMServeError):
                self._done = True
                raise item
            if item.usage is not None:  # the last event of the last choice
                self._done = True
            yield item

    def cancel(self) -> None:
        if not self._done and not self._cancelled:
            self._cancelled = True
            self._worker.wake()


def _dispatch(items: list[tuple[Sink, Item]]) -> None:
    for sink, item in items:
        if isinstance(sink, StreamedGeneration):
            sink.put(item)


class LlamaEngine:
    """Serves one GGUF model with continuous batching over ``parallel`` slots per replica."""

    def __init__(
        self,
        settings: Settings,
        model_path: Path,
        templates: TemplateFactory,
        draft_path: Path | None = None,
    ) -> None:
        """``draft_path``: the draft GGUF of ``speculative = "draft"`` (None: no draft model)."""
        self._settings = settings
        self._path = model_path
        self._draft_path = draft_path
        self._templates = templates
        self._model: LlamaModel | None = None  # tokenizes; the first of _models
        self._models: list[LlamaModel] = []  # one per GPU of [model] devices, else one
        self._pool: ReplicaPool[Worker] | None = None
        self._cache: PrefixCache | None = None  # shared by the replicas
        self._embedder: Embedder | None = None
        self._template: ChatRenderer | None = None
        self._n_ctx_seq = settings.model.max_sequence_length
        self._created = int(time.time())
        self._model_id = settings.model.name or model_path.stem
        # Counters outlive the workers (the model may load again); one per replica, so that no
        # two worker threads bump the same one.
        self._specs = [SpecCounts() for _ in range(settings.model.replicas)]

    @classmethod
    def from_settings(cls, settings: Settings, templates: TemplateFactory) -> LlamaEngine:
        return cls(
            settings,
            resolve_model_path(settings),
            templates,
            draft_path=resolve_draft_model_path(settings),
        )

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def n_ctx_seq(self) -> int:
        return self._n_ctx_seq

    def models(self) -> Sequence[ModelInfo]:
        return [
            ModelInfo(
                id=self._model_id,
                created=self._created,
                n_ctx=self._n_ctx_seq,
                path=str(self._path),
            )
        ]

    @property
    def workers(self) -> tuple[Worker, ...]:
        """The replicas' workers while loaded (for tests and stats)."""
        return self._pool.replicas if self._pool is not None else ()

    def stats(self) -> EngineStats:
        workers = self.workers
        drafted = sum(spec.proposed for spec in self._specs)
        accepted = sum(spec.accepted for spec in self._specs)
        if not workers:
            return EngineStats(draft_tokens=drafted, draft_accepted=accepted)
        replicas = tuple(
            ReplicaStats(
                index=worker.index,
                running=worker.running(),
                waiting=worker.waiting(),
                kv=KvSnapshot(used=worker.kv_cells_in_use(), cells=worker.kv_cells()),
            )
            for worker in workers
        )
        prompt = sum(worker.prompt_tokens for worker in workers)
        reused = sum(worker.reused_tokens for worker in workers)
        cache = self._cache.stats if self._cache is not None else None
        return EngineStats(
            running=sum(r.running for r in replicas),
            waiting=sum(r.waiting for r in replicas),
            cache_hit_rate=reused / prompt if prompt else 0.0,
            loaded=True,
            # Utilisation over every replica's cells: the model's KV, as the picker sees it.
            kv=KvSnapshot(
                used=sum(r.kv.used for r in replicas), cells=sum(r.kv.cells for r in replicas)
            ),
            draft_tokens=drafted,
            draft_accepted=accepted,
            cache=CacheSnapshot(
                hits=cache.hits,
                misses=cache.misses,
                tokens_saved=cache.tokens_saved,
                evictions=dict(cache.evictions),
                bytes=dict(cache.bytes),
                entries=dict(cache.entries),
            )
            if cache is not None
            else CacheSnapshot(),
            replicas=replicas,
        )

    def served_id(self, model: str | None) -> str:
        return self._model_id  # one model serves every name, as llama-server does

    async def resolve(self, model: str | None) -> str:
        return self.served_id(model)

    def tool_format(self, model: str | None = None) -> str:
        if self._template is None:
            raise ServiceUnavailable("the model is still loading")
        return self._template.tool_format

    def tool_syntax(self, model: str | None = None) -> str:
        if self._template is None:
            raise ServiceUnavailable("the model is still loading")
        return self._template.tool_syntax

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        model: str | None = None,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        if self._template is None:
            raise ServiceUnavailable("the model is still loading")
        return self._template.render(messages, tools=tools, variables=variables)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._load, loop)
        for worker in self.workers:
            worker.start()
        log.info(
            "model loaded",
            extra={
                "model": self._model_id,
                "path": str(self._path),
                "n_ctx": self._n_ctx_seq,
                "replicas": len(self.workers),
            },
        )

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        settings = self._settings.model
        n_gpu_layers = 0
        if settings.device != "cpu":
            if not llama_cpp.llama_supports_gpu_offload():
                raise ModelLoadError(
                    f"device={settings.device} but this llama.cpp build has no GPU support; "
                    "reinstall llama-cpp-python with CMAKE_ARGS='-DGGML_CUDA=on' or use "
                    "device=cpu"
                )
            n_gpu_layers = -1 if settings.n_gpu_layers is None else settings.n_gpu_layers
        # llama.cpp places a context's KV where the model's layers are, and chooses the GPU
        # per model load (split mode none + main_gpu), not per context: one load per GPU.
        placement = replica_devices(settings.replicas, settings.devices)
        models: dict[int | None, LlamaModel] = {}
        for device in placement:
            if device not in models:
                models[device] = LlamaModel(self._path, n_gpu_layers=n_gpu_layers, main_gpu=device)
                self._models.append(models[device])
        model = self._models[0]
        self._model = model
        self._n_ctx_seq = min(settings.max_sequence_length, model.facts.n_ctx_train)
        self._template = self._templates(
            TemplateSource(
                gguf_template=model.facts.chat_template,
                override=settings.chat_template,
                architecture=model.facts.architecture,
                bos_token=model.facts.bos_token,
                eos_token=model.facts.eos_token,
                tool_format=settings.tool_format,
                variables=settings.chat_template_kwargs,
            )
        )

        def deliver(items: list[tuple[Sink, Item]]) -> None:
            loop.call_soon_threadsafe(_dispatch, items)

        n_threads = settings.n_threads or os.cpu_count() or 1
        config = WorkerConfig(
            n_slots=settings.parallel,
            n_ctx_seq=self._n_ctx_seq,
            n_batch=settings.n_batch,
            prefill_chunk=settings.prefill_chunk,
            kv_unified=settings.kv_unified,
            # The replicas' threads share the cores: each gets its share, never none.
            n_threads=max(1, n_threads // settings.replicas),
            n_gpu_layers=n_gpu_layers,
            reuse_prefix=self._settings.cache.enabled,
            speculative=settings.speculative,
            draft_max=settings.draft_max,
            draft_min=settings.draft_min,
            ngram_size=settings.ngram_size,
            ngram_shared=settings.ngram_shared,
        )
        self._cache = self._build_cache(model, config)
        max_queued = self._settings.server.max_concurrent_requests
        workers: list[Worker] = []
        try:
            for index, device in enumerate(placement):
                # Each replica drafts in a context of its own (draft weights loaded per replica).
                draft = None
                if self._draft_path is not None:
                    draft = DraftModel.open(self._draft_path, models[device], config)
                    log.info(
                        "draft model loaded",
                        extra={"model": self._model_id, "draft_path": str(self._draft_path)},
                    )
                worker = Worker(
                    models[device],
                    config,
                    deliver,
                    max_queued=max_queued,
                    cache=self._cache,
                    spec_counts=self._specs[index],
                    index=index,
                    track_live=len(placement) > 1,
                    draft=draft,
                )
                workers.append(worker)
        except BaseException:
            for made in workers:  # not started: stop() frees the context
                made.stop()
            raise
        self._pool = ReplicaPool(workers, max_queued=max_queued)
        self._embedder = Embedder(model, n_ctx=self._n_ctx_seq, n_threads=n_threads)

    def _build_cache(self, model: LlamaModel, config: WorkerConfig) -> PrefixCache | None:
        settings = self._settings.cache
        if not settings.enabled or settings.max_size_mb == 0:
            return None
        # A saved state is only valid for the same weights, library and KV layout.
        identity = "|".join(
            (
                file_fingerprint(self._path),
                f"llama-cpp-python={llama_cpp.__version__}",
                f"kv_unified={config.kv_unified}",
                f"swa_full={config.swa_full}",
            )
        )
        return PrefixCache(
            identity=identity,
            ram_bytes=settings.max_size_mb << 20,
            policy=settings.eviction_policy,
            swa=SwaRule(model.facts.n_swa),
            disk_dir=Path(settings.disk_dir) if settings.disk_dir else None,
            disk_bytes=settings.disk_size_mb << 20,
            disk_policy=settings.disk_eviction_policy,
            disk_shared=settings.disk_shared,
        )

    async def stop(self) -> None:
        # The chat template stays: a registry that unloads this model may render a prompt for
        # it while it loads again, and start() may be called again after stop().
        workers, cache, embedder = self.workers, self._cache, self._embedder
        self._pool = self._embedder = self._cache = None
        for worker in workers:
            await asyncio.to_thread(worker.stop)
        if cache is not None:  # its last entries land in a shared folder
            await asyncio.to_thread(cache.close)
        if embedder is not None:
            await asyncio.to_thread(embedder.close)
        for model in self._models:
            model.close()
        self._models = []
        self._model = None

    async def tokenize(self, prompt: str | tuple[int, ...], *, param: str) -> list[int]:
        model = self._model
        if model is None:
            raise ServiceUnavailable("the model is still loading")
        if isinstance(prompt, tuple):
            bad = next((t for t in prompt if not model.valid_token(t)), None)
            if bad is not None:
                raise InvalidRequest(
                    f"token id {bad} is out of range for this model's vocabulary "
                    f"(0..{model.n_vocab - 1})",
                    param=param,
                )
            return list(prompt)
        if len(prompt) > _INLINE_TOKENIZE_CHARS:
            return await asyncio.to_thread(model.tokenize, prompt, add_special=model.add_bos)
        return model.tokenize(prompt, add_special=model.add_bos)

    def _check_prompt_size(
        self,
        prompt: str | tuple[int, ...],
        model: LlamaModel,
        *,
        param: str,
        n_ctx: int | None = None,
        room: int = 1,
    ) -> None:
        """Refuse a text prompt that cannot leave ``room`` tokens of ``n_ctx`` (default: a
        sequence's context, with room to generate one token), without tokenizing it."""
        n_ctx = self._n_ctx_seq if n_ctx is None else n_ctx
        # A token covers at least one character: a shorter text needs no closer look.
        if not isinstance(prompt, str) or len(prompt) <= n_ctx - room:
            return
        at_least = model.fewest_tokens(len(prompt.encode()))
        if at_least > n_ctx - room:
            raise PromptTooLong(at_least_tokens=at_least, n_ctx=n_ctx, param=param)

    async def submit(self, request: GenerationRequest) -> StreamedGeneration:
        pool, model = self._pool, self._model
        if pool is None or model is None:
            raise ServiceUnavailable("the model is not loaded")
        n_slots = self._settings.model.parallel
        if request.n > n_slots:
            raise InvalidRequest(
                f"n={request.n} choices need {request.n} sequence slots at once, and this "
                f"server has {n_slots} ([model] parallel); ask for at most "
                f"{n_slots}",
                param="n",
            )
        _check_logit_bias(request.sampling, model)
        grammar = self._grammar(request, model)
        param = "prompt"
        if request.suffix is not None:
            tokens = await self._infill(request.prompt, request.suffix, model)
        else:
            self._check_prompt_size(request.prompt, model, param=param)
            tokens = await self.tokenize(request.prompt, param=param)
        if not tokens:
            raise InvalidRequest("the prompt is empty", param=param)
        n_ctx = self._n_ctx_seq
        room = n_ctx - len(tokens)
        max_tokens = request.max_tokens
        if max_tokens is None:  # [model] default_max_tokens, within the room left; else all of it
            default = self._settings.model.default_max_tokens
            max_tokens = room if default is None else min(default, room)
        if room < 1 or max_tokens > room:
            raise ContextLengthExceeded(
                prompt_tokens=len(tokens), max_tokens=max(max_tokens, 1), n_ctx=n_ctx
            )
        cache_prompt = _or(request.cache_prompt, self._settings.cache.cache_prompt)
        checkpoints = await self._checkpoints(request, tokens, model)
        worker = pool.choose(tokens, n=request.n, by_prefix=cache_prompt)
        generation = StreamedGeneration(worker)
        worker.submit(
            Job(
                tokens=tokens,
                max_tokens=max_tokens,
                stop=request.stop,
                sampling=request.sampling,
                sink=generation,
                n=request.n,
                logprobs=request.logprobs,
                grammar=grammar,
                cache_prompt=cache_prompt,
                special=request.special_tokens,
                checkpoints=checkpoints,
            )
        )
        return generation

    async def _checkpoints(
        self, request: GenerationRequest, tokens: list[int], model: LlamaModel
    ) -> tuple[int, ...]:
        """The token positions of a text prompt's checkpoints (none without a cache)."""
        prompt = request.prompt
        if not request.checkpoints or not isinstance(prompt, str) or self._cache is None:
            return ()

        def tokenize(text: str) -> list[int]:
            return model.tokenize(text, add_special=model.add_bos)

        # Up to a few more tokenizations of the prompt's head: off the loop, as long ones are.
        return await asyncio.to_thread(
            token_positions, prompt, request.checkpoints, tokens, tokenize
        )

    def _grammar(self, request: GenerationRequest, model: LlamaModel) -> Gbnf | None:
        if request.grammar is None:
            return None
        gbnf = compile_grammar(request.grammar)
        check_grammar(model.vocab, gbnf)
        return gbnf

    async def _infill(
        self, prefix: str | tuple[int, ...], suffix: str, model: LlamaModel
    ) -> list[int]:
        """A fill-in-the-middle prompt, laid out as llama-server does: [BOS] PRE prefix SUF
        suffix MID; the model writes the middle."""
        pre, suf, mid = model.fim
        if min(pre, suf, mid) < 0:
            raise InvalidRequest(
                "'suffix' needs a fill-in-the-middle model, and this model has no FIM tokens",
                param="suffix",
            )
        self._check_prompt_size(prefix, model, param="prompt")
        self._check_prompt_size(suffix, model, param="suffix")
        if isinstance(prefix, tuple):
            head = await self.tokenize(prefix, param="prompt")
        else:
            head = await asyncio.to_thread(model.tokenize, prefix, add_special=False)
        tail = await asyncio.to_thread(model.tokenize, suffix, add_special=False)
        return [*([model.bos] if model.add_bos else []), pre, *head, suf, *tail, mid]

    async def embed(
        self, inputs: Sequence[str | tuple[int, ...]], model: str | None = None
    ) -> Embeddings:
        embedder = self._embedder
        if embedder is None:
            raise ServiceUnavailable("the model is not loaded")
        token_lists: list[list[int]] = []
        for i, item in enumerate(inputs):
            param = f"input[{i}]" if len(inputs) > 1 else "input"
            if self._model is not None:
                self._check_prompt_size(
                    item, self._model, param=param, n_ctx=embedder.n_ctx, room=0
                )
            tokens = await self.tokenize(item, param=param)
            if not tokens:
                raise InvalidRequest("an input is empty; embeddings need text", param=param)
            if len(tokens) > embedder.n_ctx:
                raise InvalidRequest(
                    f"an input of {len(tokens)} tokens is longer than this model's "
                    f"{embedder.n_ctx}-token context",
                    param=param,
                )
            token_lists.append(tokens)
        vectors = await asyncio.to_thread(embedder.embed, token_lists)
        return Embeddings(vectors=tuple(vectors), prompt_tokens=sum(map(len, token_lists)))

    async def tokenize_text(
        self, text: str, *, add_special: bool, model: str | None = None
    ) -> list[int]:
        llama_model = self._model
        if llama_model is None:
            raise ServiceUnavailable("the model is still loading")
        # Bounded like prompts: tokenizing is quadratic in a text's special tokens, and a text
        # no request could send gives a count nobody can use.
        self._check_prompt_size(text, llama_model, param="content", room=0)
        return await asyncio.to_thread(llama_model.tokenize, text, add_special=add_special)

    async def token_pieces(self, tokens: Sequence[int], model: str | None = None) -> list[bytes]:
        llama_model = self._model
        if llama_model is None:
            raise ServiceUnavailable("the model is still loading")
        checked = await self.tokenize(tuple(tokens), param="tokens")
        return [llama_model.piece(t) for t in checked]


def replica_devices(replicas: int, devices: Sequence[int]) -> list[int | None]:
    """The GPU of each replica: ``[model] devices``, else None (llama.cpp's default) each."""
    return list(devices) if devices else [None] * replicas


def _or(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def _check_logit_bias(sampling: SamplingParams, model: LlamaModel) -> None:
    bad = next((t for t, _ in sampling.logit_bias if not model.valid_token(t)), None)
    if bad is not None:
        raise InvalidRequest(
            f"logit_bias names token {bad}, outside this model's vocabulary "
            f"(0..{model.n_vocab - 1})",
            param="logit_bias",
        )
