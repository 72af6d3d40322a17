"""Deterministic stand-ins for the app's clock and id factory, and an app built on them."""

from __future__ import annotations

import itertools

from attrs import define, field
from litestar import Litestar

from llmserve.api.app import create_app
from llmserve.api.lifecycle import Lifecycle
from llmserve.config import ServerSettings, Settings
from llmserve.engine.fake import FakeEngine
from llmserve.engine.protocol import Engine


@define
class FixedClock:
    """Wall time stands still; monotonic time moves only when a test advances it."""

    wall: float = 1_700_000_000.0
    mono: float = 1_000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@define
class CountingIds:
    """Ids numbered from 1, in OpenAI's and Anthropic's prefixes."""

    _counter: itertools.count[int] = field(factory=lambda: itertools.count(1))

    def chat_completion_id(self) -> str:
        return f"chatcmpl-{next(self._counter)}"

    def completion_id(self) -> str:
        return f"cmpl-{next(self._counter)}"

    def request_id(self) -> str:
        return f"req_{next(self._counter)}"

    def tool_call_id(self) -> str:
        return f"call_{next(self._counter)}"

    def message_id(self) -> str:
        return f"msg_{next(self._counter)}"

    def tool_use_id(self) -> str:
        return f"toolu_{next(self._counter)}"

    def response_id(self) -> str:
        return f"resp_{next(self._counter)}"

    def item_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._counter)}"


def fake_app(
    engine: Engine | None = None,
    *,
    api_key: str | None = None,
    clock: FixedClock | None = None,
    server: ServerSettings | None = None,
    lifecycle: Lifecycle | None = None,
) -> Litestar:
    """An llmserve app over a FakeEngine (or ``engine``), with a fixed clock and counting ids.

    ``server`` replaces the server settings (``api_key`` is then ignored).
    """
    settings = Settings(server=server if server is not None else ServerSettings(api_key=api_key))
    return create_app(
        settings,
        engine=engine if engine is not None else FakeEngine(),
        clock=clock if clock is not None else FixedClock(),
        ids=CountingIds(),
        lifecycle=lifecycle,
    )
