"""n, logprobs, seed, logit_bias, echo, suffix and the usage options, through the official
client on the real engine."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.tinymodel import build_tiny_gguf
from tests.support.tinyserver import KEY, MODEL, client_for, tiny_server

PARALLEL = 4  # the tiny_url server's slots
PROMPT = "Once upon a time"
CHAT = [{"role": "user", "content": "Tell me a story"}]


def complete(tiny_client: openai.OpenAI, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0}
    return tiny_client.completions.create(model=MODEL, **{**options, **kwargs})


def chat(tiny_client: openai.OpenAI, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"messages": CHAT, "max_tokens": 8, "temperature": 0}
    return tiny_client.chat.completions.create(model=MODEL, **{**options, **kwargs})


def token_id(tiny_url: str, text: str) -> int:
    headers = {"Authorization": f"Bearer {KEY}"}
    (token,) = httpx.post(f"{tiny_url}/tokenize", json={"content": text}, headers=headers).json()[
        "tokens"
    ]
    return int(token)


# -- n ----------------------------------------------------------------------------------------


def test_n_choices_each_sample_with_their_own_seed(tiny_client: openai.OpenAI) -> None:
    """n=3 with a seed: three indexed choices; choice i samples as a lone request with seed+i."""
    result = complete(tiny_client, n=3, seed=11, temperature=1.0)
    assert [c.index for c in result.choices] == [0, 1, 2]
    for i, choice in enumerate(result.choices):
        alone = complete(tiny_client, seed=11 + i, temperature=1.0).choices[0]
        assert (choice.text, choice.finish_reason) == (alone.text, alone.finish_reason)
    assert len({c.text for c in result.choices}) > 1


def test_n_choices_count_the_prompt_once(tiny_client: openai.OpenAI) -> None:
    """Usage of n choices: the prompt's tokens once, the completions' summed."""
    one = complete(tiny_client).usage
    three = complete(tiny_client, n=3).usage
    assert three.prompt_tokens == one.prompt_tokens
    assert three.completion_tokens == 3 * one.completion_tokens


def test_streamed_choices_carry_their_index(tiny_client: openai.OpenAI) -> None:
    """Streamed n=2 chat: every chunk names its choice; each choice's deltas add up to the
    whole answer's choice, and each ends with its own finish_reason."""
    whole = chat(tiny_client, n=2, seed=5, temperature=1.0)
    chunks = list(chat(tiny_client, n=2, seed=5, temperature=1.0, stream=True))
    texts = ["", ""]
    finishes: list[str | None] = [None, None]
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            finishes[choice.index] = choice.finish_reason or finishes[choice.index]
    assert texts == [c.message.content for c in whole.choices]
    assert finishes == [c.finish_reason for c in whole.choices]


def test_more_choices_than_slots_is_a_400(tiny_client: openai.OpenAI) -> None:
    """n above the server's sequence slots cannot share one prompt decode: a clear 400 on n."""
    with pytest.raises(openai.BadRequestError) as caught:
        complete(tiny_client, n=PARALLEL + 1)
    assert caught.value.param == "n"
    assert f"at most {PARALLEL}" in caught.value.message


# -- logprobs ---------------------------------------------------------------------------------


def test_chat_logprobs_describe_each_greedy_token(tiny_client: openai.OpenAI) -> None:
    """logprobs + top_logprobs=3: one entry per token, its bytes (which spell the answer), and
    (greedy) the token is the most likely of its top three, sorted log-probabilities."""
    choice = chat(tiny_client, logprobs=True, top_logprobs=3).choices[0]
    entries = choice.logprobs.content
    spelled = b"".join(bytes(e.bytes) for e in entries).decode("utf-8", errors="replace")
    assert spelled == choice.message.content
    for entry in entries:
        # A token holding part of a character shows its bytes as \xNN, as OpenAI's do.
        assert bytes(entry.bytes).decode("utf-8", errors="backslashreplace") == entry.token
        assert len(entry.top_logprobs) == 3
        top = [t.logprob for t in entry.top_logprobs]
        assert top == sorted(top, reverse=True)
        assert entry.top_logprobs[0].token == entry.token
        assert math.isclose(entry.logprob, top[0])
        assert sum(math.exp(p) for p in top) <= 1.0 + 1e-6


def test_streamed_chat_logprobs_match_the_whole_answer(tiny_client: openai.OpenAI) -> None:
    """The stream carries the same logprob entries, chunk by chunk."""
    whole = chat(tiny_client, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    chunks = list(chat(tiny_client, logprobs=True, top_logprobs=2, stream=True))
    streamed = [
        e
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in whole]
    # The second request reuses the first one's prompt KV: the same numbers up to float noise.
    for mine, theirs in zip(streamed, whole, strict=True):
        assert math.isclose(mine.logprob, theirs.logprob, rel_tol=1e-3, abs_tol=1e-4)


def test_no_logprobs_unless_asked(tiny_client: openai.OpenAI) -> None:
    """Without logprobs the choice's logprobs are null."""
    assert chat(tiny_client).choices[0].logprobs is None
    assert complete(tiny_client).choices[0].logprobs is None


def test_completion_logprobs_are_the_legacy_lists(tiny_client: openai.OpenAI) -> None:
    """Completions' logprobs=2: tokens that spell the text, their logprobs, offsets into the
    text and the top two alternatives of each position; streamed the same."""
    choice = complete(tiny_client, logprobs=2).choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == 8
    assert len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs)
    assert lp.text_offset == [len("".join(lp.tokens[:i])) for i in range(len(lp.tokens))]
    assert all(len(top) <= 2 and max(top.values()) <= 0 for top in lp.top_logprobs)
    streamed = [
        t
        for c in complete(tiny_client, logprobs=2, stream=True)
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.tokens
    ]
    assert streamed == lp.tokens


# -- seed, logit_bias, limits -----------------------------------------------------------------


def test_same_seed_same_output(tiny_client: openai.OpenAI) -> None:
    """Sampling at temperature 1: the same seed twice gives the same text, another seed not."""
    first = complete(tiny_client, temperature=1.0, seed=1234, max_tokens=16).choices[0].text
    again = complete(tiny_client, temperature=1.0, seed=1234, max_tokens=16).choices[0].text
    other = complete(tiny_client, temperature=1.0, seed=4321, max_tokens=16).choices[0].text
    assert first == again
    assert other != first


def test_logit_bias_bans_and_forces_tokens(tiny_client: openai.OpenAI, tiny_url: str) -> None:
    """-100 bans a token (the greedy choice changes); +100 forces one (it fills the output)."""
    greedy = complete(tiny_client, max_tokens=1, logprobs=0).choices[0].logprobs.tokens[0]
    banned = complete(tiny_client, max_tokens=1, logit_bias={str(token_id(tiny_url, greedy)): -100})
    assert banned.choices[0].text != greedy
    forced = complete(
        tiny_client, max_tokens=3, logit_bias={str(token_id(tiny_url, " world")): 100}
    )
    assert forced.choices[0].text == " world" * 3


def test_logit_bias_outside_the_vocabulary_is_a_400(tiny_client: openai.OpenAI) -> None:
    """A token id the model does not have is refused, naming logit_bias."""
    with pytest.raises(openai.BadRequestError) as caught:
        complete(tiny_client, logit_bias={"99999999": 5})
    assert caught.value.param == "logit_bias"


def test_max_completion_tokens_user_and_stream_usage(tiny_client: openai.OpenAI) -> None:
    """max_completion_tokens bounds the answer; user is accepted; include_usage adds a final
    chunk without choices whose usage counts the streamed tokens."""
    chunks = list(
        chat(
            tiny_client,
            max_tokens=None,
            max_completion_tokens=5,
            user="user-1234",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


# -- echo and suffix --------------------------------------------------------------------------


def test_echo_prepends_the_prompt(tiny_client: openai.OpenAI) -> None:
    """echo: the text starts with the prompt, streamed (first chunk) or not."""
    plain = complete(tiny_client).choices[0].text
    assert complete(tiny_client, echo=True).choices[0].text == PROMPT + plain
    chunks = list(complete(tiny_client, echo=True, stream=True))
    assert chunks[0].choices[0].text == PROMPT
    assert "".join(c.choices[0].text for c in chunks if c.choices) == PROMPT + plain


def test_echo_of_token_ids_is_their_text(tiny_client: openai.OpenAI, tiny_url: str) -> None:
    """A prompt of token ids is echoed as the text those tokens spell."""
    ids = [token_id(tiny_url, "hello"), token_id(tiny_url, " world")]
    assert (
        complete(tiny_client, prompt=ids, echo=True, max_tokens=1)
        .choices[0]
        .text.startswith("hello world")
    )


def test_echo_with_logprobs_is_a_400(tiny_client: openai.OpenAI) -> None:
    """Prompt logprobs are not computed: echo with logprobs is refused up front."""
    with pytest.raises(openai.BadRequestError) as caught:
        complete(tiny_client, echo=True, logprobs=1)
    assert caught.value.param == "echo"


def test_suffix_without_fim_tokens_is_a_400(tiny_client: openai.OpenAI) -> None:
    """suffix needs a fill-in-the-middle model; this one has no FIM tokens."""
    with pytest.raises(openai.BadRequestError) as caught:
        complete(tiny_client, suffix="The end.")
    assert caught.value.param == "suffix"
    assert "FIM" in caught.value.message


@pytest.fixture(name="fim_url", scope="module")
def fixture_fim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = build_tiny_gguf(tmp_path_factory.mktemp("fim") / "fim.gguf", fim=True)
    with tiny_server(path) as tiny_url:
        yield tiny_url


def test_suffix_fills_in_the_middle_on_a_fim_model(fim_url: str) -> None:
    """With FIM tokens, prompt and suffix become [BOS] PRE prompt SUF suffix MID (as
    llama-server lays them out), and the model writes the middle, streamed or not."""

    def count(text: str) -> int:
        body = {"content": text}
        headers = {"Authorization": f"Bearer {KEY}"}
        return len(httpx.post(f"{fim_url}/tokenize", json=body, headers=headers).json()["tokens"])

    with client_for(fim_url) as tiny_client:
        result = complete(tiny_client, prompt="def f(x):", suffix="return y")
        assert result.usage.prompt_tokens == count("def f(x):") + count("return y") + 4
        chunks = complete(tiny_client, prompt="def f(x):", suffix="return y", stream=True)
        assert "".join(c.choices[0].text for c in chunks if c.choices) == result.choices[0].text


def test_megabyte_suffix_is_refused_without_tokenizing(fim_url: str) -> None:
    """A fill-in-the-middle suffix far longer than the context is a 400 within a second, as
    an over-long prompt is (llama.cpp's tokenizer is quadratic in special tokens)."""
    body = {"prompt": "def f(x):", "suffix": "<|fim_suffix|>" * 100_000, "max_tokens": 1}
    response = httpx.post(
        f"{fim_url}/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", "suffix")
    assert response.elapsed.total_seconds() < 1.0
