"""The bearer-key guard on /v1, and the routes it leaves open."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from llmserve.api.auth import INCORRECT_KEY, MISSING_KEY, check_bearer
from llmserve.errors import AuthenticationFailed
from tests.support.doubles import fake_app

KEY = "sk-test-key"


@pytest.fixture(name="client")
def fixture_client() -> Iterator[TestClient[Any]]:
    with TestClient(fake_app(api_key=KEY)) as client:
        yield client


def test_correct_bearer_key_passes() -> None:
    """Authorization: Bearer <key> is accepted."""
    check_bearer(f"Bearer {KEY}", KEY)


def test_scheme_is_case_insensitive() -> None:
    """'bearer' in lower case is the same scheme."""
    check_bearer(f"bearer {KEY}", KEY)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", f"Basic {KEY}", KEY])
def test_absent_or_malformed_header_is_missing_key(header: str | None) -> None:
    """No usable bearer credential is reported as a missing key."""
    with pytest.raises(AuthenticationFailed, match="Missing API key"):
        check_bearer(header, KEY)


def test_wrong_key_is_incorrect() -> None:
    """A bearer credential that is not the key is an incorrect key."""
    with pytest.raises(AuthenticationFailed, match="Incorrect API key"):
        check_bearer("Bearer sk-other", KEY)


def test_non_ascii_key_is_compared_without_crashing() -> None:
    """Keys outside ASCII are compared as bytes (compare_digest refuses non-ASCII str)."""
    check_bearer("Bearer clé", "clé")
    with pytest.raises(AuthenticationFailed):
        check_bearer("Bearer cle", "clé")


def test_v1_without_key_is_401_envelope(client: TestClient[Any]) -> None:
    """A /v1 request without a key gets 401 authentication_error invalid_api_key."""
    response = client.get("/v1/models")
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": MISSING_KEY,
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def test_v1_with_wrong_key_is_401_incorrect(client: TestClient[Any]) -> None:
    """A wrong key is refused with the incorrect-key message."""
    response = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == INCORRECT_KEY


def test_v1_with_right_key_is_served(client: TestClient[Any]) -> None:
    """The right key reaches the route."""
    body = {"messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/ping", "/livez", "/readyz", "/metrics"])
def test_ops_routes_stay_open_with_a_key_set(client: TestClient[Any], path: str) -> None:
    """Probes and scrapes need no key."""
    assert client.get(path).status_code == 200


def test_no_key_configured_means_no_auth() -> None:
    """Without server.api_key, /v1 is open."""
    with TestClient(fake_app()) as client:
        assert client.get("/v1/models").status_code == 200
