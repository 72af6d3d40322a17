"""The codec: JSON request bodies into wire classes, responses out, errors with a param."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmserve.api.openai import codec, wire, wire_embeddings, wire_tools
from llmserve.errors import InvalidRequest

USER = {"role": "user", "content": "hi"}


def chat(**fields: Any) -> wire.ChatCompletionRequest:
    return codec.structure_request(json.dumps(fields).encode(), wire.ChatCompletionRequest)


def completion(**fields: Any) -> wire.CompletionRequest:
    return codec.structure_request(json.dumps(fields).encode(), wire.CompletionRequest)


def chat_error(**fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        chat(**fields)
    return caught.value


def test_minimal_chat_request_parses() -> None:
    """A model and one message is a whole request; everything else has a default."""
    request = chat(model="m", messages=[USER])
    assert request.messages == (wire.ChatMessage(role="user", content="hi"),)
    assert request.stream is False


def test_unknown_fields_are_ignored() -> None:
    """Fields this server does not know (audio, metadata, ...) do not fail the request."""
    request = chat(messages=[USER], metadata={"x": 1}, foo={"x": 1})
    assert request.messages[0].content == "hi"


def test_malformed_json_is_a_400_with_openai_message() -> None:
    """A body that is not JSON gets OpenAI's parse-error message and no param."""
    with pytest.raises(InvalidRequest) as caught:
        codec.structure_request(b'{"messages": [', wire.ChatCompletionRequest)
    assert caught.value.message.startswith("We could not parse the JSON body of your request.")
    assert caught.value.param is None


def test_body_that_is_not_an_object_is_rejected() -> None:
    """A JSON array is valid JSON but not a request."""
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        codec.structure_request(b"[1, 2]", wire.ChatCompletionRequest)


def test_nan_is_not_json() -> None:
    """NaN, which Python's json accepts, is rejected like any other invalid JSON."""
    with pytest.raises(InvalidRequest, match="could not parse"):
        codec.structure_request(b'{"messages": [], "temperature": NaN}', wire.ChatCompletionRequest)


def test_wrong_type_names_the_field() -> None:
    """temperature: "hot" is a 400 with param temperature and says what was expected."""
    error = chat_error(messages=[USER], temperature="hot")
    assert error.param == "temperature"
    assert "expected a number, but got a string" in error.message


def test_numeric_strings_are_not_numbers() -> None:
    """ "0.5" is a string, as OpenAI sees it, not a temperature."""
    assert chat_error(messages=[USER], temperature="0.5").param == "temperature"


def test_booleans_are_not_integers() -> None:
    """max_tokens: true is rejected although bool is an int in Python."""
    assert chat_error(messages=[USER], max_tokens=True).param == "max_tokens"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("top_p", 1.5),
        ("min_p", -1),
        ("top_k", -1),
        ("max_tokens", 0),
        ("max_completion_tokens", 0),
        ("presence_penalty", 2.1),
        ("frequency_penalty", -3),
        ("repeat_penalty", -1),
    ],
)
def test_out_of_range_value_names_the_field(field: str, value: float) -> None:
    """Every range-checked sampling field reports itself as the param."""
    assert chat_error(messages=[USER], **{field: value}).param == field


def test_bad_role_names_the_nested_path() -> None:
    """An unknown role is reported at messages[i].role with the allowed values."""
    error = chat_error(messages=[USER, {"role": "robot", "content": "x"}])
    assert error.param == "messages[1].role"
    assert "'assistant'" in error.message


def test_missing_messages_is_reported() -> None:
    """A chat request without messages names the missing parameter."""
    error = chat_error(model="m")
    assert error.param == "messages"
    assert error.message.startswith("Missing required parameter")


def test_empty_messages_is_rejected() -> None:
    """messages must hold at least one message."""
    assert chat_error(messages=[]).param == "messages"


def test_messages_as_a_string_is_a_type_error() -> None:
    """A string is not iterated into characters: it is the wrong type."""
    error = chat_error(messages="hello")
    assert error.param == "messages"
    assert "expected an array" in error.message


def test_message_that_is_not_an_object_names_its_index() -> None:
    """A bare string where a message belongs is reported at its index."""
    assert chat_error(messages=["hello"]).param == "messages[0]"


def test_zero_choices_are_refused() -> None:
    """n below 1 is a clear 400 on param n (how many the engine can give, it says itself)."""
    error = chat_error(messages=[USER], n=0)
    assert error.param == "n"
    assert ">= 1" in error.message


def test_bad_stop_entry_names_its_index() -> None:
    """A non-string in the stop list is reported at stop[i]."""
    assert chat_error(messages=[USER], stop=["a", 3]).param == "stop[1]"


def test_empty_stop_string_is_rejected() -> None:
    """An empty stop sequence would end every generation at once."""
    assert chat_error(messages=[USER], stop=[""]).param == "stop"


def test_stream_options_type_error_has_nested_path() -> None:
    """Errors inside stream_options carry the dotted path."""
    error = chat_error(messages=[USER], stream=True, stream_options={"include_usage": "yes"})
    assert error.param == "stream_options.include_usage"


@pytest.mark.parametrize(
    ("stop", "expected"),
    [(None, ()), ("END", ("END",)), (["a", "b"], ("a", "b"))],
)
def test_stop_becomes_a_tuple(stop: Any, expected: tuple[str, ...]) -> None:
    """stop as nothing, a string or a list becomes the engine's tuple of strings."""
    assert chat(messages=[USER], stop=stop).generation("p").stop == expected


def test_max_completion_tokens_is_an_alias_that_wins() -> None:
    """max_completion_tokens sets the limit, over max_tokens when both are sent."""
    assert chat(messages=[USER], max_completion_tokens=7).generation("p").max_tokens == 7
    both = chat(messages=[USER], max_tokens=3, max_completion_tokens=9)
    assert both.generation("p").max_tokens == 9


def test_sampling_fields_reach_the_engine_request() -> None:
    """Every sampling field is carried into SamplingParams; unset ones keep engine defaults."""
    request = chat(messages=[USER], temperature=0.2, top_p=0.9, top_k=40, seed=7, min_p=0.05)
    sampling = request.generation("p").sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k) == (0.2, 0.9, 40)
    assert (sampling.seed, sampling.min_p, sampling.repeat_penalty) == (7, 0.05, 1.0)


def test_text_content_parts_are_joined() -> None:
    """Content given as text parts reaches the template as one string."""
    request = chat(
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
            }
        ]
    )
    assert request.template_messages() == [{"role": "user", "content": "one\ntwo"}]


def test_non_text_content_part_is_refused_with_its_path() -> None:
    """An image part is a 400 naming messages[i].content[j].type."""
    request = chat(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    )
    with pytest.raises(InvalidRequest) as caught:
        request.template_messages()
    assert caught.value.param == "messages[0].content[0].type"


def test_null_content_becomes_empty_text() -> None:
    """An assistant turn without content (it carried tool calls) renders as empty text."""
    request = chat(messages=[USER, {"role": "assistant", "content": None}])
    assert request.template_messages()[1] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("hello", "hello"), (["hello"], "hello"), ([1, 2, 3], (1, 2, 3)), ([[4, 5]], (4, 5))],
)
def test_prompt_forms_become_one_prompt(prompt: Any, expected: str | tuple[int, ...]) -> None:
    """Text, [text], token ids and [token ids] each give one engine prompt."""
    assert completion(prompt=prompt).prompt == expected


@pytest.mark.parametrize("prompt", [["a", "b"], [[1], [2]]])
def test_batched_prompts_are_refused(prompt: Any) -> None:
    """More than one prompt per request is a 400 on param prompt."""
    with pytest.raises(InvalidRequest, match="Batched prompts") as caught:
        completion(prompt=prompt)
    assert caught.value.param == "prompt"


def test_echo_with_logprobs_is_refused() -> None:
    """echo asks for prompt logprobs together with logprobs: a 400 'not supported' on echo."""
    request = completion(prompt="x", echo=True, logprobs=1)
    with pytest.raises(InvalidRequest, match="not supported") as caught:
        request.generation("x")
    assert caught.value.param == "echo"


def test_chunk_omits_unset_usage_but_keeps_null_finish_reason() -> None:
    """A content chunk has no usage key, and finish_reason and logprobs are written as null."""
    chunk = wire.ChatCompletionChunk(
        id="c",
        created=1,
        model="m",
        choices=(wire.ChunkChoice(index=0, delta=wire.Delta(content="x")),),
    )
    data = codec.unstructure(chunk)
    assert "usage" not in data
    assert data["choices"][0] == {
        "index": 0,
        "delta": {"content": "x"},
        "logprobs": None,
        "finish_reason": None,
    }


def test_dump_json_keeps_non_ascii_text() -> None:
    """Responses are UTF-8 JSON, not \\u escapes."""
    card = wire.ModelCard(id="modèle", created=0, owned_by="me")
    assert "modèle".encode() in codec.dump_json(card)


@pytest.mark.parametrize(
    ("value", "inputs"),
    [
        ("a", ("a",)),
        (["a", "b"], ("a", "b")),
        ([1, 2], ((1, 2),)),
        ([[1], [2, 3]], ((1,), (2, 3))),
        (["a", [4]], ("a", (4,))),
    ],
)
def test_embedding_inputs_take_every_openai_form(value: object, inputs: tuple[object]) -> None:
    """Text, [text], [token ids] and [[token ids]] become one tuple of inputs."""
    raw = json.dumps({"input": value}).encode()
    assert codec.structure_request(raw, wire_embeddings.EmbeddingRequest).input == inputs


@pytest.mark.parametrize(("value", "param"), [(["a", 1], "input[1]"), (5, "input"), ([], "input")])
def test_bad_embedding_inputs_name_the_input(value: object, param: str) -> None:
    """A mixed array, a number or nothing at all is a 400 on the input concerned."""
    raw = json.dumps({"input": value}).encode()
    with pytest.raises(InvalidRequest) as caught:
        codec.structure_request(raw, wire_embeddings.EmbeddingRequest)
    assert caught.value.param == param


def test_tool_choice_takes_a_mode_or_a_named_function() -> None:
    """tool_choice: one of none/auto/required, or {type: function, function: {name}}."""
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert chat(messages=[USER], tools=tools, tool_choice="required").tool_choice == "required"
    named = chat(
        messages=[USER], tools=tools, tool_choice={"type": "function", "function": {"name": "f"}}
    )
    assert named.tool_use() == wire_tools.ToolUse(named.tools or (), "f")
    assert chat_error(messages=[USER], tool_choice="sometimes").param == "tool_choice"


def test_json_schema_format_needs_its_schema_object() -> None:
    """response_format json_schema without json_schema is a 400 naming that field."""
    request = chat(messages=[USER], response_format={"type": "json_schema"})
    with pytest.raises(InvalidRequest) as caught:
        request.generation("prompt")
    assert caught.value.param == "response_format.json_schema"


def test_logit_bias_keys_are_token_ids_and_minus_100_bans() -> None:
    """logit_bias maps token ids (strings) to [-100, 100]; -100 becomes a ban (-inf)."""
    request = chat(messages=[USER], logit_bias={"7": -100, "9": 1.5})
    assert request.generation("p").sampling.logit_bias == ((7, float("-inf")), (9, 1.5))
    assert chat_error(messages=[USER], logit_bias={"seven": 1}).param == "logit_bias"
    assert chat_error(messages=[USER], logit_bias={"7": 101}).param == "logit_bias"


def test_cache_prompt_parses_and_reaches_the_generation() -> None:
    """llama-server's cache_prompt is a boolean that travels to the engine request."""
    assert chat(messages=[USER], cache_prompt=False).generation("p").cache_prompt is False
    assert completion(prompt="p", cache_prompt=True).generation("p").cache_prompt is True
    assert chat(messages=[USER]).generation("p").cache_prompt is None  # the server's default


def test_cache_prompt_of_the_wrong_type_is_a_400() -> None:
    """A cache_prompt that is not a boolean is refused, naming the field."""
    error = chat_error(messages=[USER], cache_prompt="no")
    assert error.status == 400
    assert error.param == "cache_prompt"
