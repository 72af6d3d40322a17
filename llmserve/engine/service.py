"""LlamaEngine: the real Engine — one model, one worker, requests bridged from asyncio."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import llama_cpp

from llmserve.config import Settings, resolve_model_path
from llmserve.engine.chat import ChatTemplate
from llmserve.engine.model import LlamaModel
from llmserve.engine.prefix_cache import PrefixCache, SwaRule, file_fingerprint
from llmserve.engine.protocol import (
    CacheSnapshot,
    EngineStats,
    GenerationRequest,
    ModelInfo,
    TokenEvent,
)
from llmserve.engine.worker import Item, Job, Sink, Worker, WorkerConfig
from llmserve.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    LLMServeError,
    ModelLoadError,
    ServiceUnavailable,
)

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
            if item.finish_reason is not None:
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
    """Serves one GGUF model with continuous batching over ``parallel`` slots."""

    def __init__(self, settings: Settings, model_path: Path) -> None:
        self._settings = settings
        self._path = model_path
        self._model: LlamaModel | None = None
        self._worker: Worker | None = None
        self._template: ChatTemplate | None = None
        self._n_ctx_seq = settings.model.max_sequence_length
        self._created = int(time.time())
        self._model_id = settings.model.name or model_path.stem

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaEngine:
        return cls(settings, resolve_model_path(settings))

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

    def stats(self) -> EngineStats:
        worker = self._worker
        if worker is None:
            return EngineStats()
        cache = worker.cache.stats if worker.cache is not None else None
        return EngineStats(
            running=worker.running(),
            waiting=worker.waiting(),
            cache_hit_rate=worker.cache_hit_rate(),
            loaded=True,
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
        )

    async def resolve(self, model: str | None) -> str:
        return self._model_id  # one model serves every name, as llama-server does

    def render_chat(self, messages: Sequence[Mapping[str, Any]], model: str | None = None) -> str:
        if self._template is None:
            raise ServiceUnavailable("the model is still loading")
        return self._template.render(messages)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._load, loop)
        assert self._worker is not None
        self._worker.start()
        log.info(
            "model loaded",
            extra={"model": self._model_id, "path": str(self._path), "n_ctx": self._n_ctx_seq},
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
        model = LlamaModel(self._path, n_gpu_layers=n_gpu_layers)
        self._model = model
        self._n_ctx_seq = min(settings.max_sequence_length, model.facts.n_ctx_train)
        self._template = ChatTemplate(
            gguf_template=model.facts.chat_template,
            override=settings.chat_template,
            architecture=model.facts.architecture,
            bos_token=model.facts.bos_token,
            eos_token=model.facts.eos_token,
        )

        def deliver(items: list[tuple[Sink, Item]]) -> None:
            loop.call_soon_threadsafe(_dispatch, items)

        config = WorkerConfig(
            n_slots=settings.parallel,
            n_ctx_seq=self._n_ctx_seq,
            n_batch=settings.n_batch,
            n_threads=settings.n_threads or os.cpu_count() or 1,
            n_gpu_layers=n_gpu_layers,
            reuse_prefix=self._settings.cache.enabled,
        )
        self._worker = Worker(
            model,
            config,
            deliver,
            max_queued=self._settings.server.max_concurrent_requests,
            cache=self._build_cache(model, config),
        )

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
        )

    async def stop(self) -> None:
        # The chat template stays: a registry that unloads this model may render a prompt for
        # it while it loads again, and start() may be called again after stop().
        worker, model = self._worker, self._model
        self._worker = None
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        if model is not None:
            model.close()
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

    async def submit(self, request: GenerationRequest) -> StreamedGeneration:
        worker = self._worker
        if worker is None:
            raise ServiceUnavailable("the model is not loaded")
        param = "prompt"
        tokens = await self.tokenize(request.prompt, param=param)
        if not tokens:
            raise InvalidRequest("the prompt is empty", param=param)
        n_ctx = self._n_ctx_seq
        room = n_ctx - len(tokens)
        max_tokens = request.max_tokens if request.max_tokens is not None else room
        if room < 1 or max_tokens > room:
            raise ContextLengthExceeded(
                prompt_tokens=len(tokens), max_tokens=max(max_tokens, 1), n_ctx=n_ctx
            )
        generation = StreamedGeneration(worker)
        worker.submit(
            Job(
                tokens=tokens,
                max_tokens=max_tokens,
                stop=request.stop,
                sampling=request.sampling,
                sink=generation,
            )
        )
        return generation
