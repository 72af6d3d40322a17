"""The hand-written OpenAPI document: served, well-formed, and in step with the wire bounds."""

from __future__ import annotations

from typing import Any

import schemathesis
from litestar.testing import TestClient

from llmserve.api.openai import wire
from llmserve.api.openapi import openapi_document
from tests.support.doubles import fake_app

ROUTES = {
    ("/v1/chat/completions", "post"),
    ("/v1/completions", "post"),
    ("/v1/embeddings", "post"),
    ("/v1/messages", "post"),
    ("/v1/messages/count_tokens", "post"),
    ("/v1/responses", "post"),
    ("/v1/responses/input_tokens", "post"),
    ("/v1/responses/{response_id}", "get"),
    ("/v1/responses/{response_id}", "delete"),
    ("/v1/models", "get"),
    ("/v1/models/{model_id}", "get"),
    ("/tokenize", "post"),
    ("/detokenize", "post"),
    ("/health", "get"),
    ("/ping", "get"),
    ("/livez", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
}


def test_openapi_json_is_served_without_a_key() -> None:
    """/openapi.json answers the document, like the other ops routes, without an API key."""
    with TestClient(fake_app(api_key="sk-k")) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == openapi_document()


def test_document_names_every_route() -> None:
    """Every route the app serves is in the document, and nothing else is."""
    paths = openapi_document()["paths"]
    assert {(path, method) for path, ops in paths.items() for method in ops} == ROUTES


def test_schemathesis_loads_every_operation() -> None:
    """The document is valid OpenAPI 3.1 as schemathesis reads it: every operation loads."""
    schema = schemathesis.openapi.from_dict(openapi_document())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(ROUTES)


def test_stop_bounds_are_the_wire_bounds() -> None:
    """The documented stop caps are wire.py's own."""
    stop: dict[str, Any] = openapi_document()["components"]["schemas"]["ChatCompletionRequest"][
        "properties"
    ]["stop"]
    one, many, _ = stop["anyOf"]
    assert one["maxLength"] == wire.MAX_STOP_CHARS
    assert many["maxItems"] == wire.MAX_STOP_SEQUENCES
