"""DrainingServer: SIGTERM drains instead of stopping; a failed load stops the server."""

from __future__ import annotations

import gc
import signal

import pytest
import uvicorn

from llmserve.api.lifecycle import Lifecycle, Phase
from llmserve.api.server import DrainingServer, settle_heap
from llmserve.engine.fake import FakeEngine


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("never called")


@pytest.fixture(name="lifecycle")
def fixture_lifecycle() -> Lifecycle:
    return Lifecycle(phase=Phase.READY)


def server_for(
    lifecycle: Lifecycle, grace_s: float = 30.0, cut_wait_s: float = 2.0
) -> DrainingServer:
    return DrainingServer(
        uvicorn.Config(_app),
        lifecycle,
        grace_s=grace_s,
        cut_wait_s=cut_wait_s,
        settle=lambda: None,  # freezing the test process's heap would outlive the test
    )


async def test_the_heap_is_settled_once_at_the_first_tick_after_the_load() -> None:
    lifecycle = Lifecycle()
    calls: list[int] = []
    server = DrainingServer(
        uvicorn.Config(_app), lifecycle, grace_s=30.0, settle=lambda: calls.append(1)
    )
    await server.on_tick(0)
    assert calls == [], "nothing to settle while the model loads"
    lifecycle.loaded()
    await server.on_tick(1)
    await server.on_tick(2)
    assert calls == [1]


def test_settling_the_heap_freezes_what_startup_built() -> None:
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_sigterm_drains_and_keeps_serving(lifecycle: Lifecycle) -> None:
    """The first SIGTERM starts draining; with a request in flight the server goes on."""
    lifecycle.in_flight = 1
    server = server_for(lifecycle)
    server.handle_exit(signal.SIGTERM, None)
    assert lifecycle.phase is Phase.DRAINING
    assert not await server.on_tick(0)


async def test_drained_server_stops(lifecycle: Lifecycle) -> None:
    """Once the last request in flight has finished, the next tick stops the server."""
    lifecycle.in_flight = 1
    server = server_for(lifecycle)
    server.handle_exit(signal.SIGTERM, None)
    lifecycle.in_flight = 0
    assert await server.on_tick(1)


async def test_grace_period_over_stops_the_engine_before_the_server(lifecycle: Lifecycle) -> None:
    """When the grace period is over the engine is stopped first (what is in flight gets its
    503), and the server stops once that is done: requests still in flight do not hold it."""
    engine = FakeEngine(loaded=True)
    lifecycle.engine = engine
    lifecycle.in_flight = 2
    server = server_for(lifecycle, grace_s=0.0, cut_wait_s=0.0)
    server.handle_exit(signal.SIGTERM, None)
    assert not await server.on_tick(1)
    assert server.cutting is not None
    await server.cutting
    assert engine.stopped
    assert await server.on_tick(2)


async def test_requests_ending_after_the_cut_stop_the_server_at_once(
    lifecycle: Lifecycle,
) -> None:
    """Once the cut has made the last request answer, the server need not wait any longer."""
    lifecycle.engine = FakeEngine(loaded=True)
    lifecycle.in_flight = 1
    server = server_for(lifecycle, grace_s=0.0, cut_wait_s=60.0)
    server.handle_exit(signal.SIGTERM, None)
    await server.on_tick(1)
    assert server.cutting is not None
    await server.cutting
    assert not await server.on_tick(2)
    lifecycle.in_flight = 0
    assert await server.on_tick(3)


def test_second_sigterm_stops_at_once(lifecycle: Lifecycle) -> None:
    """A second SIGTERM ends the wait for requests in flight."""
    lifecycle.in_flight = 1
    server = server_for(lifecycle)
    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit


def test_sigint_keeps_uvicorns_behaviour(lifecycle: Lifecycle) -> None:
    """Ctrl+C stops the server without a drain."""
    server = server_for(lifecycle)
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit
    assert lifecycle.phase is Phase.READY


async def test_failed_load_stops_the_server() -> None:
    """When the model load has failed, the next tick stops the server."""
    lifecycle = Lifecycle()
    lifecycle.failed(RuntimeError("boom"))
    assert await server_for(lifecycle).on_tick(0)


async def test_loading_server_keeps_serving() -> None:
    """A load in progress does not stop the server."""
    assert not await server_for(Lifecycle()).on_tick(0)
