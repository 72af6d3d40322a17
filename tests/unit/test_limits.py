"""Request limits: the per-client rate limit (token buckets) and the body size limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from llmserve.api.ratelimit import RateLimiter
from llmserve.config import ServerSettings
from llmserve.engine.fake import FakeEngine
from llmserve.errors import RateLimitExceeded
from tests.support.doubles import FixedClock, fake_app

KEY = "sk-limits"
BODY = {"prompt": "hello"}


@pytest.fixture(name="clock")
def fixture_clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(name="limiter")
def fixture_limiter(clock: FixedClock) -> RateLimiter:
    return RateLimiter(3, clock)


@pytest.fixture(name="limited")
def fixture_limited(clock: FixedClock) -> Iterator[TestClient[Any]]:
    """A client of a server allowing 2 requests a minute per key."""
    server = ServerSettings(api_key=KEY, rate_limit_rpm=2)
    with TestClient(fake_app(server=server, clock=clock)) as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        yield client


def test_a_burst_up_to_the_rate_is_allowed(limiter: RateLimiter) -> None:
    """rate_limit_rpm requests may come at once."""
    for _ in range(3):
        limiter.acquire("a")


def test_beyond_the_rate_is_refused_with_the_wait(limiter: RateLimiter) -> None:
    """The request after the burst is refused, saying when a token is back (60/3 = 20 s)."""
    for _ in range(3):
        limiter.acquire("a")
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.acquire("a")
    assert caught.value.retry_after_s == 20


def test_tokens_come_back_with_time(limiter: RateLimiter, clock: FixedClock) -> None:
    """After 60/rpm seconds one more request is allowed, and only one."""
    for _ in range(3):
        limiter.acquire("a")
    clock.advance(20.0)
    limiter.acquire("a")
    with pytest.raises(RateLimitExceeded):
        limiter.acquire("a")


def test_clients_have_their_own_buckets(limiter: RateLimiter) -> None:
    """One client spending its budget does not limit another."""
    for _ in range(3):
        limiter.acquire("a")
    limiter.acquire("b")


def test_idle_clients_are_forgotten_past_the_bound(clock: FixedClock) -> None:
    """Memory stays bounded under many clients: full (idle) buckets are dropped first."""
    limiter = RateLimiter(60, clock, max_clients=2)
    for client in ("a", "b", "c", "d"):
        limiter.acquire(client)
        clock.advance(1.0)
    assert len(limiter) <= 2


def test_http_over_the_rate_is_a_429_with_retry_after(limited: TestClient[Any]) -> None:
    """The third request in a minute at 2 rpm is 429 rate_limit_exceeded with Retry-After."""
    assert limited.post("/v1/completions", json=BODY).status_code == 200
    assert limited.post("/v1/completions", json=BODY).status_code == 200
    response = limited.post("/v1/completions", json=BODY)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")


def test_ops_routes_are_not_rate_limited(limited: TestClient[Any]) -> None:
    """Probes and scrapes never count against the limit."""
    for _ in range(5):
        assert limited.get("/readyz").status_code == 200
    assert limited.post("/v1/completions", json=BODY).status_code == 200


def test_wrong_keys_do_not_spend_the_keys_budget(limited: TestClient[Any]) -> None:
    """Unauthenticated requests are refused before they are counted."""
    for _ in range(3):
        bad = limited.post("/v1/completions", json=BODY, headers={"Authorization": "Bearer x"})
        assert bad.status_code == 401
    assert limited.post("/v1/completions", json=BODY).status_code == 200


def test_body_over_max_body_mb_is_a_413_envelope() -> None:
    """[server] max_body_mb = 1 refuses a 1.5 MiB body with the OpenAI envelope."""
    with TestClient(fake_app(server=ServerSettings(max_body_mb=1))) as client:
        response = client.post("/v1/completions", content=b"x" * (3 << 19))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_body_under_max_body_mb_is_served() -> None:
    """A body just under the limit is read and served."""
    prompt = "word " * ((1 << 20) // 5 - 100)
    engine = FakeEngine(n_ctx=1 << 20)
    with TestClient(fake_app(engine, server=ServerSettings(max_body_mb=1))) as client:
        assert client.post("/v1/completions", json={"prompt": prompt}).status_code == 200
