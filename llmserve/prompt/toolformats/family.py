"""A model family's tool-call convention: how it is recognised, read and forced."""

from __future__ import annotations

from collections.abc import Callable

from attrs import frozen

from llmserve.prompt.toolformats.scan import Parse


@frozen
class Forced:
    """How a forced call is written, for the grammar: ``prefix`` + JSON + ``suffix``.

    ``object``: the JSON is ``{name_key: NAME, args_key: {...}}``; ``args``: the JSON is the
    arguments alone and NAME is in the prefix (``{name}``), which one grammar can only do for
    one tool at a time.
    """

    prefix: str
    suffix: str
    shape: str = "object"  # "object" or "args"
    name_key: str = "name"
    args_key: str = "arguments"
    repeat: bool = True  # several calls, a newline apart, read back as several (parallel)


@frozen
class Family:
    """One family: ``recognise`` reads the chat template text; ``parse`` reads outputs."""

    name: str
    title: str  # the models, for people
    recognise: Callable[[str], bool]
    parse: Parse
    forced: Forced | None  # None: forced in Hermes syntax (a JSON grammar cannot say it)
    reasoning_open: str | None = None  # a prompt ending with it leaves the model reasoning
    # Its markup is control tokens even without tools (harmony channels, Command R's response
    # markers): they render as text for every chat request, not only those with tools.
    special_always: bool = False
    # Its templates refuse other tool-call ids (Mistral's: 9 letters or digits).
    call_id_length: int | None = None
