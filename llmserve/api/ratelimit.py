"""Optional per-client rate limit on /v1: an in-memory token bucket per API key or client IP.

``[server] rate_limit_rpm`` requests a minute, with bursts up to that many. A client is its API
key when the server checks keys (hashed: keys are never kept or logged), else its IP address as
uvicorn reports it (behind a proxy, see uvicorn's ``--forwarded-allow-ips``). Beyond the limit a
request is answered 429 rate_limit_exceeded with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from attrs import define
from litestar.connection import ASGIConnection

from llmserve.api.clock import Clock
from llmserve.errors import RateLimitExceeded

# Buckets kept before full (idle) ones are dropped: bounds memory under many client IPs.
MAX_CLIENTS = 10_000


@define
class TokenBucket:
    """``capacity`` tokens, refilled at ``per_s`` tokens a second; one request takes one."""

    capacity: float
    per_s: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_s)
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 when taken, else the seconds until one is there."""
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_s


class RateLimiter:
    """Token buckets by client, all with the same rate."""

    def __init__(self, per_minute: int, clock: Clock, *, max_clients: int = MAX_CLIENTS) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, TokenBucket] = {}

    def acquire(self, client: str) -> None:
        """Count one request of ``client``; raise RateLimitExceeded when it has none left."""
        now = self._clock.monotonic()
        bucket = self._buckets.get(client)
        if bucket is None:
            self._prune(now)
            capacity = float(self._per_minute)
            bucket = TokenBucket(capacity, self._per_minute / 60.0, capacity, now)
            self._buckets[client] = bucket
        wait = bucket.take(now)
        if wait > 0.0:
            raise RateLimitExceeded(
                f"Rate limit reached: {self._per_minute} requests per minute. "
                f"Retry in {math.ceil(wait)} s.",
                retry_after_s=math.ceil(wait),
            )

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        if len(self._buckets) < self._max_clients:
            return
        for client, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.capacity:
                del self._buckets[client]  # a full bucket is the same as a new one
        while len(self._buckets) >= self._max_clients:
            oldest = min(self._buckets, key=lambda c: self._buckets[c].updated)
            del self._buckets[oldest]


def client_of(
    connection: ASGIConnection[Any, Any, Any, Any], keyed: bool, *, key: str | None = None
) -> str:
    """The client a request is counted against: its (checked) key when keys are on, else its
    address. ``key``: the presented key, when it came in another header than Authorization."""
    if keyed:
        presented = (
            key
            if key is not None
            else connection.headers.get("authorization", "").partition(" ")[2].strip()
        )
        return "key:" + hashlib.sha256(presented.encode()).hexdigest()[:32]
    client = connection.client
    return "ip:" + (client.host if client is not None else "unknown")
