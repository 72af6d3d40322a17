"""What a request may switch in its chat template: extra variables, and its reasoning switch.

Every dialect says it differently, and templates read it differently:

- ``chat_template_kwargs`` (chat completions, as llama-server and vLLM take it): its keys
  become variables of the render, except those the server sets itself (``messages``,
  ``tools``, ``bos_token``...), which are the request's 400.
- ``reasoning_effort`` (chat completions) and ``reasoning.effort`` (Responses): the template
  gets ``reasoning_effort`` as sent (gpt-oss, Cohere2MoE, DeepSeek-V4 read it), and
  ``enable_thinking`` (Qwen3 and most thinking families) is false for ``none``, true for any
  other effort, as llama-server maps it.
- Anthropic ``thinking``: ``disabled`` sets ``enable_thinking`` false, ``enabled`` and
  ``adaptive`` true.

Lowest first: the model's ``[model] chat_template_kwargs``, the reasoning switch, the
request's own ``chat_template_kwargs``; an absent switch leaves the template's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from llmserve.config import SERVER_TEMPLATE_VARIABLES
from llmserve.errors import InvalidRequest

# OpenAI's reasoning efforts, as its SDK spells them.
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
NO_REASONING = "none"


def request_variables(kwargs: Mapping[str, Any] | None, *, param: str) -> dict[str, Any]:
    """A request's chat_template_kwargs as render variables; a name the server sets is a 400."""
    if not kwargs:
        return {}
    reserved = sorted(set(kwargs) & SERVER_TEMPLATE_VARIABLES)
    if reserved:
        names = ", ".join(repr(name) for name in reserved)
        raise InvalidRequest(
            f"Invalid '{param}': {names} cannot be set here; the server sets "
            f"{'it' if len(reserved) == 1 else 'them'} for every chat template.",
            param=param,
        )
    return dict(kwargs)


def effort_variables(effort: str | None) -> dict[str, Any]:
    """The template variables of a reasoning effort (none sent: none)."""
    if effort is None:
        return {}
    return {"reasoning_effort": effort, "enable_thinking": effort != NO_REASONING}


def thinking_variables(enabled: bool | None) -> dict[str, Any]:
    """The template variables of a thinking switch (None: the template's default)."""
    return {} if enabled is None else {"enable_thinking": enabled}
