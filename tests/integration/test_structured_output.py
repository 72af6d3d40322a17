"""response_format through the official client: the output parses and validates, always."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.support.tinyserver import KEY, MODEL

MESSAGES = [{"role": "user", "content": "Describe the weather as JSON."}]

# Bounded schemas: whatever the sampler picks, the output ends within max_tokens.
BOUNDED: dict[str, dict[str, Any]] = {
    "record": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 10},
            "age": {"type": "integer"},
            "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
        },
        "required": ["name", "age", "ok"],
        "additionalProperties": False,
    },
    "nullable_and_union": {
        "type": "object",
        "properties": {
            "score": {"type": ["number", "null"]},
            "id": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 4}]},
        },
        "required": ["score", "id"],
    },
    "pattern_and_formats": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
            "day": {"type": "string", "format": "date"},
            "uid": {"type": "string", "format": "uuid"},
        },
        "required": ["code", "day", "uid"],
    },
    "tuple": {
        "type": "array",
        "prefixItems": [{"type": "boolean"}, {"const": "fixed"}, {"type": "null"}],
        "items": False,
    },
    "defs": {
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer"}}}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/point"}, "b": {"$ref": "#/$defs/point"}},
        "required": ["a", "b"],
    },
}
RECURSIVE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
            },
            "required": ["value", "next"],
        }
    },
    "$ref": "#/$defs/node",
}


def json_schema(name: str, schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def chat(tiny_client: openai.OpenAI, **kwargs: Any) -> Any:
    return tiny_client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=400, **kwargs
    )


def streamed_text(tiny_client: openai.OpenAI, **kwargs: Any) -> tuple[str, str | None]:
    chunks = list(chat(tiny_client, stream=True, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = next(
        (c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason),
        None,
    )
    return text, finish


def test_json_object_output_is_an_object_streamed_or_not(tiny_client: openai.OpenAI) -> None:
    """response_format json_object: the content is a JSON object, and the stream says the same."""
    for seed in (1, 2, 3):
        result = chat(
            tiny_client, temperature=1.0, seed=seed, response_format={"type": "json_object"}
        )
        choice = result.choices[0]
        if choice.finish_reason == "stop":  # a random model may write a long object
            assert isinstance(json.loads(choice.message.content), dict)
    whole = chat(tiny_client, temperature=0, response_format={"type": "json_object"})
    text, finish = streamed_text(
        tiny_client, temperature=0, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(text), dict)
    assert (text, finish) == (whole.choices[0].message.content, "stop")


@pytest.mark.parametrize("name", sorted(BOUNDED))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sampled_json_schema_output_validates(
    tiny_client: openai.OpenAI, name: str, seed: int
) -> None:
    """Whatever the sampler picks, the output of a json_schema request validates against it."""
    schema = BOUNDED[name]
    result = chat(
        tiny_client, temperature=1.0, seed=seed, response_format=json_schema(name, schema)
    )
    choice = result.choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content), schema)


def test_streamed_json_schema_output_validates_and_matches(tiny_client: openai.OpenAI) -> None:
    """A streamed json_schema answer is the same valid JSON as the whole one."""
    fmt = json_schema("record", BOUNDED["record"])
    whole = chat(tiny_client, temperature=0, response_format=fmt).choices[0].message.content
    text, finish = streamed_text(tiny_client, temperature=0, response_format=fmt)
    assert (text, finish) == (whole, "stop")
    jsonschema.validate(json.loads(text), BOUNDED["record"])


def test_recursive_schema_output_validates(tiny_client: openai.OpenAI, tiny_url: str) -> None:
    """A recursive schema ($ref to itself through $defs) is enforced at every level.

    The random test model nests forever unless "{" is made less likely; with a bias it ends
    the list at some depth, and every answer that ends validates."""
    headers = {"Authorization": f"Bearer {KEY}"}
    brace = httpx.post(f"{tiny_url}/tokenize", json={"content": "{"}, headers=headers).json()
    depths = []
    for seed in (1, 2, 3, 4):
        choice = chat(
            tiny_client,
            temperature=1.0,
            seed=seed,
            logit_bias={str(brace["tokens"][0]): -6},
            response_format=json_schema("list", RECURSIVE),
        ).choices[0]
        if choice.finish_reason == "stop":
            value = json.loads(choice.message.content)
            jsonschema.validate(value, RECURSIVE)
            depths.append(json.dumps(value).count("value"))
    assert max(depths, default=0) >= 2


class Forecast(BaseModel):
    city: Literal["Paris", "Rome"]
    temperature: int
    sunny: bool
    note: str = Field(max_length=12)


def test_client_parse_returns_the_pydantic_model(tiny_client: openai.OpenAI) -> None:
    """tiny_client.chat.completions.parse(response_format=Model): the strict schema pydantic writes
    is enforced, so the client parses the answer into the model."""
    result = tiny_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, max_tokens=200, temperature=0, response_format=Forecast
    )
    assert isinstance(result.choices[0].message.parsed, Forecast)


def test_truncated_output_says_length(tiny_client: openai.OpenAI) -> None:
    """Cut short by max_tokens, constrained output ends with finish_reason length, as OpenAI's."""
    fmt = json_schema("record", BOUNDED["record"])
    result = tiny_client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=3, temperature=0, response_format=fmt
    )
    assert result.choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True])
def test_unsupported_schema_keyword_is_a_400_naming_it(
    tiny_client: openai.OpenAI, stream: bool
) -> None:
    """A keyword the grammar would not enforce is refused up front, never ignored."""
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}
    with pytest.raises(openai.BadRequestError) as caught:
        chat(tiny_client, stream=stream, response_format=json_schema("bad", schema))
    body: Any = caught.value.body
    assert "'minimum'" in body["message"]
    assert "#/properties/n" in body["message"]
    assert body["param"] == "response_format.json_schema.schema"
