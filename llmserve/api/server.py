"""The uvicorn server of ``llmserve serve``: drains on SIGTERM, ends when the model load fails.

uvicorn stops listening at the first SIGTERM. A server behind a load balancer should instead
keep answering while the balancer notices: from SIGTERM on, /readyz says 503 draining, new /v1
requests get 503 service_unavailable, and requests in flight run to their end. The server exits
(status 0) once none is left; a second SIGTERM ends the wait. When the grace period is over,
the engine is stopped first, so that what is still in flight ends with a clean 503 (an error
event in a stream) within a decode step, rather than with a connection closed mid-body when
uvicorn gives up on it. SIGINT (Ctrl+C) keeps uvicorn's behaviour.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

import attrs
import uvicorn

from llmserve.api.lifecycle import Lifecycle, Phase

log = logging.getLogger("llmserve.http")  # the logger name is part of the log format

# After the grace period's cut, how long requests get to send their 503 and close.
CUT_WAIT_S = 2.0


def settle_heap() -> None:
    """Take what startup built (modules, routes, templates, the model's tables) out of the
    cyclic collector's reach: otherwise every full collection walks all of it with the event loop
    and the worker's Python held, 30-50 ms every few seconds under load (measured on the demo
    model, 1-token completions at 8 connections): a tenth of a request's time, at random."""
    gc.collect()
    gc.freeze()


@attrs.frozen
class EventLoopChoice:
    """uvicorn's event loop and HTTP parser: the fast ones when installed, else the stdlib's.

    uvloop and httptools are dependencies, but may be missing on a platform without wheels
    (Windows has no uvloop). Measured with wrk on a 2-core box (32 connections, GET /ping):
    asyncio + h11 answered ~700 requests/s at 13% of a core (every request stalled ~45 ms),
    uvloop + h11 ~6,900, uvloop + httptools ~12,800 (issue 19).
    """

    loop: str  # "uvloop" or "asyncio"
    http: str  # "httptools" or "h11"

    @property
    def fast(self) -> bool:
        return self.loop == "uvloop" and self.http == "httptools"


def choose_event_loop(installed: Callable[[str], bool] | None = None) -> EventLoopChoice:
    """The fastest event loop and HTTP parser that ``installed`` says are importable."""
    present = installed or _importable
    return EventLoopChoice(
        loop="uvloop" if present("uvloop") else "asyncio",
        http="httptools" if present("httptools") else "h11",
    )


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class DrainingServer(uvicorn.Server):
    """uvicorn's Server, steered by the app's ``Lifecycle``."""

    def __init__(
        self,
        config: uvicorn.Config,
        lifecycle: Lifecycle,
        *,
        grace_s: float,
        cut_wait_s: float = CUT_WAIT_S,
        settle: Callable[[], None] = settle_heap,
    ) -> None:
        """``settle``: called once, at the first tick that finds the model loaded."""
        super().__init__(config)
        self.settle: Callable[[], None] | None = settle
        self.lifecycle = lifecycle
        self.grace_s = grace_s
        self.cut_wait_s = cut_wait_s
        self.drain_deadline: float | None = None
        self.cutting: asyncio.Future[None] | None = None  # the engine's stop, once grace is over
        self.exit_deadline: float | None = None  # set when the cut is done

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.should_exit:
            super().handle_exit(sig, frame)
        elif self.drain_deadline is None:
            # Not passed on to uvicorn, which would re-raise SIGTERM at exit: a drained server
            # exits with status 0.
            self.drain_deadline = time.monotonic() + self.grace_s
            self.lifecycle.drain()
            log.info(
                "SIGTERM: draining %d request(s), at most %g s",
                self.lifecycle.in_flight,
                self.grace_s,
                extra={"in_flight": self.lifecycle.in_flight},
            )
        else:
            log.info("second SIGTERM: stopping without waiting further")
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        lifecycle = self.lifecycle
        if lifecycle.phase is Phase.READY and self.settle is not None:
            self.settle, settle = None, self.settle
            settle()
        if lifecycle.phase is Phase.FAILED:
            self.should_exit = True
        elif self.drain_deadline is not None and not self.should_exit:
            now = time.monotonic()
            if self.cutting is not None and not self.cutting.done():
                pass  # exiting now would have the lifespan stop the engine a second time
            elif lifecycle.drained or (
                self.exit_deadline is not None and now >= self.exit_deadline
            ):
                self.should_exit = True
            elif self.cutting is None and now >= self.drain_deadline:
                log.warning(
                    "grace period over: %d request(s) still in flight end with 503",
                    lifecycle.in_flight,
                    extra={"in_flight": lifecycle.in_flight},
                )
                self.cutting = asyncio.ensure_future(self._cut())
        return await super().on_tick(counter)

    async def _cut(self) -> None:
        try:
            await self.lifecycle.cut()
        except Exception as exc:
            log.error("stopping the engine failed", exc_info=exc)
        # The requests left have their 503 now; one stuck elsewhere (a render, a tokenize) is
        # not waited for long.
        self.exit_deadline = time.monotonic() + self.cut_wait_s
