"""/v1/embeddings through the official client, and /tokenize and /detokenize through httpx."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.support.tinymodel import N_EMBD
from tests.support.tinyserver import KEY, MODEL

AUTH = {"Authorization": f"Bearer {KEY}"}


def embed(tiny_client: openai.OpenAI, inputs: Any, **kwargs: Any) -> Any:
    return tiny_client.embeddings.create(model=MODEL, input=inputs, **kwargs)


def close(a: list[float], b: list[float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-5) for x, y in zip(a, b, strict=True))


def test_one_input_gives_one_unit_vector_and_usage(tiny_client: openai.OpenAI) -> None:
    """A string: one embedding of the model's size, L2-normalized, its tokens counted."""
    result = embed(tiny_client, "hello world", encoding_format="float")
    (item,) = result.data
    assert (item.index, item.object, len(item.embedding)) == (0, "embedding", N_EMBD)
    assert math.isclose(sum(x * x for x in item.embedding), 1.0, rel_tol=1e-5)
    assert result.model == MODEL
    assert result.usage.prompt_tokens == result.usage.total_tokens == 3  # BOS hello world


def test_a_list_is_embedded_in_order_and_each_like_alone(tiny_client: openai.OpenAI) -> None:
    """A list: one vector per input, in order; each equals the input's embedding alone
    (inputs batched into one decode do not see each other)."""
    texts = ["the cat", "a house of the world", "the cat"]
    together = embed(tiny_client, texts, encoding_format="float").data
    assert [d.index for d in together] == [0, 1, 2]
    for text, item in zip(texts, together, strict=True):
        assert close(
            item.embedding, embed(tiny_client, text, encoding_format="float").data[0].embedding
        )
    assert not close(together[0].embedding, together[1].embedding)


def test_base64_encoding_decodes_to_the_floats(tiny_client: openai.OpenAI) -> None:
    """encoding_format base64 (the client's default, decoded by it) gives the same vector."""
    floats = embed(tiny_client, "hello", encoding_format="float").data[0].embedding
    assert close(embed(tiny_client, "hello").data[0].embedding, floats)


def test_token_arrays_embed_like_their_text(tiny_client: openai.OpenAI, tiny_url: str) -> None:
    """Token ids (one array, or a list of them) embed like the text they tokenize from."""
    tokens = httpx.post(
        f"{tiny_url}/tokenize", json={"content": "hello world", "add_special": True}, headers=AUTH
    ).json()["tokens"]
    text = embed(tiny_client, "hello world", encoding_format="float").data[0].embedding
    assert close(embed(tiny_client, tokens, encoding_format="float").data[0].embedding, text)
    both = embed(tiny_client, [tokens, tokens], encoding_format="float").data
    assert len(both) == 2
    assert close(both[1].embedding, text)


def test_dimensions_other_than_the_models_are_a_400(tiny_client: openai.OpenAI) -> None:
    """dimensions cannot shorten these vectors: a clear 400 unless it is the model's size."""
    assert len(
        embed(tiny_client, "x", dimensions=N_EMBD, encoding_format="float").data[0].embedding
    )
    with pytest.raises(openai.BadRequestError) as caught:
        embed(tiny_client, "x", dimensions=16)
    assert caught.value.param == "dimensions"
    assert str(N_EMBD) in caught.value.message


@pytest.mark.parametrize("inputs", ["", [], ["ok", ""], [[]]])
def test_empty_input_is_a_400(tiny_client: openai.OpenAI, inputs: Any) -> None:
    """An empty input, or no input at all, is refused."""
    with pytest.raises(openai.BadRequestError):
        embed(tiny_client, inputs)


def test_embeddings_run_beside_generation(tiny_client: openai.OpenAI) -> None:
    """Embedding does not hold up the event loop: a stream and embeddings run side by side."""

    def stream() -> str:
        chunks = tiny_client.completions.create(
            model=MODEL, prompt="Once", max_tokens=30, temperature=0, stream=True
        )
        return "".join(c.choices[0].text for c in chunks if c.choices)

    with ThreadPoolExecutor(3) as pool:
        text = pool.submit(stream)
        vectors = [pool.submit(embed, tiny_client, ["a", "b"] * 8) for _ in range(3)]
        assert all(len(v.result().data) == 16 for v in vectors)
        assert text.result()


# -- /tokenize and /detokenize ----------------------------------------------------------------


def test_tokenize_and_detokenize_round_trip(tiny_url: str) -> None:
    """llama-server's bodies: content -> tokens -> content; add_special adds BOS first."""
    plain = httpx.post(f"{tiny_url}/tokenize", json={"content": "hello world"}, headers=AUTH)
    special = httpx.post(
        f"{tiny_url}/tokenize", json={"content": "hello world", "add_special": True}, headers=AUTH
    )
    tokens = plain.json()["tokens"]
    assert special.json()["tokens"][1:] == tokens
    assert len(special.json()["tokens"]) == len(tokens) + 1
    back = httpx.post(f"{tiny_url}/detokenize", json={"tokens": tokens}, headers=AUTH)
    assert back.json() == {"content": "hello world"}


def test_tokenize_with_pieces(tiny_url: str) -> None:
    """with_pieces: each token with its text, or its bytes when it holds part of a character."""
    body = {"content": "hello é", "with_pieces": True}
    pieces = httpx.post(f"{tiny_url}/tokenize", json=body, headers=AUTH).json()["tokens"]
    assert pieces[0]["piece"] == "hello"
    assert all(isinstance(p["id"], int) for p in pieces)
    assert [p["piece"] for p in pieces if isinstance(p["piece"], list)] == [[0xC3], [0xA9]]


def test_detokenize_refuses_unknown_ids(tiny_url: str) -> None:
    """An id outside the vocabulary is a 400 naming tokens."""
    response = httpx.post(f"{tiny_url}/detokenize", json={"tokens": [10**9]}, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tokens"


@pytest.mark.parametrize("path", ["/tokenize", "/detokenize"])
def test_token_routes_need_the_api_key(tiny_url: str, path: str) -> None:
    """The same API-key guard as /v1."""
    response = httpx.post(f"{tiny_url}{path}", json={"content": "x", "tokens": [1]})
    assert response.status_code == 401
