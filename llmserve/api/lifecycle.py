"""The server's phase — loading, ready, draining, failed — and its in-flight /v1 requests.

The model loads in the background so that the server answers probes at once: /readyz says 503
until the phase is ``ready``, and /v1 routes refuse work with 503 service_unavailable unless it
is. The process entry point (``llmserve.api.server``) reads the phase on every tick: it ends the
server when the load failed, and after SIGTERM when no /v1 request is left in flight, or when
the grace period is over: then ``cut`` stops the engine first, which ends every generation still
running or queued with 503 service_unavailable (an error event in a stream), so that no client
is left with a response cut off mid-body.
"""

from __future__ import annotations

import enum
import logging

from attrs import define

from llmserve.engine.protocol import Engine
from llmserve.errors import LLMServeError, ServiceUnavailable

log = logging.getLogger("llmserve.http")  # the logger name is part of the log format


class Phase(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


_REFUSALS = {
    Phase.LOADING: "the model is still loading; retry shortly",
    Phase.DRAINING: "the server is shutting down",
    Phase.FAILED: "the model failed to load",
}


@define
class Lifecycle:
    """Where the server is in its life; mutated only on the event loop's thread."""

    phase: Phase = Phase.LOADING
    error: BaseException | None = None  # why the load failed
    in_flight: int = 0  # /v1 requests between their arrival and their last byte
    engine: Engine | None = None  # what serves them, from load_engine on; what cut() stops

    def loaded(self) -> None:
        if self.phase is Phase.LOADING:  # a drain that began during the load wins
            self.phase = Phase.READY

    def failed(self, error: BaseException) -> None:
        self.error = error
        self.phase = Phase.FAILED

    def drain(self) -> None:
        """Refuse new work from now on; requests in flight carry on."""
        if self.phase is not Phase.FAILED:
            self.phase = Phase.DRAINING

    @property
    def drained(self) -> bool:
        return self.phase is Phase.DRAINING and self.in_flight == 0

    async def cut(self) -> None:
        """End the work in flight now (the drain's grace period is over): stop the engine."""
        if self.engine is not None:
            await self.engine.stop()

    def check_ready(self) -> None:
        """Raise ServiceUnavailable unless new requests may be served."""
        if self.phase is not Phase.READY:
            raise ServiceUnavailable(_REFUSALS[self.phase])


async def load_engine(engine: Engine, lifecycle: Lifecycle) -> None:
    """Start ``engine`` and record the outcome in ``lifecycle``; never raises an Exception."""
    lifecycle.engine = engine
    try:
        await engine.start()
    except Exception as exc:
        if isinstance(exc, LLMServeError):
            log.error("model load failed: %s", exc.message)
        else:
            log.error("model load failed", exc_info=exc)
        lifecycle.failed(exc)
    else:
        lifecycle.loaded()
