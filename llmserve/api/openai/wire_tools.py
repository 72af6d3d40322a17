"""The OpenAI wire format of tools, tool calls and ``response_format``, and the grammar each
request asks for (``output_grammar``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from attrs import Attribute, field, frozen

from llmserve.engine.protocol import GbnfGrammar, JsonGrammar
from llmserve.errors import InvalidRequest
from llmserve.prompt import grammar, toolformats, toolgrammar

_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _function_name(_: Any, attribute: Attribute[Any], value: str) -> None:
    if not _FUNCTION_NAME.fullmatch(value):
        raise InvalidRequest(
            f"Invalid '{attribute.name}': {value!r} does not match '^[a-zA-Z0-9_-]{{1,64}}$'.",
            param=attribute.name,
        )


@frozen(kw_only=True)
class FunctionCall:
    """A call's function: its name and its arguments as JSON text."""

    name: str
    arguments: str


@frozen(kw_only=True)
class ToolCall:
    """A tool call, in an assistant message (request or response)."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


@frozen(kw_only=True)
class FunctionDefinition:
    name: str = field(validator=_function_name)
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema of the arguments object
    strict: bool | None = None


@frozen(kw_only=True)
class Tool:
    type: Literal["function"]
    function: FunctionDefinition


@frozen
class NamedFunction:
    name: str


@frozen(kw_only=True)
class NamedToolChoice:
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


@frozen(kw_only=True)
class JsonSchemaFormat:
    name: str = field(validator=_function_name)
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None  # the schema is always enforced, strict or not


@frozen(kw_only=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


# -- what a request asks of the output --------------------------------------------------------


@frozen
class ToolUse:
    """How a chat request uses its tools: rendered into the prompt, and calls parsed back."""

    tools: tuple[Tool, ...]
    choice: Literal["auto", "required"] | str  # a str other than those: the named function

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t.function.name for t in self.tools)

    @property
    def forced(self) -> bool:
        return self.choice != "auto"

    def schemas(self) -> dict[str, dict[str, Any] | None]:
        """Each tool's parameters schema, by name (typed values of XML-argument families)."""
        return {t.function.name: t.function.parameters for t in self.tools}


def tool_use(tools: tuple[Tool, ...] | None, choice: ToolChoice | None) -> ToolUse | None:
    """The tool use of a request, or None when the model gets no tools (none given, or
    ``tool_choice: none``, which leaves them out of the prompt too)."""
    if not tools:
        if choice is not None and choice != "none":
            raise InvalidRequest(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                param="tool_choice",
            )
        return None
    if choice == "none":
        return None
    if isinstance(choice, NamedToolChoice):
        name = choice.function.name
        if name not in {t.function.name for t in tools}:
            raise InvalidRequest(
                f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.",
                param="tool_choice",
            )
        return ToolUse(tools, name)
    return ToolUse(tools, choice or "auto")


def output_grammar(
    response_format: ResponseFormat | None,
    use: ToolUse | None,
    *,
    parallel: bool,
    family: toolformats.Family,
    prompt: str = "",
) -> JsonGrammar | GbnfGrammar | None:
    """The grammar that constrains the output, if the request asks for one (forced calls
    continue ``prompt``, the rendered prompt)."""
    if use is not None and use.choice != "auto":
        if response_format is not None and response_format.type != "text":
            raise InvalidRequest(
                "'response_format' cannot be combined with a 'tool_choice' that forces a call.",
                param="response_format",
            )
        tools = [
            (t.function.name, t.function.parameters, f"tools[{i}].function.parameters")
            for i, t in enumerate(use.tools)
            if use.choice == "required" or t.function.name == use.choice
        ]
        # A named function is one call, and then the answer ends (no room for a second one
        # that max_tokens would cut); parallel calls only where "required" allows any number.
        many = parallel and use.choice == "required"
        return toolgrammar.tool_call_grammar(tools, parallel=many, family=family, prompt=prompt)
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return grammar.json_object_grammar()
    spec = response_format.json_schema
    if spec is None:
        raise InvalidRequest(
            "Missing required parameter: 'response_format.json_schema'.",
            param="response_format.json_schema",
        )
    if spec.schema is None:  # OpenAI: no schema means any JSON object
        return grammar.json_object_grammar()
    return grammar.json_schema_grammar(spec.schema, param="response_format.json_schema.schema")
