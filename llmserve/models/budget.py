"""Memory budgets: what a configuration can take, against the memory the process may use.

Per loaded model, the RAM it can come to hold::

    weights   the GGUF file(s): llama.cpp maps them and they end up resident
    KV        f16 keys and values of ``parallel`` x context tokens per attention layer, sized as
              llama.cpp sizes them (context padded to 256; sliding-window layers keep only their
              window plus a batch), once per context of ``replicas``
    compute   llama.cpp's scratch for one batch of n_batch tokens, and its logits (f32 x
              vocabulary per token), once per context of ``replicas``
    embeddings  the embeddings context, made on the first /v1/embeddings: KV and compute of one
              sequence whose batch is its whole context; llama.cpp reserves the logits of every
              token of it, 4 GiB for Gemma 3's 262,144-token vocabulary at 4096 (measured)
    cache     ``[cache] max_size_mb``: each model's RAM prefix cache fills up to it
    draft     with ``speculative = "draft"``, the draft model: its file, its KV (one sequence per
              slot, sliding-window layers at full size) and its compute

plus the process itself (interpreter, libraries). With ``device`` gpu/cuda the offloaded layers'
weights and KV live in GPU memory, which is not checked here. The configuration needs the sum over
the ``[server] max_loaded_models`` largest models (all of them when unset).

Everything here is arithmetic over plain numbers except ``model_need``, which reads a GGUF header
(never the weights), and the limit, read by llmserve.ops.memlimit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from attrs import frozen

from llmserve.config import CacheSettings, ModelSettings, Settings, served_models
from llmserve.errors import InsufficientMemory, ModelLoadError
from llmserve.models.ggufmeta import GGUFArray, GGUFMetadata, MetadataValue, read_metadata
from llmserve.models.store import SPLIT
from llmserve.ops.memlimit import MemoryLimit, read_memory_limit

log = logging.getLogger("llmserve.memory")

MiB = 1 << 20
GiB = 1 << 30
F16_BYTES = 2  # llama.cpp's default KV type
CONTEXT_PAD = 256  # llama.cpp pads every context, and every sliding-window cache, to this
WARN_FRACTION = 0.9  # a configuration over this share of the limit starts with a warning
# The Python process with its libraries loaded and no model (measured: see the README).
PROCESS_BYTES = 160 * MiB
# Architectures whose layers alternate sliding-window and full attention when the GGUF does not
# say which: every n-th layer attends fully (llama.cpp's load_swa_pattern for each of them).
SWA_PATTERNS: Mapping[str, int] = {"gemma2": 2, "gemma3": 6, "gpt-oss": 2, "cohere2": 4}


@frozen
class KvShape:
    """The KV cache of one token, split by kind of layer."""

    full_bytes: int  # K + V of one token over the full-attention layers
    swa_bytes: int  # the same over the sliding-window layers
    n_swa: int  # the window in tokens; 0: no sliding-window layers


@frozen
class ModelNeed:
    """What one loaded model can come to hold in RAM, in bytes."""

    name: str
    weights: int
    kv: int
    compute: int
    cache: int
    embeddings: int = 0
    draft: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.cache + self.embeddings + self.draft


@frozen
class MemoryPlan:
    """The models that may be loaded together (the largest ones), and the process around them."""

    models: tuple[ModelNeed, ...]
    configured: int  # how many models are configured
    process: int = PROCESS_BYTES

    @property
    def total(self) -> int:
        return self.process + sum(need.total for need in self.models)

    def breakdown(self) -> str:
        """``model 0.25 GiB + KV 0.50 GiB + ...``: each part of the total, named by its key."""
        parts = [
            ("model" if len(self.models) == 1 else "models", _sum(self.models, "weights")),
            ("KV ([model] replicas x parallel x max_sequence_length)", _sum(self.models, "kv")),
            ("compute", _sum(self.models, "compute")),
            ("embeddings context (max_sequence_length)", _sum(self.models, "embeddings")),
            ("[cache] max_size_mb", _sum(self.models, "cache")),
            ("draft model (draft_model_path)", _sum(self.models, "draft")),
            ("runtime", self.process),
        ]
        return " + ".join(f"{name} {size(value)}" for name, value in parts if value)


def _sum(needs: Sequence[ModelNeed], part: str) -> int:
    return sum(getattr(need, part) for need in needs)


def size(value: int) -> str:
    """Bytes as GiB with two decimals (TiB past 1024 GiB, MiB under 0.01 GiB)."""
    if value >= 1024 * GiB:
        return f"{value / (1024 * GiB):.2f} TiB"
    if value < GiB // 100:
        return f"{value / MiB:.1f} MiB"
    return f"{value / GiB:.2f} GiB"


# -- the KV cache -------------------------------------------------------------------------------


def _pad(n: int) -> int:
    return -(-n // CONTEXT_PAD) * CONTEXT_PAD


def _per_layer(value: MetadataValue | None, n_layer: int, default: int) -> list[int]:
    """A hyperparameter given once for every layer, or as a per-layer array."""
    if isinstance(value, GGUFArray) and value.items is not None and len(value.items) == n_layer:
        return [int(item) for item in value.items]
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * n_layer
    return [default] * n_layer


def _int(metadata: GGUFMetadata, key: str) -> int | None:
    value = metadata.values.get(f"{metadata.architecture}.{key}")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def kv_shape(metadata: GGUFMetadata) -> KvShape:
    """The KV bytes of one token of the model, from its GGUF metadata (llama.cpp's hparams)."""
    values, arch = metadata.values, metadata.architecture
    n_layer = _int(metadata, "block_count") or 0
    n_embd = _int(metadata, "embedding_length") or 0
    heads = _per_layer(values.get(f"{arch}.attention.head_count"), n_layer, 0)
    # Without head_count_kv every head has its own K and V; 0 marks a layer without attention
    # (the recurrent layers of hybrid models).
    heads_kv = _per_layer(values.get(f"{arch}.attention.head_count_kv"), n_layer, -1)
    n_swa = _int(metadata, "attention.sliding_window") or 0
    swa_layers = _swa_layers(metadata, n_layer) if n_swa else [False] * n_layer
    full = swa = 0
    for layer in range(n_layer):
        n_head = heads[layer] or max(heads, default=0)
        head_dim = n_embd // n_head if n_head else 0
        key = _int(metadata, "attention.key_length") or head_dim
        value = _int(metadata, "attention.value_length") or head_dim
        n_kv = heads_kv[layer] if heads_kv[layer] >= 0 else heads[layer]
        token = n_kv * (key + value) * F16_BYTES
        if swa_layers[layer]:
            swa += token
        else:
            full += token
    return KvShape(full_bytes=full, swa_bytes=swa, n_swa=n_swa if swa else 0)


def _swa_layers(metadata: GGUFMetadata, n_layer: int) -> list[bool]:
    """Which layers use the sliding window: the GGUF's pattern, else the architecture's."""
    pattern = metadata.values.get(f"{metadata.architecture}.attention.sliding_window_pattern")
    if isinstance(pattern, GGUFArray) and pattern.items is not None:
        return [bool(item) for item in pattern.items[:n_layer]] + [False] * (
            n_layer - len(pattern.items)
        )
    every = pattern if isinstance(pattern, int) and not isinstance(pattern, bool) else None
    every = every or SWA_PATTERNS.get(metadata.architecture or "")
    if every is None:
        return [False] * n_layer  # unknown: counted as full attention, which is the larger
    return [layer % every < every - 1 for layer in range(n_layer)]


def kv_bytes(
    shape: KvShape,
    *,
    n_ctx_seq: int,
    parallel: int,
    n_ubatch: int,
    kv_unified: bool,
    swa_full: bool = False,
) -> int:
    """The KV cache llama.cpp allocates for ``parallel`` sequences of ``n_ctx_seq`` tokens.

    As llama_context and llama_kv_cache_iswa size it: the context is padded to 256; unified, one
    stream of all the cells, else one stream per sequence; a sliding-window layer keeps
    ``n_swa`` cells per sequence plus one micro-batch, padded, unless ``swa_full``.
    """
    n_ctx = _pad(n_ctx_seq * parallel)
    streams, cells = (1, n_ctx) if kv_unified else (parallel, _pad(n_ctx // parallel))
    swa_cells = cells
    if shape.n_swa and not swa_full:
        window = shape.n_swa * (parallel if kv_unified else 1) + n_ubatch
        swa_cells = _pad(min(cells, window))
    return streams * (cells * shape.full_bytes + swa_cells * shape.swa_bytes)


# -- one model, a configuration -----------------------------------------------------------------


def model_files_bytes(path: Path) -> int:
    """The size of a GGUF model: every part of a split one (``x-00001-of-00003.gguf``)."""
    match = SPLIT.match(path.name)
    if match is None:
        return path.stat().st_size
    count = int(match["count"])
    names = (f"{match['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1))
    parts = [path.with_name(name) for name in names]
    return sum(part.stat().st_size for part in parts if part.is_file())


def model_need(
    name: str,
    model: ModelSettings,
    cache: CacheSettings,
    metadata: GGUFMetadata,
    file_bytes: int,
    draft: tuple[GGUFMetadata, int] | None = None,
) -> ModelNeed:
    """What the model of ``metadata`` can take in RAM when served with these settings (with
    ``draft``, the metadata and file size of its draft model, beside it)."""
    n_ctx_train = metadata.context_length or model.max_sequence_length
    n_ctx_seq = min(model.max_sequence_length, n_ctx_train)
    shape = kv_shape(metadata)
    generation = kv_bytes(
        shape,
        n_ctx_seq=n_ctx_seq,
        parallel=model.parallel,
        n_ubatch=model.n_batch,
        kv_unified=model.kv_unified,
    )
    # The embeddings context: one sequence, its context one batch (llmserve.engine.embeddings).
    embeddings_kv = kv_bytes(
        shape, n_ctx_seq=n_ctx_seq, parallel=1, n_ubatch=n_ctx_seq, kv_unified=True, swa_full=True
    )
    in_ram = _ram_share(model, _int(metadata, "block_count") or 0)
    ram_cache = cache.max_size_mb * MiB if cache.enabled else 0
    # Replicas share the weights (one load; on GPUs one per device, in GPU memory) and the
    # prefix cache; each context has its own KV and compute buffers.
    return ModelNeed(
        name=name,
        weights=round(file_bytes * in_ram),
        kv=round(generation * in_ram) * model.replicas,
        compute=_compute(metadata, model.n_batch) * model.replicas,
        cache=ram_cache,
        embeddings=round(embeddings_kv * in_ram) + _compute(metadata, n_ctx_seq),
        draft=_draft_need(model, n_ctx_seq, *draft) * model.replicas if draft is not None else 0,
    )


def _compute(metadata: GGUFMetadata, batch: int) -> int:
    """Logits (f32) and the graph's activations of one batch; llama.cpp reserves the logits of
    every token of the embeddings context's batch even though pooling reads none."""
    n_embd = _int(metadata, "embedding_length") or 0
    return 4 * batch * (_vocab_size(metadata) + 8 * n_embd)


def _draft_need(
    model: ModelSettings, n_ctx_seq: int, metadata: GGUFMetadata, file_bytes: int
) -> int:
    """The draft model's file, KV and compute (engine/draftmodel.py: one sequence of the
    target's context per slot, full-size sliding-window caches)."""
    kv = kv_bytes(
        kv_shape(metadata),
        n_ctx_seq=n_ctx_seq,
        parallel=model.parallel,
        n_ubatch=model.n_batch,
        kv_unified=model.kv_unified,
        swa_full=True,
    )
    in_ram = _ram_share(model, _int(metadata, "block_count") or 0)
    return round((file_bytes + kv) * in_ram) + _compute(metadata, model.n_batch)


def _vocab_size(metadata: GGUFMetadata) -> int:
    tokens = metadata.values.get("tokenizer.ggml.tokens")
    return tokens.length if isinstance(tokens, GGUFArray) else 0


def _ram_share(model: ModelSettings, n_layer: int) -> float:
    """The share of the weights and KV in RAM: all on cpu, none of the layers offloaded to a GPU."""
    if model.device == "cpu":
        return 1.0
    offloaded = model.n_gpu_layers
    if offloaded is None or offloaded < 0 or n_layer == 0:
        return 0.0
    return max(0, n_layer - offloaded) / n_layer


def plan_memory(settings: Settings) -> MemoryPlan:
    """The largest models that may be loaded together, from their GGUF headers.

    Every served model's ``model_path`` must be resolved to its file (resolve_model_paths); a
    file whose header cannot be read is left out (loading it fails with the reason).
    """
    served = served_models(settings)
    needs = [_need_of_file(entry.name, entry, settings.cache) for entry in served]
    known = [need for need in needs if need is not None]
    return plan_from_needs(known, settings.server.max_loaded_models)


def plan_from_needs(needs: Sequence[ModelNeed], max_loaded: int | None) -> MemoryPlan:
    """The ``max_loaded`` largest of ``needs`` (all when None): the worst case loaded at once."""
    largest = sorted(needs, key=lambda need: need.total, reverse=True)
    return MemoryPlan(models=tuple(largest[:max_loaded]), configured=len(needs))


def _need_of_file(name: str | None, model: ModelSettings, cache: CacheSettings) -> ModelNeed | None:
    """The model's need; None when its header cannot be read (its load says why, better)."""
    path = Path(model.model_path or "")
    try:
        metadata = read_metadata(path)
    except ModelLoadError as exc:
        log.warning("memory: %s; its memory is not estimated", exc.message)
        return None
    draft = None
    if model.speculative == "draft" and model.draft_model_path is not None:
        draft_path = Path(model.draft_model_path)
        try:
            draft = (read_metadata(draft_path), model_files_bytes(draft_path))
        except (ModelLoadError, OSError) as exc:
            reason = exc.message if isinstance(exc, ModelLoadError) else str(exc)
            log.warning("memory: %s; the draft model's memory is not estimated", reason)
    return model_need(name or path.stem, model, cache, metadata, model_files_bytes(path), draft)


def estimate_model(settings: Settings) -> ModelNeed | None:
    """The need of ``settings``' one ``[model]`` when its file is at hand; else None."""
    path = Path(settings.model.model_path or "")
    if not settings.model.model_path or not path.is_file():
        return None
    return _need_of_file(settings.model.name, settings.model, settings.cache)


# -- the verdicts -------------------------------------------------------------------------------

ADVICE = (
    "lower [cache] max_size_mb, [model] parallel, max_sequence_length or replicas, or [server] "
    "max_loaded_models, or serve a smaller model; [server] memory_check = false starts anyway"
)


def _shown_limit(limit: MemoryLimit) -> str:
    return f"{size(limit.bytes)} ({limit.source})"


def refusal(plan: MemoryPlan, limit: MemoryLimit) -> InsufficientMemory | None:
    """The error when ``plan`` cannot fit ``limit``, else None."""
    if plan.total <= limit.bytes:
        return None
    at_once = ""
    if plan.configured > 1:
        at_once = f" for {len(plan.models)} of {plan.configured} models loaded at once"
    return InsufficientMemory(
        f"the configuration needs ~{size(plan.total)}{at_once} ({plan.breakdown()}) but the "
        f"memory limit is {_shown_limit(limit)}; {ADVICE}"
    )


def close_call(plan: MemoryPlan, limit: MemoryLimit) -> str | None:
    """A warning when ``plan`` fits ``limit`` with less than 10% to spare, else None."""
    if not WARN_FRACTION * limit.bytes < plan.total <= limit.bytes:
        return None
    return (
        f"memory: the configuration needs ~{size(plan.total)} ({plan.breakdown()}), "
        f"{plan.total / limit.bytes:.0%} of the memory limit {_shown_limit(limit)}"
    )


def check_memory(
    settings: Settings, read_limit: Callable[[], MemoryLimit | None] = read_memory_limit
) -> None:
    """At start: raise InsufficientMemory when the configuration cannot fit; warn when it is close.

    With ``[server] memory_check = false`` the refusal is only logged, as a warning.
    """
    limit = read_limit()
    if limit is None:
        log.warning("memory: the machine's memory is unknown; the configuration is not checked")
        return
    plan = plan_memory(settings)
    error = refusal(plan, limit)
    if error is not None and settings.server.memory_check:
        raise error
    warning = error.message if error is not None else close_call(plan, limit)
    if warning is not None:
        log.warning(warning)
    else:
        log.info(
            "memory: the configuration needs ~%s of %s",
            size(plan.total),
            _shown_limit(limit),
            extra={"needed_bytes": plan.total, "limit_bytes": limit.bytes},
        )


@frozen
class MemoryGuard:
    """Checks each model load at run time against the limit, read again each time."""

    read_limit: Callable[[], MemoryLimit | None] = read_memory_limit
    process: int = PROCESS_BYTES

    def check_load(
        self, loading: ModelNeed, loaded: Sequence[ModelNeed]
    ) -> InsufficientMemory | None:
        """The error when ``loading`` does not fit beside the ``loaded`` models; else None."""
        limit = self.read_limit()
        total = self.process + loading.total + sum(need.total for need in loaded)
        if limit is None or total <= limit.bytes:
            return None
        beside = ", ".join(need.name for need in loaded) or "no other model"
        plan = MemoryPlan((loading, *loaded), configured=len(loaded) + 1, process=self.process)
        return InsufficientMemory(
            f"cannot load the model '{loading.name}': it needs ~{size(loading.total)} beside "
            f"{beside} (~{size(total)} in all: {plan.breakdown()}) but the memory limit is "
            f"{_shown_limit(limit)}; retry once a model has unloaded, or {ADVICE}"
        )
