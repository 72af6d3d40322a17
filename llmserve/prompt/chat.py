"""Chat templates: messages -> prompt text.

The template comes from, in order: the configured override, the GGUF's
``tokenizer.chat_template``, or a built-in chosen by architecture (Gemma's turn format for the
Gemma family, ChatML for everything else). Templates are model-supplied code, so they run in
Jinja2's sandbox with the same environment Hugging Face transformers gives them
(``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``, ``raise_exception``, ``strftime_now``,
a non-HTML-escaping ``tojson``), bounded in steps, time and size by ``sandbox.py``.

Templates differ in how they take an assistant's tool calls, so each is tried once, when a
request first has calls, on a short history with one call (as llama.cpp probes its
templates): arguments go in as an object where the template shows them from one, else as JSON
text (Functionary v3.2 concatenates them); a template that shows no calls at all (Granite 3.3,
LFM2) gets them written into the assistant's content in its family's syntax, as the model
writes them. A template that refuses a system turn (Gemma 2's) gets its text in the first user
turn instead, as llama.cpp does.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    MAX_RENDER_SECONDS,
    BoundedSandbox,
    counted,
    json_indent_ok,
    new_budget,
    sealed,
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


# The history a template is tried on (``ChatTemplate._probe_calls``), as llama.cpp's own probe.
PROBE_NAME, PROBE_KEY, PROBE_VALUE = "probe_tool", "probe_argument", "probe-value-7f3a"
# A real template renders in milliseconds; a hostile one must not hold up a model's load.
PROBE_SECONDS = 0.2
PROBE_ARGUMENTS = {PROBE_KEY: PROBE_VALUE}
PROBE_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": PROBE_NAME,
            "description": "A tool",
            "parameters": {
                "type": "object",
                "properties": {PROBE_KEY: {"type": "string", "description": "An argument"}},
                "required": [PROBE_KEY],
            },
        },
    }
]
PROBE_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "User message"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {"name": PROBE_NAME, "arguments": PROBE_ARGUMENTS},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call00001", "content": "Tool response"},
    {"role": "assistant", "content": "Done"},
    {"role": "user", "content": "User message"},
]


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
        value,
        ensure_ascii=ensure_ascii,
        indent=indent,
        separators=separators,
        sort_keys=sort_keys,
        default=_json_default,
    )


def _json_default(value: Any) -> Any:
    # What llama.cpp's engine serialises and json does not: a filter's generator
    # (``tools | map(attribute='function') | tojson``), any mapping, undefined as null.
    if isinstance(value, jinja2.Undefined):
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(counted(value))
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


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
        "_calls_probe",
        "_compiled",
        "_system_probe",
        "bos_token",
        "clock",
        "defaults",
        "eos_token",
        "handles_tools",
        "source",
        "text",
        "tool_format",
        "tool_syntax",
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
        # The family whose calls the model writes: configured, else recognised from the text;
        # and the syntax of its calls the template teaches.
        family = (
            toolformats.family(tool_format) if tool_format else toolformats.recognise(self.text)
        )
        self.tool_format = family.name
        self.tool_syntax = toolformats.template_syntax(family, self.text)
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
        # Tried when a request first needs them (a hostile template must not slow a load):
        self._calls_probe: tuple[bool, bool] | None = None
        self._system_probe: bool | None = None

    @property
    def string_arguments(self) -> bool:
        """The template shows a call's arguments given as JSON text, not as an object."""
        if self._calls_probe is None:
            self._calls_probe = self._probe_calls()
        return self._calls_probe[0]

    @property
    def shows_calls(self) -> bool:
        """The template writes an assistant's calls into the prompt (else they go into the
        content, in the family's syntax)."""
        if self._calls_probe is None:
            self._calls_probe = self._probe_calls()
        return self._calls_probe[1]

    @property
    def takes_system(self) -> bool:
        """The template takes a system turn (Gemma 2's refuses one: its text then goes at the
        start of the first user turn, as llama.cpp does)."""
        if self._system_probe is None:
            self._system_probe = self._probe_system()
        return self._system_probe

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
        elif any(m.get("tool_calls") for m in messages):
            messages = [self._calls_as_taken(m) if m.get("tool_calls") else m for m in messages]
        if messages and messages[0]["role"] == "system" and not self.takes_system:
            messages = _system_merged(messages)
        return self._render(messages, tools, add_generation_prompt, variables=variables)

    def _probe_system(self) -> bool:
        """False for a template that refuses a system turn the same history without one
        renders with."""
        user = {"role": "user", "content": "User message"}
        system = {"role": "system", "content": "System message"}
        try:
            self._render([system, user], None, True, seconds=PROBE_SECONDS)
        except ChatTemplateError:
            try:
                self._render([user], None, True, seconds=PROBE_SECONDS)
            except ChatTemplateError:
                return True  # it fails for another reason: nothing to learn
            return False
        return True

    def _calls_as_taken(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """An assistant turn with its calls as this template takes them."""
        entry = dict(message)
        calls = entry.pop("tool_calls")
        if not self.shows_calls:
            syntax = toolformats.family(self.tool_format, self.tool_syntax).syntax
            text = toolformats.write_calls(syntax, calls)
            content = entry.get("content")
            entry["content"] = (
                f"{content}\n{text}" if isinstance(content, str) and content else text
            )
            return entry
        entry["tool_calls"] = [_with_arguments(call, self.string_arguments) for call in calls]
        return entry

    def _probe_calls(self) -> tuple[bool, bool]:
        """(arguments as JSON text, calls shown) for this template: a history with one call,
        rendered with the arguments as an object and as text, must show the argument's value
        or the call's name (more often than the history without the call does). A template
        that fails both ways is left as it is (objects, shown)."""
        without = copy.deepcopy(PROBE_MESSAGES)
        del without[1]["tool_calls"]
        base = self._tried(without)
        shown: list[bool | None] = []
        for arguments in (PROBE_ARGUMENTS, json.dumps(PROBE_ARGUMENTS)):
            messages = copy.deepcopy(PROBE_MESSAGES)
            messages[1]["tool_calls"][0]["function"]["arguments"] = arguments
            text = self._tried(messages)
            if text is None:
                shown.append(None)
            elif isinstance(arguments, dict) and f"'{PROBE_KEY}'" in text:
                shown.append(False)  # printed as a Python dict: not what the model read
            else:
                named = base is not None and text.count(PROBE_NAME) > base.count(PROBE_NAME)
                shown.append(PROBE_VALUE in text or named)
        as_object, as_text = shown
        if as_object is None and as_text is None:
            return False, True
        return (not as_object and bool(as_text)), bool(as_object or as_text)

    def _tried(self, messages: Sequence[Mapping[str, Any]]) -> str | None:
        """A probe's render (bounded tighter than a request's), or None if it fails."""
        try:
            return self._render(messages, PROBE_TOOLS, True, seconds=PROBE_SECONDS)
        except ChatTemplateError:
            return None

    def _render(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        add_generation_prompt: bool,
        seconds: float = MAX_RENDER_SECONDS,
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        parts: list[str] = []
        size = 0
        budget = BUDGET.set(new_budget(seconds))
        try:
            # The template gets a sealed copy: it can change neither the caller's messages and
            # tools (nor, say, a tool schema the grammar reads next) nor its own inputs.
            context: dict[str, Any] = {
                **{name: sealed(value) for name, value in self._family_variables(tools).items()},
                **{name: sealed(value) for name, value in self.defaults.items()},
                **{name: sealed(value) for name, value in (variables or {}).items()},
                "messages": sealed(messages),
                "add_generation_prompt": add_generation_prompt,
                "bos_token": self.bos_token,
                "eos_token": self.eos_token,
                "strftime_now": self._strftime_now,
            }
            # Templates test ``tools is defined``: only pass tools when the request has them.
            if tools is not None:
                context["tools"] = sealed(tools)
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

    def _family_variables(self, tools: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
        """What the tool family's templates read besides the usual variables (FireFunction's
        tools as JSON text), below the model's and the request's own."""
        variables = toolformats.family(self.tool_format).variables
        return variables(tools, self.clock()) if variables is not None else {}

    def _strftime_now(self, fmt: str) -> str:
        return self.clock().strftime(fmt)


def _with_arguments(call: Mapping[str, Any], as_text: bool) -> dict[str, Any]:
    """The call with its arguments as JSON text (``as_text``) or as the object it holds (text
    that is not a JSON object stays text)."""
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if as_text and not isinstance(arguments, str):
        function["arguments"] = json.dumps(arguments, ensure_ascii=False)
    elif not as_text and isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            parsed = json.loads(arguments)
            if isinstance(parsed, dict):
                function["arguments"] = parsed
    return {**call, "function": function}


def _system_merged(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The leading system turns' text put at the start of the turn after them (a user turn of
    its own when nothing follows)."""
    rest = list(messages)
    texts = []
    while rest and rest[0]["role"] == "system":
        content = rest.pop(0).get("content")
        if isinstance(content, str) and content:
            texts.append(content)
    if not texts:
        return rest
    if not rest:
        return [{"role": "user", "content": "\n".join(texts)}]
    head = dict(rest[0])
    content = head.get("content")
    head["content"] = "\n".join([*texts, content] if isinstance(content, str) else texts)
    rest[0] = head
    return rest
