"""An Anthropic Messages request as the shared engine path takes it.

- ``system`` becomes a system turn, without the ``x-anthropic-billing-header:`` line Claude
  Code starts it with: that line changes with every conversation and, at the head of the
  prompt, would keep the prefix cache from ever matching the long stable prompt after it.
- ``tool_use`` blocks become an assistant turn's ``tool_calls``; ``tool_result`` blocks become
  ``tool`` turns (``is_error`` results are marked as errors in their text), and text next to
  them a user turn after them; ``thinking`` blocks are dropped.
- ``tools`` become OpenAI function tools; ``tool_choice`` ``any`` / ``tool`` constrain the
  output to calls by grammar, exactly as OpenAI's ``required`` / a named function do, and
  ``none`` leaves the tools out of the prompt.
- ``thinking`` switches the template's ``enable_thinking``: off when ``disabled``, on when
  ``enabled`` or ``adaptive``, the template's default when absent.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from attrs import frozen

from llmserve.api.anthropic.wire import (
    Block,
    MessagesInput,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from llmserve.api.generation import ChatInput
from llmserve.api.outputs import OutputReading, output_reading
from llmserve.engine import protocol
from llmserve.errors import InvalidRequest
from llmserve.prompt import switches, toolformats, toolgrammar

# Claude Code's per-conversation first line of the system prompt.
BILLING_HEADER = re.compile(r"^x-anthropic-billing-header:[^\n]*(\n|$)", re.MULTILINE)
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
ERROR_PREFIX = "Error: "


@frozen
class ToolPlan:
    """The tools a request offers the model, and whether it must call one (and which)."""

    tools: tuple[dict[str, Any], ...]  # OpenAI function tools, as templates take them
    choice: Literal["auto", "any"] | str  # another str: the one tool to call
    parallel: bool

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t["function"]["name"] for t in self.tools)

    def schemas(self) -> dict[str, Any]:
        return {t["function"]["name"]: t["function"]["parameters"] for t in self.tools}

    def reading(self, family: toolformats.Family) -> OutputReading:
        """How the output's calls are read back (forced calls: in the syntax forced)."""
        return output_reading(
            family,
            self.schemas(),
            single=not self.parallel or self.choice not in ("auto", "any"),
        )

    def grammar(self, family: toolformats.Family, prompt: str) -> protocol.GbnfGrammar | None:
        if self.choice == "auto":
            return None
        return toolgrammar.tool_call_grammar(
            [
                (
                    t["function"]["name"],
                    t["function"]["parameters"],
                    f"tools[{i}].input_schema",
                )
                for i, t in enumerate(self.tools)
                if self.choice == "any" or t["function"]["name"] == self.choice
            ],
            parallel=self.parallel and self.choice == "any",
            family=family,
            prompt=prompt,
        )


def tool_plan(request: MessagesInput) -> ToolPlan | None:
    """The request's tool use, or None when the model gets no tools."""
    choice = request.tool_choice
    if not request.tools:
        if choice is not None and choice.type in ("any", "tool"):
            raise InvalidRequest(f"tool_choice: '{choice.type}' requires 'tools'.")
        return None
    if choice is not None and choice.type == "none":
        return None
    tools = []
    for i, tool in enumerate(request.tools):
        if not _TOOL_NAME.fullmatch(tool.name):
            raise InvalidRequest(
                f"tools.{i}.name: {tool.name!r} does not match '^[a-zA-Z0-9_-]{{1,128}}$'."
            )
        function: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            function["description"] = tool.description
        function["parameters"] = tool.input_schema
        tools.append({"type": "function", "function": function})
    names = {t.name for t in request.tools}
    picked: str = "auto"
    if choice is not None and choice.type == "any":
        picked = "any"
    elif choice is not None and choice.type == "tool":
        if choice.name is None:
            raise InvalidRequest("tool_choice.name: Field required for type 'tool'.")
        if choice.name not in names:
            raise InvalidRequest(f"tool_choice.name: no tool named {choice.name!r} in 'tools'.")
        picked = choice.name
    parallel = choice is None or not choice.disable_parallel_tool_use
    return ToolPlan(tuple(tools), picked, parallel)


def system_text(system: str | tuple[TextBlock, ...] | None) -> str:
    """The system prompt as one text, the billing-header line left out."""
    if system is None:
        return ""
    blocks = (system,) if isinstance(system, str) else tuple(b.text for b in system)
    kept = (BILLING_HEADER.sub("", text) for text in blocks)
    return "\n".join(text for text in kept if text.strip())


def chat_input(request: MessagesInput, plan: ToolPlan | None) -> ChatInput:
    """The request's conversation as the chat template takes it."""
    messages: list[dict[str, Any]] = []
    system = system_text(request.system)
    if system:
        messages.append({"role": "system", "content": system})
    calls: set[str] = set()
    for i, message in enumerate(request.messages):
        if isinstance(message.content, str):
            messages.append({"role": message.role, "content": message.content})
        elif message.role == "assistant":
            messages.append(_assistant(message.content, calls))
        else:
            messages += _user(message.content, calls, f"messages.{i}")
    thinking = request.thinking.enabled if request.thinking is not None else None
    return ChatInput(
        messages,
        list(plan.tools) if plan is not None else None,
        switches.thinking_variables(thinking),
    )


def _assistant(blocks: tuple[Block, ...], calls: set[str]) -> dict[str, Any]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            calls.add(block.id)
            tool_calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": block.input},
                }
            )
        elif isinstance(block, ToolResultBlock):
            raise InvalidRequest("tool_result blocks belong in user turns, not assistant ones.")
    entry: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if tool_calls:
        entry["tool_calls"] = tool_calls
    return entry


def _user(blocks: tuple[Block, ...], calls: set[str], where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    for j, block in enumerate(blocks):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolResultBlock):
            if block.tool_use_id not in calls:
                raise InvalidRequest(
                    f"{where}.content.{j}: tool_result block for tool_use_id "
                    f"{block.tool_use_id!r} has no tool_use block before it."
                )
            text = _result_text(block, f"{where}.content.{j}")
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": block.tool_use_id,
                    "content": ERROR_PREFIX + text if block.is_error else text,
                }
            )
        elif isinstance(block, ToolUseBlock):
            raise InvalidRequest(f"{where}.content.{j}: tool_use blocks belong in assistant turns.")
        elif isinstance(block, ThinkingBlock):
            continue
    if texts or not out:
        out.append({"role": "user", "content": "\n".join(texts)})
    return out


def _result_text(block: ToolResultBlock, where: str) -> str:
    if block.content is None or isinstance(block.content, str):
        return block.content or ""
    texts = []
    for k, part in enumerate(block.content):
        if not isinstance(part, TextBlock):
            raise InvalidRequest(
                f"{where}.content.{k}: a tool_result holds text blocks only, not '{part.type}'."
            )
        texts.append(part.text)
    return "\n".join(texts)


def generation(
    request: MessagesRequest, plan: ToolPlan | None, family: toolformats.Family, prompt: str
) -> protocol.GenerationRequest:
    """The engine request for ``prompt`` with the request's limits and sampling; ``family``
    (the model's tool-call family) shapes forced calls and control-token text."""
    defaults = protocol.SamplingParams()
    sampling = protocol.SamplingParams(
        temperature=defaults.temperature if request.temperature is None else request.temperature,
        top_p=defaults.top_p if request.top_p is None else request.top_p,
        top_k=defaults.top_k if request.top_k is None else request.top_k,
    )
    return protocol.GenerationRequest(
        prompt=prompt,
        max_tokens=request.max_tokens,
        stop=tuple(request.stop_sequences or ()),
        sampling=sampling,
        grammar=plan.grammar(family, prompt) if plan is not None else None,
        special_tokens=plan is not None or family.special_always,
    )
