"""Chat templates rendered off the event loop, on a few threads of their own.

A template is model-supplied code: the sandbox (``prompt/sandbox.py``) bounds one render to 1 s
and 1M steps, but a render on the event loop would stall every other request, probes included,
for that long. Renders get their own small pool rather than asyncio's default one, so a burst
of slow templates queues behind itself, not in front of tokenizing, embeddings or model loads.
Rendering is pure Python holding the GIL: more threads than two would add no throughput.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llmserve.engine.protocol import Engine

RENDER_THREADS = 2


class TemplateRenderer:
    """Runs ``engine.render_chat`` on its own threads; one per app, closed with it."""

    def __init__(self, threads: int = RENDER_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="llmserve-render")

    async def render(
        self,
        engine: Engine,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str,
        tools: Sequence[Mapping[str, Any]] | None,
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        call = functools.partial(
            engine.render_chat, messages, model=model, tools=tools, variables=variables
        )
        # The request's context (its request_id for logs) goes along, as with to_thread.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, context.run, call)

    def close(self) -> None:
        # A render in progress ends by its own 1 s bound; nothing waits for it.
        self._pool.shutdown(wait=False, cancel_futures=True)
