"""The uvicorn server of ``llmserve serve``: drains on SIGTERM, ends when the model load fails.

uvicorn stops listening at the first SIGTERM. A server behind a load balancer should instead
keep answering while the balancer notices: from SIGTERM on, /readyz says 503 draining, new /v1
requests get 503 service_unavailable, and requests in flight run to their end. The server exits
(status 0) once none is left, or when the grace period is over; a second SIGTERM ends the wait.
SIGINT (Ctrl+C) keeps uvicorn's behaviour.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import uvicorn

from llmserve.http.lifecycle import Lifecycle, Phase

log = logging.getLogger("llmserve.http")


class DrainingServer(uvicorn.Server):
    """uvicorn's Server, steered by the app's ``Lifecycle``."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, *, grace_s: float) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.grace_s = grace_s
        self.drain_deadline: float | None = None

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
        if lifecycle.phase is Phase.FAILED:
            self.should_exit = True
        elif self.drain_deadline is not None and not self.should_exit:
            if lifecycle.drained:
                self.should_exit = True
            elif time.monotonic() >= self.drain_deadline:
                log.warning(
                    "grace period over: %d request(s) still in flight are cut",
                    lifecycle.in_flight,
                    extra={"in_flight": lifecycle.in_flight},
                )
                self.should_exit = True
        return await super().on_tick(counter)
