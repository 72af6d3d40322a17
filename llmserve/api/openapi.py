"""The OpenAPI 3.1 document of the server's routes, served at ``/openapi.json``.

Written by hand: the routes take raw bodies and parse them with the codec, so Litestar cannot
generate it. Request bounds are wire.py's own constants, so that the document and the checks
cannot drift apart on them; the fuzz test (schemathesis) holds the rest to it: every documented
request gets no 5xx, and every answer matches its schema, errors in the OpenAI envelope.
"""

from __future__ import annotations

import typing
from typing import Any

from litestar import Response, get

from llmserve.api.anthropic.wire import MIN_THINKING_BUDGET, UNSUPPORTED_BLOCKS
from llmserve.api.openai import codec, wire
from llmserve.prompt.switches import ReasoningEffort

JSON = "application/json"
Schema = dict[str, Any]


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _number(low: float, high: float | None = None) -> Schema:
    bounds: Schema = {"type": "number", "minimum": low}
    if high is not None:
        bounds["maximum"] = high
    return _nullable(bounds)


def _integer(low: int, high: int | None = None) -> Schema:
    bounds: Schema = {"type": "integer", "minimum": low}
    if high is not None:
        bounds["maximum"] = high
    return _nullable(bounds)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_REASONING_EFFORTS = typing.get_args(ReasoningEffort)
_STOP_STRING: Schema = {"type": "string", "minLength": 1, "maxLength": wire.MAX_STOP_CHARS}
_TOKEN_IDS: Schema = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}

_SAMPLING: dict[str, Schema] = {
    "model": _nullable({"type": "string"}),
    "max_tokens": _integer(1),
    "max_completion_tokens": _integer(1),
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "top_k": _integer(0),
    "min_p": _number(0, 1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "repeat_penalty": _number(0),
    "seed": _nullable({"type": "integer"}),
    "cache_prompt": _nullable({"type": "boolean"}),
    "stop": {
        "anyOf": [
            _STOP_STRING,
            {"type": "array", "items": _STOP_STRING, "maxItems": wire.MAX_STOP_SEQUENCES},
            {"type": "null"},
        ]
    },
    "stream": {"type": "boolean"},
    "stream_options": _nullable(
        {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}
    ),
    "n": {"type": "integer", "minimum": 1, "maximum": 4},  # wire allows 128; slots, fewer
    "logit_bias": _nullable(
        {
            "type": "object",
            "propertyNames": {"pattern": "^[0-9]{1,6}$"},
            "additionalProperties": {
                "type": "number",
                "minimum": -wire.LOGIT_BIAS_LIMIT,
                "maximum": wire.LOGIT_BIAS_LIMIT,
            },
        }
    ),
    "user": _nullable({"type": "string"}),
}


def _completion(object_name: str, **choice: Schema) -> Schema:
    """A chat or text completion: the same envelope around differently shaped choices."""
    return {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": object_name},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", *choice],
                    "properties": {"index": {"type": "integer"}, **choice},
                },
            },
            "usage": _ref("Usage"),
        },
    }


def _chunk(object_name: str, **choice: Schema) -> Schema:
    """A streamed chunk: a completion whose usage is absent, null, or (last) the usage."""
    schema = _completion(object_name, **choice)
    schema["required"] = ["id", "object", "created", "model", "choices"]
    schema["properties"]["usage"] = _nullable(_ref("Usage"))
    return schema


_SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string", "minLength": 1},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "ContentPart": {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    },
    "ChatMessage": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": ["system", "user", "assistant", "developer"]},
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": _ref("ContentPart"), "maxItems": 8},
                ]
            },
            "name": {"type": "string"},
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["messages"],
        "properties": {
            **_SAMPLING,
            "messages": {
                "type": "array",
                "items": _ref("ChatMessage"),
                "minItems": 1,
                "maxItems": 16,
            },
            "logprobs": {"type": "boolean"},
            "top_logprobs": _integer(0, 20),
            "chat_template_kwargs": _nullable(
                {
                    "type": "object",
                    "description": (
                        "Extra variables of the chat template's render, e.g. "
                        '{"enable_thinking": false}; names the server sets (messages, tools, '
                        "add_generation_prompt, bos_token, eos_token, ...) are a 400."
                    ),
                }
            ),
            "reasoning_effort": _nullable({"enum": list(_REASONING_EFFORTS)}),
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            **_SAMPLING,
            "prompt": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
                    _TOKEN_IDS,
                ]
            },
            "echo": {"type": "boolean"},
            "logprobs": _integer(0, 5),
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 8},
                ]
            },
            "model": _nullable({"type": "string"}),
            "encoding_format": {"enum": ["float", "base64"]},
            "user": _nullable({"type": "string"}),
        },
    },
    "TokenizeRequest": {
        "type": "object",
        "required": ["content"],
        "properties": {
            "content": {"type": "string"},
            "add_special": {"type": "boolean"},
            "with_pieces": {"type": "boolean"},
        },
    },
    "DetokenizeRequest": {
        "type": "object",
        "required": ["tokens"],
        "properties": {"tokens": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
    },
    "TokenizeResponse": {
        "type": "object",
        "required": ["tokens"],
        "properties": {
            "tokens": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"type": "integer"},
                        {
                            "type": "object",
                            "required": ["id", "piece"],
                            "properties": {
                                "id": {"type": "integer"},
                                "piece": {
                                    "anyOf": [
                                        {"type": "string"},
                                        {"type": "array", "items": {"type": "integer"}},
                                    ]
                                },
                            },
                        },
                    ]
                },
            }
        },
    },
    "DetokenizeResponse": {
        "type": "object",
        "required": ["content"],
        "properties": {"content": {"type": "string"}},
    },
    "Usage": {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {
            "prompt_tokens": {"type": "integer", "minimum": 0},
            "completion_tokens": {"type": "integer", "minimum": 0},
            "total_tokens": {"type": "integer", "minimum": 0},
        },
    },
    "ChatCompletion": _completion(
        "chat.completion",
        message={
            "type": "object",
            # OpenAI's schema requires refusal (string or null); this server never refuses.
            "required": ["role", "content", "refusal"],
            "properties": {
                "role": {"const": "assistant"},
                "content": {"type": ["string", "null"]},
                "refusal": {"type": ["string", "null"]},
                "reasoning_content": {"type": "string"},
                "tool_calls": {"type": "array", "items": {"type": "object"}},
            },
        },
        finish_reason={"enum": ["stop", "length", "tool_calls", None]},
    ),
    "Completion": _completion(
        "text_completion",
        text={"type": "string"},
        finish_reason={"enum": ["stop", "length", None]},
    ),
    # One `data:` event of a stream (the paths list text/event-stream without a schema: SSE has
    # none in OpenAPI 3.1). A choice's first delta has its role and "refusal": null; with
    # stream_options.include_usage every chunk before the last has "usage": null, and the last
    # has no choices and the usage.
    "ChatCompletionChunk": _chunk(
        "chat.completion.chunk",
        delta={
            "type": "object",
            "properties": {
                "role": {"const": "assistant"},
                "content": {"type": ["string", "null"]},
                "refusal": {"type": ["string", "null"]},
                "tool_calls": {"type": "array"},
            },
        },
        finish_reason={"enum": ["stop", "length", "tool_calls", None]},
    ),
    "CompletionChunk": _chunk(
        "text_completion",
        text={"type": "string"},
        finish_reason={"enum": ["stop", "length", None]},
    ),
    "EmbeddingList": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": {"type": "integer"},
                        "embedding": {
                            "anyOf": [
                                {"type": "array", "items": {"type": "number"}},
                                {"type": "string"},
                            ]
                        },
                    },
                },
            },
            "model": {"type": "string"},
            "usage": {"type": "object"},
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": _ref("Model")},
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
}

# -- Anthropic Messages -----------------------------------------------------------------------

# A prefix cache hint (api/anthropic/breakpoints.py); at most 4 in a request, else a 400.
_CACHE_CONTROL: Schema = _nullable(
    {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"const": "ephemeral"}, "ttl": _nullable({"enum": ["5m", "1h"]})},
    }
)
_TEXT_BLOCK: Schema = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {
        "type": {"const": "text"},
        "text": {"type": "string"},
        "cache_control": _CACHE_CONTROL,
    },
}
_BLOCK: Schema = {
    "oneOf": [
        _TEXT_BLOCK,
        {
            "type": "object",
            "required": ["type", "id", "name", "input"],
            "properties": {
                "type": {"const": "tool_use"},
                "id": {"type": "string"},
                "name": {"type": "string"},
                "input": {"type": "object"},
                "cache_control": _CACHE_CONTROL,
            },
        },
        {
            "type": "object",
            "required": ["type", "tool_use_id"],
            "properties": {
                "type": {"const": "tool_result"},
                "tool_use_id": {"type": "string"},
                "content": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "array", "items": _TEXT_BLOCK},
                        {"type": "null"},
                    ]
                },
                "is_error": {"type": "boolean"},
                "cache_control": _CACHE_CONTROL,
            },
        },
        {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": ["thinking", "redacted_thinking"]}},
        },
    ]
}
_MESSAGES_INPUT: dict[str, Schema] = {
    "model": {"type": "string"},
    "messages": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"enum": ["user", "assistant"]},
                "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": _BLOCK}]},
            },
        },
    },
    "system": {
        "anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_BLOCK}, {"type": "null"}]
    },
    "tools": _nullable(
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "input_schema"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,128}$"},
                    "description": _nullable({"type": "string"}),
                    "input_schema": {"type": "object"},
                    "type": _nullable({"const": "custom"}),
                    "cache_control": _CACHE_CONTROL,
                },
            },
        }
    ),
    "tool_choice": _nullable(
        {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"enum": ["auto", "any", "tool", "none"]},
                "name": _nullable({"type": "string"}),
                "disable_parallel_tool_use": {"type": "boolean"},
            },
        }
    ),
    "thinking": _nullable(
        {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"enum": ["enabled", "disabled", "adaptive"]},
                "budget_tokens": _integer(MIN_THINKING_BUDGET),
            },
        }
    ),
}
_ANTHROPIC_SCHEMAS: dict[str, Schema] = {
    "AnthropicError": {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {"type": "string"},
                    "message": {"type": "string", "minLength": 1},
                },
            },
        },
    },
    "CountTokensRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": _MESSAGES_INPUT,
    },
    "MessagesRequest": {
        "type": "object",
        "description": (
            "Anthropic Messages. Content blocks of type "
            + ", ".join(sorted(UNSUPPORTED_BLOCKS))
            + " are refused with a 400 (no vision or document input)."
        ),
        "required": ["model", "messages", "max_tokens"],
        "properties": {
            **_MESSAGES_INPUT,
            "max_tokens": {"type": "integer", "minimum": 1},
            "stop_sequences": _nullable(
                {"type": "array", "items": _STOP_STRING, "maxItems": wire.MAX_STOP_SEQUENCES}
            ),
            "temperature": _number(0, 1),
            "top_p": _number(0, 1),
            "top_k": _integer(0),
            "metadata": _nullable({"type": "object"}),
            "stream": {"type": "boolean"},
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
        "properties": {
            "id": {"type": "string"},
            "type": {"const": "message"},
            "role": {"const": "assistant"},
            "model": {"type": "string"},
            "content": {"type": "array", "items": {"type": "object"}},
            "stop_reason": _nullable(
                {"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use"]}
            ),
            "stop_sequence": _nullable({"type": "string"}),
            "usage": {
                "type": "object",
                "required": ["input_tokens", "output_tokens"],
                "properties": {
                    "input_tokens": {"type": "integer"},
                    "output_tokens": {"type": "integer"},
                    "cache_creation_input_tokens": {"type": "integer"},
                    "cache_read_input_tokens": {"type": "integer"},
                },
            },
        },
    },
    "TokenCount": {
        "type": "object",
        "required": ["input_tokens"],
        "properties": {"input_tokens": {"type": "integer"}},
    },
}

# -- OpenAI Responses -------------------------------------------------------------------------

_TEXT_PART: Schema = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"enum": ["input_text", "output_text"]}, "text": {"type": "string"}},
}
_PARTS: Schema = {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]}
_INPUT_ITEM: Schema = {
    "oneOf": [
        {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "type": {"const": "message"},
                "role": {"enum": ["user", "assistant", "system", "developer"]},
                "content": _PARTS,
            },
        },
        {
            "type": "object",
            "required": ["type", "call_id", "name", "arguments"],
            "properties": {
                "type": {"const": "function_call"},
                "call_id": {"type": "string"},
                "name": {"type": "string"},
                "arguments": {"type": "string"},
            },
        },
        {
            "type": "object",
            "required": ["type", "call_id", "output"],
            "properties": {
                "type": {"const": "function_call_output"},
                "call_id": {"type": "string"},
                "output": _PARTS,
            },
        },
        {"type": "object", "required": ["type"], "properties": {"type": {"const": "reasoning"}}},
    ]
}
_RESPONSES_INPUT: dict[str, Schema] = {
    "model": _nullable({"type": "string"}),
    "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": _INPUT_ITEM}]},
    "instructions": _nullable({"type": "string"}),
    "tools": _nullable(
        {
            "type": "array",
            "description": "Function tools only; other tool types are a 400.",
            "items": {
                "type": "object",
                "required": ["type", "name"],
                "properties": {
                    "type": {"const": "function"},
                    "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                    "description": _nullable({"type": "string"}),
                    "parameters": _nullable({"type": "object"}),
                    "strict": _nullable({"type": "boolean"}),
                },
            },
        }
    ),
    "tool_choice": _nullable(
        {
            "anyOf": [
                {"enum": ["none", "auto", "required"]},
                {
                    "type": "object",
                    "required": ["type", "name"],
                    "properties": {"type": {"const": "function"}, "name": {"type": "string"}},
                },
            ]
        }
    ),
    "parallel_tool_calls": _nullable({"type": "boolean"}),
    "previous_response_id": _nullable({"type": "string"}),
    "text": _nullable(
        {
            "type": "object",
            "properties": {
                "format": _nullable(
                    {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"enum": ["text", "json_object", "json_schema"]},
                            "name": _nullable({"type": "string"}),
                            "schema": _nullable({"type": "object"}),
                            "strict": _nullable({"type": "boolean"}),
                        },
                    }
                )
            },
        }
    ),
    "reasoning": _nullable(
        {
            "type": "object",
            "properties": {
                "effort": _nullable({"enum": list(_REASONING_EFFORTS)}),
                "summary": _nullable({"type": "string"}),
            },
        }
    ),
}
_RESPONSES_SCHEMAS: dict[str, Schema] = {
    "ResponsesRequest": {
        "type": "object",
        "description": (
            "OpenAI Responses. Stored (store, the default) responses are kept per API key for "
            "previous_response_id and GET /v1/responses/{response_id}."
        ),
        "properties": {
            **_RESPONSES_INPUT,
            "max_output_tokens": _nullable({"type": "integer", "minimum": 1}),
            "temperature": _number(0, 2),
            "top_p": _number(0, 1),
            "stream": {"type": "boolean"},
            "store": {"type": "boolean"},
            "metadata": _nullable({"type": "object"}),
        },
    },
    "ResponsesInputTokensRequest": {"type": "object", "properties": _RESPONSES_INPUT},
    "Response": {
        "type": "object",
        "required": ["id", "object", "created_at", "status", "model", "output"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "response"},
            "created_at": {"type": "integer"},
            "status": {"enum": ["completed", "incomplete", "failed", "in_progress"]},
            "model": {"type": "string"},
            "output": {"type": "array", "items": {"type": "object"}},
            "incomplete_details": _nullable({"type": "object"}),
            "error": _nullable({"type": "object"}),
            "usage": _nullable({"type": "object"}),
        },
    },
    "ResponseDeleted": {
        "type": "object",
        "required": ["id", "object", "deleted"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "response.deleted"},
            "deleted": {"type": "boolean"},
        },
    },
    "ResponseInputTokens": {
        "type": "object",
        "required": ["object", "input_tokens"],
        "properties": {
            "object": {"const": "response.input_tokens"},
            "input_tokens": {"type": "integer"},
        },
    },
}

_ERRORS: dict[str, Schema] = {
    "default": {
        "description": "An error, in the OpenAI envelope",
        "content": {JSON: {"schema": _ref("Error")}},
    }
}
_ANTHROPIC_ERRORS: dict[str, Schema] = {
    "default": {
        "description": "An error, in Anthropic's envelope",
        "content": {JSON: {"schema": _ref("AnthropicError")}},
    }
}


def _post(
    summary: str,
    request: str,
    response: str,
    *,
    streams: bool = False,
    errors: dict[str, Schema] = _ERRORS,
) -> Schema:
    content: Schema = {JSON: {"schema": _ref(response)}}
    if streams:
        # Server-sent events: OpenAI's JSON chunks ending with `data: [DONE]`, or Anthropic's
        # named events: no one schema.
        content["text/event-stream"] = {}
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref(request)}}},
            "responses": {"200": {"description": summary, "content": content}, **errors},
        }
    }


def _get(summary: str, response: Schema, *, media: str = JSON, **extra: Any) -> Schema:
    ok = {"description": summary, "content": {media: {"schema": response}}}
    return {"get": {"summary": summary, **extra, "responses": {"200": ok, **_ERRORS}}}


def _delete(summary: str, response: Schema, **extra: Any) -> Schema:
    ok = {"description": summary, "content": {JSON: {"schema": response}}}
    return {"delete": {"summary": summary, **extra, "responses": {"200": ok, **_ERRORS}}}


def _readyz() -> Schema:
    # Not ready (loading, failed, draining) is a 503 with the same small body, not an error.
    spec = _get("Readiness", _ref("Status"))
    spec["get"]["responses"]["503"] = {
        "description": "Not ready",
        "content": {JSON: {"schema": _ref("Status")}},
    }
    return spec


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route."""
    model_id = {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
    response_id = {**model_id, "name": "response_id"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "llmserve",
            "version": "1",
            "description": (
                "OpenAI- (chat, completions, Responses) and Anthropic-compatible inference "
                "for GGUF models on llama.cpp."
            ),
        },
        "paths": {
            "/v1/chat/completions": _post(
                "Chat completion", "ChatCompletionRequest", "ChatCompletion", streams=True
            ),
            "/v1/completions": _post(
                "Text completion", "CompletionRequest", "Completion", streams=True
            ),
            "/v1/embeddings": _post("Embeddings", "EmbeddingRequest", "EmbeddingList"),
            "/v1/messages": _post(
                "Anthropic Messages (x-api-key or Bearer; anthropic-version accepted)",
                "MessagesRequest",
                "Message",
                streams=True,
                errors=_ANTHROPIC_ERRORS,
            ),
            "/v1/messages/count_tokens": _post(
                "Anthropic token count of a Messages prompt",
                "CountTokensRequest",
                "TokenCount",
                errors=_ANTHROPIC_ERRORS,
            ),
            "/v1/responses": _post(
                "OpenAI Responses (stored per API key unless store is false)",
                "ResponsesRequest",
                "Response",
                streams=True,
            ),
            "/v1/responses/input_tokens": _post(
                "Token count of a Responses prompt",
                "ResponsesInputTokensRequest",
                "ResponseInputTokens",
            ),
            "/v1/responses/{response_id}": {
                **_get("A stored response", _ref("Response"), parameters=[response_id]),
                **_delete(
                    "Delete a stored response", _ref("ResponseDeleted"), parameters=[response_id]
                ),
            },
            "/v1/models": _get("The served models", _ref("ModelList")),
            "/v1/models/{model_id}": _get("One served model", _ref("Model"), parameters=[model_id]),
            "/tokenize": _post("Text to token ids", "TokenizeRequest", "TokenizeResponse"),
            "/detokenize": _post("Token ids to text", "DetokenizeRequest", "DetokenizeResponse"),
            "/health": _get("Health", {"type": "object"}),
            "/ping": _get("Ping", _ref("Status")),
            "/livez": _get("Liveness", _ref("Status")),
            "/readyz": _readyz(),
            "/metrics": _get("Prometheus metrics", {"type": "string"}, media="text/plain"),
        },
        "components": {"schemas": {**_SCHEMAS, **_ANTHROPIC_SCHEMAS, **_RESPONSES_SCHEMAS}},
    }


@get("/openapi.json")
async def openapi_json() -> Response[bytes]:
    """The OpenAPI document, for clients and fuzzers."""
    return Response(content=codec.dumps(openapi_document()), media_type=JSON)
