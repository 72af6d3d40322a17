"""Chat templates: messages -> prompt text.

The template comes from, in order: the configured override, the GGUF's
``tokenizer.chat_template``, or a built-in chosen by architecture (Gemma's turn format for the
Gemma family, ChatML for everything else). Templates are model-supplied code, so they run in
Jinja2's immutable sandbox with the same environment Hugging Face transformers gives them
(``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``, ``raise_exception``, ``strftime_now``,
a non-HTML-escaping ``tojson``), bounded in steps, time and size by ``sandbox.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

import jinja2
import jinja2.ext
import jinja2.nodes

from llmserve.engine.protocol import TemplateSource
from llmserve.errors import InvalidRequest, ModelLoadError
from llmserve.prompt import toolformats
from llmserve.prompt.sandbox import (
    BUDGET,
    MAX_RENDER_CHARS,
    BoundedSandbox,
    json_indent_ok,
    new_budget,
)
from llmserve.prompt.toolcalls import plain_messages

GEMMA_ARCHITECTURES = frozenset({"gemma", "gemma2", "gemma3", "gemma3n"})

# Google's Gemma template, minus ``{{ bos_token }}`` (the tokenizer adds BOS) and minus the
# strict role-alternation check: clients routinely send two user turns in a row, and the model
# copes with it better than the user copes with a 400.
GEMMA_TEMPLATE = """\
{%- macro content_text(content) -%}
    {%- if content is string -%}
        {{ content | trim }}
    {%- elif content is iterable and content is not mapping -%}
        {%- for part in content if part['type'] == 'text' -%}
            {{ part['text'] | trim }}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = content_text(messages[0]['content']) + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = '' -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- if not loop_messages and first_user_prefix -%}
    {{ '<start_of_turn>user\n' + first_user_prefix + '<end_of_turn>\n' }}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}
    {{- content_text(message['content']) -}}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"""

CHATML_TEMPLATE = """\
{%- macro content_text(content) -%}
    {%- if content is string -%}
        {{ content }}
    {%- elif content is iterable and content is not mapping -%}
        {%- for part in content if part['type'] == 'text' -%}
            {{ part['text'] }}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{%- for message in messages -%}
    {{ '<|im_start|>' + message['role'] + '\n' }}
    {{- content_text(message['content']) -}}
    {{ '<|im_end|>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<|im_start|>assistant\n' }}
{%- endif -%}
"""


class ChatTemplateError(InvalidRequest):
    """The chat template refused or failed to render these messages."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="messages")


def _raise_exception(message: str) -> NoReturn:
    raise ChatTemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson HTML-escapes <, >, & and '; prompts must carry them verbatim.
    json_indent_ok(indent)
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class _GenerationTag(jinja2.ext.Extension):
    """Accept transformers' ``{% generation %}`` marker block; render its body unchanged."""

    tags = frozenset({"generation"})

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def _environment() -> jinja2.Environment:
    env = BoundedSandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols, _GenerationTag],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    return env


def builtin_template(architecture: str) -> tuple[str, str]:
    """The built-in (name, source) for a model architecture without a template of its own."""
    if architecture in GEMMA_ARCHITECTURES:
        return "builtin:gemma", GEMMA_TEMPLATE
    return "builtin:chatml", CHATML_TEMPLATE


class ChatTemplate:
    """The chat template of one model, compiled once, rendered per request."""

    __slots__ = (
        "_compiled",
        "bos_token",
        "clock",
        "defaults",
        "eos_token",
        "handles_tools",
        "source",
        "text",
        "tool_format",
    )

    def __init__(
        self,
        *,
        gguf_template: str | None,
        override: str | None,
        architecture: str,
        bos_token: str,
        eos_token: str,
        clock: Callable[[], datetime] = datetime.now,
        tool_format: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if override and override.strip():
            self.source, self.text = "override", override
        elif gguf_template and gguf_template.strip():
            self.source, self.text = "gguf", gguf_template
        else:
            self.source, self.text = builtin_template(architecture)
        self.bos_token = bos_token
        self.eos_token = eos_token
        # A template that never mentions tools would drop them (and may refuse tool turns):
        # tools, calls and results then go in as text, in the convention of toolcalls.py.
        self.handles_tools = "tools" in self.text
        # The family whose calls the model writes: configured, else recognised from the text.
        self.tool_format = tool_format or toolformats.recognise(self.text).name
        self.clock = clock
        # [model] chat_template_kwargs: variables of every render, a request's win key by key.
        self.defaults: dict[str, Any] = dict(defaults or {})
        try:
            self._compiled = _environment().from_string(self.text)
        except jinja2.TemplateSyntaxError as exc:
            raise ModelLoadError(
                f"chat template ({self.source}) has a syntax error at line {exc.lineno}: "
                f"{exc.message}"
            ) from exc

    @classmethod
    def from_source(cls, source: TemplateSource) -> ChatTemplate:
        """The template a loaded model describes (``engine.protocol.TemplateFactory``)."""
        return cls(
            gguf_template=source.gguf_template,
            override=source.override,
            architecture=source.architecture,
            bos_token=source.bos_token,
            eos_token=source.eos_token,
            tool_format=source.tool_format,
            defaults=source.variables,
        )

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[Mapping[str, Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        """Render messages to prompt text; a template failure is the request's 400.

        ``variables`` (checked by ``switches``: none the server sets) go on top of the
        model's defaults, as extra template variables such as ``enable_thinking``."""
        if not self.handles_tools and (
            tools or any(m["role"] == "tool" or m.get("tool_calls") for m in messages)
        ):
            messages, tools = plain_messages(messages, tools), None
        context: dict[str, Any] = {
            **self.defaults,
            **(variables or {}),
            "messages": messages,
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "strftime_now": self._strftime_now,
        }
        # Templates test ``tools is defined``: only pass tools when the request has them.
        if tools is not None:
            context["tools"] = tools
        parts: list[str] = []
        size = 0
        budget = BUDGET.set(new_budget())
        try:
            # Streaming the render lets an over-long output stop early instead of filling RAM.
            for part in self._compiled.generate(context):
                size += len(part)
                if size > MAX_RENDER_CHARS:
                    raise ChatTemplateError(
                        f"chat template output exceeds {MAX_RENDER_CHARS} characters"
                    )
                parts.append(part)
        except ChatTemplateError:
            raise
        except jinja2.exceptions.SecurityError as exc:
            raise ChatTemplateError(f"chat template tried an unsafe operation: {exc}") from exc
        except Exception as exc:
            # Whatever the template does wrong with these messages (undefined attribute, a type
            # error, a runaway recursion) the request cannot be served as sent.
            raise ChatTemplateError(
                f"chat template ({self.source}) failed to render the messages: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            BUDGET.reset(budget)
        return "".join(parts)

    def _strftime_now(self, fmt: str) -> str:
        return self.clock().strftime(fmt)
