"""Schemathesis against a live FakeEngine server, from the server's own /openapi.json: for every
route, valid and invalid requests alike, no 5xx, and every answer matches the document (errors
in the OpenAI envelope). Bounded examples per route and mode, so CI stays well under a minute."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from llmserve.api.openapi import openapi_document
from tests.support.doubles import fake_app
from tests.support.server import serve_app

EXAMPLES = 40
ENVELOPE_KEYS = {"message", "type", "param", "code"}


@schemathesis.check
def errors_in_openai_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx body is {"error": {message, type, param, code}} (readiness aside), or
    Anthropic's {"type": "error", "error": {type, message}} on the Anthropic routes."""
    if response.status_code < 400 or case.path == "/readyz":
        return None
    if case.path.startswith("/v1/messages"):
        body = response.json()
        if body.get("type") != "error" or set(body["error"]) != {"type", "message"}:
            raise AssertionError(f"not an Anthropic error envelope: {response.text[:200]}")
        return True
    error = response.json()["error"]
    if set(error) != ENVELOPE_KEYS or not error["message"]:
        raise AssertionError(f"not an OpenAI error envelope: {response.text[:200]}")
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    errors_in_openai_envelope,
]
_PATHS = openapi_document()["paths"]
OPERATIONS = [(path, method.upper()) for path, methods in _PATHS.items() for method in methods]
# Invalid requests need something to make invalid: a body (a path parameter is any string).
TAKING_INPUT = [
    (path, method.upper())
    for path, methods in _PATHS.items()
    for method, spec in methods.items()
    if "requestBody" in spec
]


@pytest.fixture(name="fuzz_url", scope="module")
def fixture_fuzz_url() -> Iterator[str]:
    """A FakeEngine server: the engine does not matter, the HTTP surface does."""
    with serve_app(fake_app()) as base_url:
        yield base_url


@pytest.fixture(name="fuzz_schema", scope="module")
def fixture_fuzz_schema(fuzz_url: str) -> Any:
    """The document as the server serves it, loaded by schemathesis."""
    return schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json")


def test_openapi_document_is_served(fuzz_url: str) -> None:
    """/openapi.json is an OpenAPI 3.1 document naming every route."""
    document = httpx.get(f"{fuzz_url}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert {"/v1/chat/completions", "/v1/completions", "/metrics"} <= set(document["paths"])


def fuzz(schema: Any, base_url: str, path: str, method: str, mode: GenerationMode) -> None:
    """Send EXAMPLES generated requests to one operation; every answer must pass CHECKS."""
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)

    run()
    # The server is unharmed: a plain request is served normally afterwards.
    assert httpx.get(f"{base_url}/v1/models").status_code == 200


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_valid_requests_get_documented_answers(
    fuzz_schema: Any, fuzz_url: str, path: str, method: str
) -> None:
    """Generated valid requests never get a 5xx or an answer the document does not allow."""
    fuzz(fuzz_schema, fuzz_url, path, method, GenerationMode.POSITIVE)


@pytest.mark.parametrize(("path", "method"), TAKING_INPUT)
def test_invalid_requests_get_enveloped_4xx(
    fuzz_schema: Any, fuzz_url: str, path: str, method: str
) -> None:
    """Generated invalid requests never get a 5xx; their errors are in the OpenAI envelope."""
    fuzz(fuzz_schema, fuzz_url, path, method, GenerationMode.NEGATIVE)
