"""Bad input against a real server on the tiny GGUF: a clear 4xx in the OpenAI envelope each,
and the server unharmed (the next request is served normally)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmserve.api.openai.wire import MAX_STOP_CHARS, MAX_STOP_SEQUENCES
from tests.support.tinyserver import KEY, MODEL

USER = {"role": "user", "content": "hello"}
CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"


@pytest.fixture(name="http")
def fixture_http(tiny_url: str) -> Iterator[httpx.Client]:
    """A plain HTTP client with the key, for bodies the official client would never send."""
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=tiny_url, headers=headers, timeout=60) as client:
        yield client


def rejected(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    """The error of a rejected request, checked to be ``status`` in the OpenAI envelope."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    return error


@pytest.fixture(name="unharmed", autouse=True)
def fixture_unharmed(http: httpx.Client) -> Iterator[None]:
    """After every test here, the server still answers a normal chat request."""
    yield
    response = http.post(CHAT, json={"model": MODEL, "messages": [USER], "max_tokens": 2})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 2


def post_raw(http: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return http.post(path, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "tiny", "messages": [',
        b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}]',
        b"not json at all",
        b"",
        b'{"model": "tiny",, }',
    ],
    ids=["truncated-array", "truncated-object", "text", "empty", "double-comma"],
)
def test_malformed_json_is_a_400(http: httpx.Client, body: bytes) -> None:
    """Malformed or truncated JSON is a 400 saying the body is not JSON."""
    assert "parse the JSON" in rejected(post_raw(http, CHAT, body))["message"]


def test_json_that_is_not_an_object_is_a_400(http: httpx.Client) -> None:
    """A JSON array, string or number as the whole body is a 400."""
    for body in (b"[]", b'"hi"', b"42", b"null"):
        assert "JSON object" in rejected(post_raw(http, CHAT, body))["message"]


def test_invalid_utf8_body_is_a_400(http: httpx.Client) -> None:
    """Bytes that are not UTF-8 inside a JSON string are a 400, not a crash."""
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff\xfe\xc3"}]}'
    rejected(post_raw(http, CHAT, body))


def test_lone_surrogate_escape_is_a_400(http: httpx.Client) -> None:
    """A JSON escape of half a UTF-16 pair (not a character) is a 400 naming the field."""
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    error = rejected(post_raw(http, CHAT, body))
    assert "surrogate" in error["message"]


def test_surrogate_pair_escape_is_a_character(http: httpx.Client) -> None:
    """A whole escaped UTF-16 pair (an emoji) is fine: it is one character."""
    body = (
        b'{"model": "tiny", "max_tokens": 1, '
        b'"messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    )
    assert post_raw(http, CHAT, body).status_code == 200


@pytest.mark.parametrize("value", [0, -1, -(10**30)])
def test_non_positive_max_tokens_is_a_400(http: httpx.Client, value: int) -> None:
    """max_tokens below 1 is a 400 naming max_tokens."""
    body = {"model": MODEL, "messages": [USER], "max_tokens": value}
    assert rejected(http.post(CHAT, json=body))["param"] == "max_tokens"


@pytest.mark.parametrize("value", [10**6, 10**30])
def test_huge_max_tokens_is_a_context_length_400(http: httpx.Client, value: int) -> None:
    """max_tokens beyond the context is a 400 context_length_exceeded, not an allocation."""
    body = {"model": MODEL, "messages": [USER], "max_tokens": value}
    assert rejected(http.post(CHAT, json=body))["code"] == "context_length_exceeded"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_temperature_is_a_400(http: httpx.Client, literal: bytes) -> None:
    """JSON has no NaN or Infinity: such a temperature is a 400."""
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": '
    rejected(post_raw(http, CHAT, body + literal + b"}"))


def test_negative_temperature_is_a_400(http: httpx.Client) -> None:
    """A negative temperature is a 400 naming temperature."""
    body = {"model": MODEL, "messages": [USER], "temperature": -0.5}
    assert rejected(http.post(CHAT, json=body))["param"] == "temperature"


def test_huge_number_temperature_is_a_400(http: httpx.Client) -> None:
    """A temperature of 1e400 (infinite as a float) is a 400."""
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": '
    rejected(post_raw(http, CHAT, body + b"1e400}"))


def test_thousands_of_stop_strings_is_a_400(http: httpx.Client) -> None:
    """More stop strings than the documented cap is a 400 naming stop."""
    body = {"model": MODEL, "messages": [USER], "stop": [f"s{i}" for i in range(5000)]}
    error = rejected(http.post(CHAT, json=body))
    assert error["param"] == "stop"
    assert str(MAX_STOP_SEQUENCES) in error["message"]


def test_overlong_stop_string_is_a_400(http: httpx.Client) -> None:
    """A stop string longer than the documented cap is a 400 naming stop."""
    body = {"model": MODEL, "prompt": "hi", "stop": "x" * (MAX_STOP_CHARS + 1)}
    error = rejected(http.post(TEXT, json=body))
    assert error["param"] == "stop"
    assert str(MAX_STOP_CHARS) in error["message"]


def test_stop_strings_at_the_cap_are_served(http: httpx.Client) -> None:
    """Exactly the cap of stop strings, each at the length cap, is a normal request."""
    stops = [f"{i:03d}" + "x" * (MAX_STOP_CHARS - 3) for i in range(MAX_STOP_SEQUENCES)]
    body = {"model": MODEL, "prompt": "hi", "stop": stops, "max_tokens": 2}
    assert http.post(TEXT, json=body).status_code == 200


def test_giant_messages_array_is_a_context_length_400(http: httpx.Client) -> None:
    """Fifty thousand messages render, overflow the context and get a 400, quickly."""
    body = {"model": MODEL, "messages": [USER] * 50_000, "max_tokens": 1}
    assert rejected(http.post(CHAT, json=body))["code"] == "context_length_exceeded"


def test_deeply_nested_json_is_a_400(http: httpx.Client) -> None:
    """Content nested a hundred thousand arrays deep is a 400, not a recursion crash."""
    depth = 100_000
    content = b"[" * depth + b"]" * depth
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": ' + content + b"}]}"
    rejected(post_raw(http, CHAT, body))


def test_nested_content_parts_are_a_400(http: httpx.Client) -> None:
    """A content part whose text is itself a list of parts is a 400 naming the field."""
    inner: Any = "hi"
    for _ in range(50):
        inner = [{"type": "text", "text": inner}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": inner}]}
    error = rejected(http.post(CHAT, json=body))
    assert error["param"] == "messages[0].content[0].text"


def test_token_id_prompt_is_served(http: httpx.Client) -> None:
    """A prompt of token ids (in the vocabulary) is a normal completion."""
    body = {"model": MODEL, "prompt": [1, 300, 301, 302], "max_tokens": 2}
    response = http.post(TEXT, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == 4


@pytest.mark.parametrize("token", [-1, 10**9, 2**63])
def test_out_of_range_token_id_prompt_is_a_400(http: httpx.Client, token: int) -> None:
    """A token id outside the vocabulary is a 400 naming prompt."""
    body = {"model": MODEL, "prompt": [1, token], "max_tokens": 2}
    error = rejected(http.post(TEXT, json=body))
    assert error["param"] == "prompt"


def test_mixed_prompt_array_is_a_400(http: httpx.Client) -> None:
    """An array mixing token ids and text is a 400."""
    body = {"model": MODEL, "prompt": [1, "two"], "max_tokens": 2}
    rejected(http.post(TEXT, json=body))


@pytest.mark.parametrize("prompt", [[], [[]]], ids=["[]", "[[]]"])
def test_empty_prompt_array_is_a_400(http: httpx.Client, prompt: Any) -> None:
    """An empty prompt array (or an empty token list) is a 400 naming prompt."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 2}
    rejected(http.post(TEXT, json=body))


def test_empty_prompt_text_is_served(http: httpx.Client) -> None:
    """An empty text prompt is still a prompt (the BOS token), as OpenAI's is: it is served."""
    response = http.post(TEXT, json={"model": MODEL, "prompt": "", "max_tokens": 2})
    assert response.status_code == 200, response.text


def test_empty_messages_is_a_400(http: httpx.Client) -> None:
    """An empty messages array is a 400 naming messages."""
    body = {"model": MODEL, "messages": []}
    assert rejected(http.post(CHAT, json=body))["param"] == "messages"


def test_path_like_model_name_is_not_a_file(http: httpx.Client) -> None:
    """A model named like a path is only a name: served by the one model, never opened."""
    body = {"model": "../../../../etc/passwd", "messages": [USER], "max_tokens": 1}
    response = http.post(CHAT, json=body)
    assert response.status_code == 200
    assert response.json()["model"] == MODEL


def test_path_like_model_id_lookup_is_the_served_model_not_a_file(http: httpx.Client) -> None:
    """A path-like id names no file: with one model every name is served by it (as a completion
    naming it would be), so the lookup answers that model's card and nothing of the path."""
    response = http.get("/v1/models/..%2F..%2F..%2Fetc%2Fpasswd")
    assert response.status_code == 200
    assert "root:" not in response.text
    assert response.json()["id"] == MODEL


def test_megabyte_prompt_is_refused_without_tokenizing(http: httpx.Client) -> None:
    """A prompt far longer than the context is a 400 within a second, never tokenized."""
    body = {"model": MODEL, "prompt": "<|im_end|>" * 200_000, "max_tokens": 1}
    response = http.post(TEXT, json=body)
    assert rejected(response)["code"] == "context_length_exceeded"
    assert "at least" in response.json()["error"]["message"]
    assert response.elapsed.total_seconds() < 1.0


def test_megabyte_embedding_input_is_refused_without_tokenizing(http: httpx.Client) -> None:
    """An embedding input far longer than the context is a 400 within a second."""
    response = http.post("/v1/embeddings", json={"model": MODEL, "input": "<|im_end|>" * 200_000})
    assert rejected(response)["code"] == "context_length_exceeded"
    assert response.json()["error"]["param"] == "input"
    assert response.elapsed.total_seconds() < 1.0


def test_megabyte_tokenize_content_is_refused_without_tokenizing(http: httpx.Client) -> None:
    """/tokenize of a text far longer than the context is a 400 within a second (llama.cpp's
    tokenizer is quadratic in special tokens: this text would take many seconds)."""
    response = http.post("/tokenize", json={"content": "<|im_end|>" * 200_000})
    error = rejected(response)
    assert (error["code"], error["param"]) == ("context_length_exceeded", "content")
    assert response.elapsed.total_seconds() < 1.0


def test_tokenize_content_that_fits_the_context_is_tokenized(http: httpx.Client) -> None:
    """The bound refuses only texts that cannot fit: one the size of the context is counted."""
    response = http.post("/tokenize", json={"content": "<|im_end|>" * 1000})
    assert response.status_code == 200, response.text
    assert len(response.json()["tokens"]) == 1000
