"""What requests are stamped with: the clock and the ids, injected so tests can fix them."""

from __future__ import annotations

import secrets
import time
from typing import Protocol

from attrs import frozen


class Clock(Protocol):
    """Wall time for ``created`` fields; monotonic time for durations and uptime."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class IdFactory(Protocol):
    """Ids of responses and requests, in OpenAI's and Anthropic's prefixes."""

    def chat_completion_id(self) -> str: ...

    def completion_id(self) -> str: ...

    def request_id(self) -> str: ...

    def tool_call_id(self) -> str: ...

    def message_id(self) -> str:
        """An Anthropic Messages response id (``msg_``)."""
        ...

    def tool_use_id(self) -> str:
        """An Anthropic tool_use block id (``toolu_``)."""
        ...

    def response_id(self) -> str:
        """A Responses-API response id (``resp_``)."""
        ...

    def item_id(self, prefix: str) -> str:
        """A Responses-API output item id (``msg_``, ``fc_``, ``rs_``)."""
        ...


@frozen
class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@frozen
class RandomIds:
    """Unguessable ids: 96 random bits each."""

    def chat_completion_id(self) -> str:
        return f"chatcmpl-{secrets.token_hex(12)}"

    def completion_id(self) -> str:
        return f"cmpl-{secrets.token_hex(12)}"

    def request_id(self) -> str:
        return f"req_{secrets.token_hex(12)}"

    def tool_call_id(self) -> str:
        return f"call_{secrets.token_hex(12)}"

    def message_id(self) -> str:
        return f"msg_{secrets.token_hex(12)}"

    def tool_use_id(self) -> str:
        return f"toolu_{secrets.token_hex(12)}"

    def response_id(self) -> str:
        return f"resp_{secrets.token_hex(24)}"

    def item_id(self, prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(24)}"
