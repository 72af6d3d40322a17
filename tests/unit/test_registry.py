"""ModelRegistry over FakeEngines: routing, lazy loads, LRU and idle unloads, busy models."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from attrs import define
from hypothesis import given
from hypothesis import strategies as st

from llmserve.config import CacheSettings, ModelSettings, ServedModelSettings, ServerSettings
from llmserve.config import Settings as AppSettings
from llmserve.engine.fake import FakeEngine
from llmserve.engine.protocol import Engine, GenerationRequest
from llmserve.engine.registry import (
    HeldGeneration,
    ModelRegistry,
    ModelSpec,
    cache_folder_name,
    registry_from_settings,
)
from llmserve.errors import (
    ConfigError,
    InsufficientMemory,
    ModelLoadError,
    ModelNotFound,
    ServiceUnavailable,
)
from llmserve.models.budget import GiB, MemoryGuard, ModelNeed
from llmserve.ops.memlimit import MemoryLimit


@define
class StepClock:
    """Monotonic time that moves only when a test says so."""

    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="clock")
def fixture_clock() -> StepClock:
    return StepClock()


def request(model: str | None) -> GenerationRequest:
    return GenerationRequest(prompt="hello there", max_tokens=2, model=model)


def registry(
    engines: Sequence[FakeEngine],
    clock: StepClock,
    *,
    max_loaded: int | None = None,
    keep_alive: float | None = None,
    preload: bool = False,
    busy_wait_s: float = 5.0,
) -> ModelRegistry:
    specs = [
        ModelSpec(
            engine, aliases=(f"{engine.model_id}-alias",), preload=preload, keep_alive=keep_alive
        )
        for engine in engines
    ]
    return ModelRegistry(specs, max_loaded=max_loaded, clock=clock, busy_wait_s=busy_wait_s)


async def finish(generation: HeldGeneration) -> str:
    return "".join([event.text async for event in generation])


async def use(models: ModelRegistry, name: str | None) -> str:
    """One whole generation on ``name``; the model it ran on."""
    generation = await models.submit(request(name))
    await finish(generation)
    return generation.model_id


@pytest.fixture(name="engines")
def fixture_engines() -> list[FakeEngine]:
    return [FakeEngine(model_id=name) for name in ("alpha", "beta", "gamma")]


async def test_requests_route_by_name_and_alias(
    engines: list[FakeEngine], clock: StepClock
) -> None:
    """A model's name and its aliases reach that model's engine, and name it in the answer."""
    models = registry(engines, clock)
    assert await use(models, "beta") == "beta"
    assert await use(models, "gamma-alias") == "gamma"
    assert await models.resolve("alpha-alias") == "alpha"
    assert [len(e.requests) for e in engines] == [0, 1, 1]


async def test_unknown_model_is_model_not_found_with_several(
    engines: list[FakeEngine], clock: StepClock
) -> None:
    """With several models, a name none of them has is ModelNotFound on param model."""
    models = registry(engines, clock)
    with pytest.raises(ModelNotFound) as caught:
        await models.submit(request("gpt-4"))
    assert caught.value.param == "model"
    assert "alpha, beta, gamma" in caught.value.message
    with pytest.raises(ModelNotFound):
        await models.resolve("gpt-4")


async def test_any_name_routes_to_the_only_model(clock: StepClock) -> None:
    """With one model, every name is its name, as llama-server does."""
    models = registry([FakeEngine(model_id="solo")], clock)
    assert await use(models, "gpt-4") == "solo"
    assert await models.resolve(None) == "solo"


async def test_a_request_naming_no_model_goes_to_the_first(
    engines: list[FakeEngine], clock: StepClock
) -> None:
    """The first model is the default: for labels, and for a request without a model."""
    models = registry(engines, clock)
    assert models.model_id == "alpha"
    assert await use(models, None) == "alpha"


async def test_models_lists_every_model_loaded_or_not(
    engines: list[FakeEngine], clock: StepClock
) -> None:
    """models() has every configured model, before any has loaded."""
    models = registry(engines, clock)
    assert [info.id for info in models.models()] == ["alpha", "beta", "gamma"]
    assert not any(engine.loaded for engine in engines)


async def test_start_loads_only_preloaded_models(clock: StepClock) -> None:
    """preload models load at start and readiness waits for them; lazy ones wait for use."""
    eager, lazy = FakeEngine(model_id="eager"), FakeEngine(model_id="lazy")
    models = ModelRegistry([ModelSpec(eager, preload=True), ModelSpec(lazy)], clock=clock)
    assert not models.stats().loaded
    await models.start()
    assert (eager.loaded, lazy.loaded, models.stats().loaded) == (True, False, True)
    await use(models, "lazy")
    assert lazy.starts == 1


async def test_concurrent_requests_share_one_load(clock: StepClock) -> None:
    """Requests that arrive while a model loads all wait for that one load."""
    gate = threading.Event()
    engine = FakeEngine(model_id="slow", start_gate=gate)
    models = ModelRegistry(
        [ModelSpec(engine), ModelSpec(FakeEngine(model_id="other"))], clock=clock
    )
    waiting = [asyncio.create_task(use(models, "slow")) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert models.stats().models[0].waiting == 5  # waiting for the load, not yet for a slot
    gate.set()
    assert await asyncio.gather(*waiting) == ["slow"] * 5
    assert engine.starts == 1
    assert models.stats().models[0].loads == 1


async def test_least_recently_used_idle_model_makes_room(
    engines: list[FakeEngine], clock: StepClock
) -> None:
    """At max_loaded_models, loading another model unloads the idle one used longest ago."""
    alpha, beta, gamma = engines
    models = registry(engines, clock, max_loaded=2)
    await use(models, "alpha")
    clock.now += 1
    await use(models, "beta")
    clock.now += 1
    await use(models, "alpha")  # beta is now the least recently used
    clock.now += 1
    await use(models, "gamma")
    assert (alpha.loaded, beta.loaded, gamma.loaded) == (True, False, True)
    assert models.stats().models[1].unloads == {"lru": 1}
    await use(models, "beta")  # and back: a reload
    assert beta.starts == 2
    assert sum(e.loaded for e in engines) == 2


async def test_idle_model_unloads_after_keep_alive(clock: StepClock) -> None:
    """A model unused for keep_alive seconds is unloaded; used again, it loads again."""
    engine = FakeEngine(model_id="m")
    models = registry([engine, FakeEngine(model_id="n")], clock, keep_alive=300)
    await use(models, "m")
    clock.now += 299
    await models.unload_idle()
    assert engine.loaded
    clock.now += 1
    await models.unload_idle()
    assert not engine.loaded
    assert models.stats().models[0].unloads == {"idle": 1}
    await use(models, "m")
    assert engine.starts == 2


async def test_sweeper_unloads_idle_models_on_its_own() -> None:
    """After start(), a background sweep unloads a model idle past keep_alive."""
    engine = FakeEngine(model_id="m")
    models = ModelRegistry([ModelSpec(engine, keep_alive=0)], sweep_interval_s=0.005)
    await models.start()
    await use(models, "m")
    for _ in range(200):
        if not engine.loaded:
            break
        await asyncio.sleep(0.005)
    assert not engine.loaded
    await models.stop()


async def test_no_keep_alive_keeps_a_model_loaded(clock: StepClock) -> None:
    """Without keep_alive a model stays in memory however long it idles."""
    engine = FakeEngine(model_id="m")
    models = registry([engine], clock)
    await use(models, "m")
    clock.now += 1e9
    await models.unload_idle()
    assert engine.loaded


async def test_a_model_with_requests_in_flight_is_never_unloaded(clock: StepClock) -> None:
    """keep_alive skips a busy model, and a load needing its room waits until it is idle."""
    busy, other = FakeEngine(model_id="busy", delay_s=0.01), FakeEngine(model_id="other")
    models = registry([busy, other], clock, max_loaded=1, keep_alive=0)
    generation = await models.submit(request("busy"))
    clock.now += 1000
    await models.unload_idle()
    assert busy.loaded
    waiter = asyncio.create_task(use(models, "other"))
    await asyncio.sleep(0.05)
    assert (busy.loaded, other.loaded, waiter.done()) == (True, False, False)
    await finish(generation)  # the last request of busy ends: now it may go
    assert await waiter == "other"
    assert (busy.loaded, other.loaded) == (False, True)


async def test_load_waits_for_a_busy_model_then_answers_503(clock: StepClock) -> None:
    """When every loaded model stays busy past busy_wait_s, the new request gets 503."""
    busy, other = FakeEngine(model_id="busy"), FakeEngine(model_id="other")
    models = registry([busy, other], clock, max_loaded=1, busy_wait_s=0.05)
    generation = await models.submit(request("busy"))
    with pytest.raises(ServiceUnavailable, match="max_loaded_models = 1"):
        await models.submit(request("other"))
    assert busy.loaded
    assert not other.loaded
    generation.cancel()
    assert await use(models, "other") == "other"


async def test_cancel_releases_the_model(clock: StepClock) -> None:
    """A cancelled generation no longer holds its model."""
    first, second = FakeEngine(model_id="first"), FakeEngine(model_id="second")
    models = registry([first, second], clock, max_loaded=1, busy_wait_s=0.05)
    generation = await models.submit(request("first"))
    generation.cancel()
    generation.cancel()  # twice is once
    assert await use(models, "second") == "second"
    assert not first.loaded


async def test_failed_lazy_load_fails_the_request_and_is_retried(clock: StepClock) -> None:
    """A load that fails answers its requests with the error; the next request tries again."""
    broken = FakeEngine(model_id="broken", start_error=ModelLoadError("bad file"))
    models = registry([FakeEngine(model_id="fine"), broken], clock)
    for _ in range(2):
        with pytest.raises(ModelLoadError, match="bad file"):
            await models.submit(request("broken"))
    assert models.stats().models[1].load_failures == 2
    assert await use(models, "fine") == "fine"


async def test_failed_preload_fails_start(clock: StepClock) -> None:
    """An eager model that cannot load fails start(), so the server reports it and exits."""
    broken = FakeEngine(model_id="broken", start_error=ModelLoadError("bad file"))
    models = ModelRegistry([ModelSpec(broken, preload=True)], clock=clock)
    with pytest.raises(ModelLoadError):
        await models.start()
    assert not models.stats().loaded


async def test_model_unloaded_after_resolve_loads_again_on_submit(clock: StepClock) -> None:
    """A model evicted between a chat's resolve and its submit still renders, then reloads."""
    first, second = FakeEngine(model_id="first"), FakeEngine(model_id="second")
    models = registry([first, second], clock, max_loaded=1)
    assert await models.resolve("first") == "first"
    await use(models, "second")  # takes first's room
    assert not first.loaded
    models.render_chat([{"role": "user", "content": "hi"}], model="first")
    assert await use(models, "first") == "first"
    assert first.starts == 2


async def test_stats_report_each_model(engines: list[FakeEngine], clock: StepClock) -> None:
    """stats() sums the models and lists each: loaded, loads, running."""
    models = registry(engines, clock)
    generation = await models.submit(request("beta"))
    stats = models.stats()
    assert stats.running == 1
    assert [(m.id, m.loaded, m.loads, m.running) for m in stats.models] == [
        ("alpha", False, 0, 0),
        ("beta", True, 1, 1),
        ("gamma", False, 0, 0),
    ]
    generation.cancel()


async def test_stop_unloads_every_loaded_model(engines: list[FakeEngine], clock: StepClock) -> None:
    """stop() leaves nothing in memory."""
    models = registry(engines, clock)
    await use(models, "alpha")
    await use(models, "gamma")
    await models.stop()
    assert not any(engine.loaded for engine in engines)


async def test_requests_after_stop_are_503_and_load_nothing(
    engines: list[FakeEngine], clock: StepClock
) -> None:
    """A request reaching the registry after stop() (a drain whose grace period is over) is
    a 503: it does not load its model back."""
    models = registry(engines, clock)
    await use(models, "alpha")
    await models.stop()
    with pytest.raises(ServiceUnavailable, match="shutting down"):
        await models.submit(request("beta"))
    with pytest.raises(ServiceUnavailable, match="shutting down"):
        await models.tokenize_text("hi", add_special=False, model="alpha")
    assert not any(engine.loaded for engine in engines)


async def test_render_chat_uses_the_named_models_template(
    engines: list[FakeEngine], clock: StepClock
) -> None:
    """render_chat goes to the model the request named."""
    models = registry(engines, clock)
    await models.resolve("beta")
    models.render_chat([{"role": "user", "content": "hi"}], model="beta")
    assert [len(e.chats) for e in engines] == [0, 1, 0]


def test_two_models_with_one_name_are_refused() -> None:
    """A name or alias that two models share is a configuration error."""
    specs = [
        ModelSpec(FakeEngine(model_id="a")),
        ModelSpec(FakeEngine(model_id="b"), aliases=("a",)),
    ]
    with pytest.raises(ConfigError, match="'a'"):
        ModelRegistry(specs)


def fake_engine_of(settings: AppSettings) -> Engine:
    return FakeEngine(model_id=settings.model.name or "stem")


def test_registry_from_one_model_section_preloads_it() -> None:
    """A plain [model] is one preloaded model, kept forever by default."""
    models = registry_from_settings(AppSettings(model=ModelSettings(name="one")), fake_engine_of)
    assert [info.id for info in models.models()] == ["one"]
    assert models.specs == (ModelSpec(models.specs[0].engine, preload=True),)


def test_registry_from_models_entries_inherits_the_server_keep_alive() -> None:
    """[[models]] keep their aliases; keep_alive falls back to [server]'s, -1 means never."""
    settings = AppSettings(
        server=ServerSettings(keep_alive=60, max_loaded_models=2),
        cache=CacheSettings(disk_dir="/kv"),
        models=(
            ServedModelSettings(name="a", model_path="a.gguf", aliases=("x",)),
            ServedModelSettings(name="org/b", model_path="b.gguf", keep_alive=-1),
            ServedModelSettings(name="c", model_path="c.gguf", keep_alive=5, preload=True),
        ),
    )
    built: list[AppSettings] = []

    def make(own: AppSettings) -> Engine:
        built.append(own)
        return fake_engine_of(own)

    models = registry_from_settings(settings, make)
    specs = models.specs
    assert [(s.aliases, s.keep_alive, s.preload) for s in specs] == [
        (("x",), 60.0, False),
        ((), None, False),
        ((), 5.0, True),
    ]
    # Each model's prefix cache gets a directory of its own on the disk tier.
    assert [own.cache.disk_dir for own in built] == [
        f"/kv/{cache_folder_name('a')}",
        f"/kv/{cache_folder_name('org/b')}",
        f"/kv/{cache_folder_name('c')}",
    ]
    assert cache_folder_name("org/b").startswith("org_b-")


async def test_embeddings_and_tokens_go_to_the_named_model(
    engines: list[FakeEngine], clock: StepClock
) -> None:
    """embed, tokenize_text and token_pieces load and use the model the request names."""
    alpha, beta, gamma = engines
    models = registry(engines, clock, max_loaded=1)
    embedded = await models.embed(["some text"], model="beta-alias")
    assert embedded.prompt_tokens == 2
    assert await models.tokenize_text("hi", add_special=False, model="gamma") == [104, 105]
    assert await models.token_pieces([104], model="alpha") == [b"h"]
    assert (alpha.starts, beta.starts, gamma.starts) == (1, 1, 1)
    assert models.stats().models[0].running == 0  # held only for the call


async def test_render_chat_passes_the_tools_on(engines: list[FakeEngine], clock: StepClock) -> None:
    """The tools of a chat reach the named model's template."""
    models = registry(engines, clock)
    tool = {"type": "function", "function": {"name": "f"}}
    models.render_chat([{"role": "user", "content": "hi"}], model="gamma", tools=[tool])
    assert engines[2].tools == [[tool]]


PATH_LIKE_NAMES = ("..", ".", "...", "../x", "a/../../b", "/etc", "a\\..\\b", "~", "\x00", "org/b")


@given(st.text(max_size=300))
def test_cache_folder_of_any_model_name_is_one_plain_folder(name: str) -> None:
    """Whatever a configured name holds, its disk-cache folder is one plain child of disk_dir:
    only [A-Za-z0-9._-], never a leading dot (so never . or ..), never too long."""
    folder = cache_folder_name(name)
    assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,90}", folder), folder
    assert os.path.normpath(os.path.join("/kv", folder)) == f"/kv/{folder}"


@pytest.mark.parametrize("name", PATH_LIKE_NAMES)
def test_path_like_model_name_gets_a_folder_inside_disk_dir(name: str) -> None:
    """A [[models]] name like .., ../x or /etc gets its cache inside disk_dir, never above it."""
    settings = AppSettings(
        cache=CacheSettings(disk_dir="/kv"),
        models=(
            ServedModelSettings(name=name, model_path="a.gguf"),
            ServedModelSettings(name="other", model_path="b.gguf"),
        ),
    )
    built: list[AppSettings] = []

    def make(own: AppSettings) -> Engine:
        built.append(own)
        return fake_engine_of(own)

    registry_from_settings(settings, make)
    disk_dir = built[0].cache.disk_dir
    assert disk_dir is not None
    assert Path(os.path.normpath(disk_dir)).parent == Path("/kv")


def test_distinct_model_names_get_distinct_cache_folders() -> None:
    """Names that read alike once cleaned (org/b, org_b, ORG_B) keep folders of their own."""
    names = [*PATH_LIKE_NAMES, "org_b", "ORG_B", "Org_b", "org:b", "model", ""]
    folders = {cache_folder_name(name).lower() for name in names}
    assert len(folders) == len(names)


def sized(engines: Sequence[FakeEngine], gib: Sequence[float]) -> list[ModelSpec]:
    """Specs whose memory estimates are ``gib`` GiB each."""
    return [
        ModelSpec(engine, need=ModelNeed(engine.model_id, int(g * GiB), 0, 0, 0))
        for engine, g in zip(engines, gib, strict=True)
    ]


def guard(limit_gib: float) -> MemoryGuard:
    return MemoryGuard(read_limit=lambda: MemoryLimit(int(limit_gib * GiB), "test"), process=0)


async def test_load_over_the_memory_limit_unloads_an_idle_model_first(
    engines: list[FakeEngine], clock: StepClock
) -> None:
    """8 + 8 GiB do not fit 12 GiB: loading the second unloads the idle first, as LRU does."""
    alpha, beta, _ = engines
    models = ModelRegistry(sized(engines, (8, 8, 1)), clock=clock, memory=guard(12))
    await use(models, "alpha")
    await use(models, "gamma")  # 8 + 1 fits beside it
    assert (alpha.loaded, engines[2].loaded) == (True, True)
    await use(models, "beta")
    assert (alpha.loaded, beta.loaded) == (False, True)
    assert models.stats().models[0].unloads == {"lru": 1}


async def test_load_over_the_memory_limit_beside_a_busy_model_is_503(
    engines: list[FakeEngine], clock: StepClock
) -> None:
    """When the models holding the memory stay busy, the load fails with insufficient_memory."""
    models = ModelRegistry(
        sized(engines, (8, 8, 1)), clock=clock, memory=guard(12), busy_wait_s=0.05
    )
    generation = await models.submit(request("alpha"))
    with pytest.raises(InsufficientMemory, match="cannot load the model 'beta'") as caught:
        await models.submit(request("beta"))
    assert caught.value.status == 503
    assert not engines[1].loaded
    generation.cancel()
    assert await use(models, "beta") == "beta"


async def test_model_larger_than_the_limit_alone_fails_at_once(clock: StepClock) -> None:
    """A model that cannot fit even alone is refused without waiting or loading."""
    engine = FakeEngine(model_id="huge")
    models = ModelRegistry(sized([engine], (20,)), clock=clock, memory=guard(12), busy_wait_s=60)
    with pytest.raises(InsufficientMemory, match="Resource error: Insufficient memory"):
        await asyncio.wait_for(models.submit(request("huge")), 1)
    assert engine.starts == 0
