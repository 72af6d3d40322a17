"""Memory budgets: the KV, model and cache estimate of a configuration, and its verdicts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import attrs
import gguf
import pytest

from llmserve.config import CacheSettings, ModelSettings, ServedModelSettings, ServerSettings
from llmserve.config import Settings as AppSettings
from llmserve.errors import InsufficientMemory
from llmserve.models.budget import (
    GiB,
    KvShape,
    MemoryGuard,
    MiB,
    ModelNeed,
    check_memory,
    close_call,
    kv_bytes,
    kv_shape,
    model_files_bytes,
    model_need,
    plan_from_needs,
    plan_memory,
    refusal,
)
from llmserve.models.ggufmeta import read_metadata
from llmserve.ops.memlimit import MemoryLimit

# Gemma 3 270M (the demo model): 18 layers, 1 KV head of 256, a 512-token window on 5 of 6.
GEMMA3_270M = KvShape(full_bytes=3 * 1 * 512 * 2, swa_bytes=15 * 1 * 512 * 2, n_swa=512)


def header(
    path: Path,
    arch: str = "llama",
    *,
    n_layer: int = 4,
    n_embd: int = 256,
    n_head: int = 4,
    n_head_kv: int | Sequence[int] = 2,
    sliding_window: int | None = None,
    pattern: int | Sequence[bool] | None = None,
    n_vocab: int = 100,
    context_length: int = 8192,
) -> Path:
    """A GGUF file of metadata only: what the budget reads."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(n_layer)
    writer.add_embedding_length(n_embd)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_context_length(context_length)
    if sliding_window is not None:
        writer.add_sliding_window(sliding_window)
    if pattern is not None:
        writer.add_sliding_window_pattern(pattern)
    writer.add_token_list([f"t{i}" for i in range(n_vocab)])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def limit(gib: float) -> MemoryLimit:
    return MemoryLimit(int(gib * GiB), "the test's limit")


def need(name: str, gib: float, *, cache_gib: float = 0.0) -> ModelNeed:
    return ModelNeed(name=name, weights=int(gib * GiB), kv=0, compute=0, cache=int(cache_gib * GiB))


def test_kv_matches_what_llama_cpp_allocates_for_the_demo_model() -> None:
    """parallel 4 x 4096 unified: 48 MiB full + 37.5 MiB window layers, llama.cpp's own log."""
    total = kv_bytes(GEMMA3_270M, n_ctx_seq=4096, parallel=4, n_ubatch=512, kv_unified=True)
    assert total == 48 * MiB + 37 * MiB + MiB // 2


def test_kv_grows_with_parallel_and_context() -> None:
    """Full-attention KV is linear in parallel x context (padded to 256)."""
    shape = KvShape(full_bytes=1000, swa_bytes=0, n_swa=0)
    one = kv_bytes(shape, n_ctx_seq=4096, parallel=1, n_ubatch=512, kv_unified=True)
    assert kv_bytes(shape, n_ctx_seq=4096, parallel=4, n_ubatch=512, kv_unified=True) == 4 * one
    assert kv_bytes(shape, n_ctx_seq=100, parallel=1, n_ubatch=512, kv_unified=True) == 256_000


def test_sliding_window_layers_keep_only_the_window_per_sequence() -> None:
    """Window layers hold n_swa per sequence plus a batch; swa_full holds the whole context."""
    shape = KvShape(full_bytes=0, swa_bytes=10, n_swa=512)
    unified = kv_bytes(shape, n_ctx_seq=8192, parallel=2, n_ubatch=512, kv_unified=True)
    assert unified == 10 * 1536  # 512 x 2 + 512
    split = kv_bytes(shape, n_ctx_seq=8192, parallel=2, n_ubatch=512, kv_unified=False)
    assert split == 2 * 10 * 1024  # per stream: 512 + 512
    full = kv_bytes(shape, n_ctx_seq=8192, parallel=2, n_ubatch=512, kv_unified=True, swa_full=True)
    assert full == 10 * 16384


def test_kv_shape_reads_heads_and_head_size_from_the_header(tmp_path: Path) -> None:
    """4 layers x 2 KV heads x (64 + 64) dims x 2 bytes per token."""
    shape = kv_shape(read_metadata(header(tmp_path / "m.gguf")))
    assert shape == KvShape(full_bytes=4 * 2 * 128 * 2, swa_bytes=0, n_swa=0)


def test_kv_shape_splits_gemma3_layers_by_its_pattern(tmp_path: Path) -> None:
    """gemma3: five window layers, then one full one; the window is the GGUF's."""
    path = header(tmp_path / "g.gguf", "gemma3", n_layer=12, sliding_window=512)
    shape = kv_shape(read_metadata(path))
    per_layer = 2 * 128 * 2
    assert shape == KvShape(full_bytes=2 * per_layer, swa_bytes=10 * per_layer, n_swa=512)


def test_kv_shape_follows_a_per_layer_window_pattern(tmp_path: Path) -> None:
    """A sliding_window_pattern array in the GGUF says which layers use the window."""
    pattern = [True, False, True, True]
    path = header(tmp_path / "p.gguf", "mystery", sliding_window=128, pattern=pattern)
    shape = kv_shape(read_metadata(path))
    assert (shape.full_bytes, shape.swa_bytes) == (512, 3 * 512)


def test_layers_without_kv_heads_hold_no_kv(tmp_path: Path) -> None:
    """A hybrid model's recurrent layers (0 KV heads in a per-layer array) count nothing."""
    path = header(tmp_path / "h.gguf", n_head_kv=[0, 0, 0, 2])
    assert kv_shape(read_metadata(path)).full_bytes == 2 * 128 * 2


def test_unknown_window_layout_counts_every_layer_as_full(tmp_path: Path) -> None:
    """A window without a known pattern: all layers full, the larger (safe) estimate."""
    path = header(tmp_path / "u.gguf", "mystery", sliding_window=128)
    assert kv_shape(read_metadata(path)) == KvShape(full_bytes=4 * 512, swa_bytes=0, n_swa=0)


def test_model_need_counts_weights_kv_compute_and_ram_cache(tmp_path: Path) -> None:
    """The file size, the KV of the slots, a batch's logits, the embeddings context, the cache."""
    metadata = read_metadata(header(tmp_path / "m.gguf", n_vocab=1000))
    model = ModelSettings(max_sequence_length=1024, parallel=2, n_batch=64)
    got = model_need("m", model, CacheSettings(max_size_mb=300), metadata, file_bytes=5 * MiB)
    per_token = 4 * 2 * 128 * 2
    assert got.weights == 5 * MiB
    assert got.kv == per_token * 2048  # the slots
    assert got.compute == 4 * 64 * (1000 + 8 * 256)  # the logits and activations of a batch
    assert got.embeddings == per_token * 1024 + 4 * 1024 * (1000 + 8 * 256)  # one whole batch
    assert got.cache == 300 * MiB


def test_model_need_counts_the_draft_model_beside_it(tmp_path: Path) -> None:
    """speculative = "draft": the draft file, its KV (a full-size window: one sequence per
    slot of the target's context) and its batch's compute, named in the breakdown."""
    metadata = read_metadata(header(tmp_path / "m.gguf", n_vocab=1000))
    small = read_metadata(header(tmp_path / "s.gguf", "gemma3", n_layer=6, sliding_window=128))
    model = ModelSettings(max_sequence_length=1024, parallel=2, n_batch=64)
    plain = model_need("m", model, CacheSettings(), metadata, file_bytes=5 * MiB)
    got = model_need("m", model, CacheSettings(), metadata, 5 * MiB, draft=(small, MiB))
    per_token = 6 * 2 * 128 * 2  # every layer at full size, window or not
    assert got.draft == MiB + per_token * 2048 + 4 * 64 * (100 + 8 * 256)
    assert got.total == plain.total + got.draft
    assert "draft model (draft_model_path) " in plan_from_needs([got], None).breakdown()


def test_plan_reads_the_draft_model_of_a_drafting_model(tmp_path: Path) -> None:
    """plan_memory adds the draft GGUF of speculative = "draft", and only in that mode."""
    main, small = header(tmp_path / "m.gguf"), header(tmp_path / "s.gguf", n_layer=1)
    drafting = ModelSettings(model_path=str(main), speculative="draft", draft_model_path=str(small))
    assert plan_memory(AppSettings(model=drafting)).models[0].draft > 0
    unused = attrs.evolve(drafting, speculative="ngram")
    assert plan_memory(AppSettings(model=unused)).models[0].draft == 0


def test_each_replica_counts_its_own_kv_and_compute_but_not_the_weights(tmp_path: Path) -> None:
    """replicas = 2: two contexts' KV and compute buffers; one load of weights, one cache."""
    metadata = read_metadata(header(tmp_path / "m.gguf", n_vocab=1000))
    one = ModelSettings(max_sequence_length=1024, parallel=2, n_batch=64)
    two = ModelSettings(max_sequence_length=1024, parallel=2, n_batch=64, replicas=2)
    single = model_need("m", one, CacheSettings(max_size_mb=300), metadata, file_bytes=5 * MiB)
    double = model_need("m", two, CacheSettings(max_size_mb=300), metadata, file_bytes=5 * MiB)
    assert (double.kv, double.compute) == (2 * single.kv, 2 * single.compute)
    assert (double.weights, double.cache, double.embeddings) == (
        single.weights,
        single.cache,
        single.embeddings,
    )


def test_context_beyond_training_is_capped_as_the_engine_caps_it(tmp_path: Path) -> None:
    """max_sequence_length over the model's training context counts only that context."""
    metadata = read_metadata(header(tmp_path / "m.gguf", context_length=1024))
    small = model_need("m", ModelSettings(max_sequence_length=1024), CacheSettings(), metadata, 0)
    large = model_need("m", ModelSettings(max_sequence_length=65536), CacheSettings(), metadata, 0)
    assert small.kv == large.kv


def test_disabled_cache_and_gpu_offload_take_no_ram(tmp_path: Path) -> None:
    """cache.enabled = false holds no RAM tier; device gpu puts weights and KV in VRAM."""
    metadata = read_metadata(header(tmp_path / "m.gguf"))
    off = CacheSettings(enabled=False, max_size_mb=10_000)
    got = model_need("m", ModelSettings(device="gpu"), off, metadata, file_bytes=GiB)
    assert (got.weights, got.kv, got.cache) == (0, 0, 0)
    half = model_need("m", ModelSettings(device="cuda", n_gpu_layers=2), off, metadata, GiB)
    assert half.weights == GiB // 2


def test_split_model_counts_every_part(tmp_path: Path) -> None:
    """A model split in parts weighs all of them, found from the first part's name."""
    for index in (1, 2, 3):
        (tmp_path / f"big-0000{index}-of-00003.gguf").write_bytes(b"x" * 100 * index)
    assert model_files_bytes(tmp_path / "big-00001-of-00003.gguf") == 600


def test_plan_counts_the_largest_models_that_may_load_together() -> None:
    """max_loaded_models = 2 of three models: the two largest count."""
    needs = [need("a", 1), need("b", 5), need("c", 3)]
    plan = plan_from_needs(needs, 2)
    assert [n.name for n in plan.models] == ["b", "c"]
    assert plan_from_needs(needs, None).models == tuple(sorted(needs, key=lambda n: -n.total))


def test_refusal_is_one_line_naming_sizes_and_keys() -> None:
    """Over the limit: the total, its parts, the limit and what to lower, on one line."""
    plan = plan_from_needs([need("m", 0.25, cache_gib=95 * 1024)], None)
    error = refusal(plan, limit(24))
    assert isinstance(error, InsufficientMemory)
    assert error.status == 503
    message = error.message
    assert "\n" not in message
    assert message.startswith("Resource error: Insufficient memory: the configuration needs ~95")
    assert "model 0.25 GiB" in message
    assert "[cache] max_size_mb 95.00 TiB" in message
    assert "memory limit is 24.00 GiB (the test's limit)" in message
    for key in ("[cache] max_size_mb", "[model] parallel", "max_sequence_length"):
        assert key in message.split("; ", 1)[1]
    assert "max_loaded_models" in message


def test_several_models_say_how_many_load_at_once() -> None:
    """With [[models]], the message says how many of them were counted together."""
    plan = plan_from_needs([need("a", 10), need("b", 10), need("c", 10)], 2)
    error = refusal(plan, limit(16))
    assert error is not None
    assert "for 2 of 3 models loaded at once" in error.message


def test_a_fitting_plan_is_not_refused_and_warns_only_when_close() -> None:
    """Under 90% of the limit: no word; between 90% and 100%: a warning; above: refused."""
    assert refusal(plan_from_needs([need("m", 1)], None), limit(16)) is None
    assert close_call(plan_from_needs([need("m", 1)], None), limit(16)) is None
    tight = plan_from_needs([need("m", 14.6)], None)
    assert refusal(tight, limit(16)) is None
    warning = close_call(tight, limit(16))
    assert warning is not None
    assert "of the memory limit 16.00 GiB" in warning


def settings_for(path: Path, **cache: object) -> AppSettings:
    return AppSettings(
        model=ModelSettings(model_path=str(path)),
        cache=CacheSettings(**cache),  # type: ignore[arg-type]
    )


def test_check_memory_raises_for_a_huge_cache(tmp_path: Path) -> None:
    """max_size_mb = 99999999 (95 TiB) on 24 GiB is refused before anything loads."""
    settings = settings_for(header(tmp_path / "m.gguf"), max_size_mb=99_999_999)
    with pytest.raises(InsufficientMemory, match=r"\[cache\] max_size_mb 95\.37 TiB"):
        check_memory(settings, lambda: limit(24))


def test_memory_check_off_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """[server] memory_check = false: the same message, logged as a warning, and no error."""
    settings = settings_for(header(tmp_path / "m.gguf"), max_size_mb=99_999_999)
    settings = AppSettings(
        server=ServerSettings(memory_check=False), model=settings.model, cache=settings.cache
    )
    with caplog.at_level(logging.WARNING, "llmserve.memory"):
        check_memory(settings, lambda: limit(24))
    assert "Resource error: Insufficient memory" in caplog.text


def test_unknown_limit_checks_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Where no limit can be read, start-up goes on with a warning."""
    settings = settings_for(header(tmp_path / "m.gguf"), max_size_mb=99_999_999)
    with caplog.at_level(logging.WARNING, "llmserve.memory"):
        check_memory(settings, lambda: None)
    assert "not checked" in caplog.text


def test_plan_reads_every_served_model(tmp_path: Path) -> None:
    """[[models]] with max_loaded_models = 1: the plan counts the larger model alone."""
    small = header(tmp_path / "small.gguf", n_layer=2)
    large = header(tmp_path / "large.gguf", n_layer=8)
    entries = tuple(
        ServedModelSettings(name=path.stem, model_path=str(path)) for path in (small, large)
    )
    settings = AppSettings(server=ServerSettings(max_loaded_models=1), models=entries)
    plan = plan_memory(settings)
    assert [n.name for n in plan.models] == ["large"]
    assert plan.configured == 2


def test_guard_refuses_a_load_beside_loaded_models_over_the_limit() -> None:
    """At run time a load is checked beside what is loaded, against the limit read now."""
    guard = MemoryGuard(read_limit=lambda: limit(10), process=0)
    assert guard.check_load(need("b", 4), [need("a", 5)]) is None
    error = guard.check_load(need("b", 6), [need("a", 5)])
    assert error is not None
    assert error.message.startswith(
        "Resource error: Insufficient memory: cannot load the model 'b'"
    )
    assert "beside a" in error.message
