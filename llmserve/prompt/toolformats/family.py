"""A model family's tool-call convention: how it is recognised, read and forced."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from attrs import frozen

from llmserve.prompt.toolformats.scan import Parse

# The parts of a call (placeholders in ``Forced.call``, values of ``Forced.keys``).
NAME, ARGUMENTS, INDEX, ID = "name", "args", "index", "id"
OBJECT = "object"
_PLACEHOLDER = re.compile(r"\{(name|args|object|index|id)\}")
# How a call's arguments are written (``Forced.args``).
JSON_ARGS = "json"  # one JSON object
XML_ARGS = "xml"  # Qwen3-Coder: <parameter=KEY>\nVALUE\n</parameter>\n per argument
GLM_ARGS = "glm"  # GLM 4.5, 4.6: <arg_key>KEY</arg_key>\n<arg_value>VALUE</arg_value>\n
GLM_COMPACT_ARGS = "glm_compact"  # GLM 4.7: the same without the newlines
# DeepSeek V3.2: a DSML parameter tag per argument, name="KEY" string="true|false", then
# VALUE (string="true": the bare string; "false": JSON), its closing tag and a newline
# (deepseek_dsml.param_open); V4 the same, and a call without arguments holds a blank line.
DSML_ARGS = "dsml"
DSML_V4_ARGS = "dsml_v4"
PY_ARGS = "python"  # LFM2: KEY=VALUE, ... (Python keyword arguments, each value JSON)
# The variables of a family's templates, from the request's tools and the time.
TemplateVariables = Callable[[Sequence[Mapping[str, Any]] | None, datetime], dict[str, Any]]


@frozen
class Forced:
    """One syntax of a family's calls, as a grammar forces it and as history is written in it.

    The output is ``open`` + a call + (``sep`` + a call)* + ``close`` (one call unless
    ``repeat``). ``call`` is one call's text around placeholders: ``{name}`` (the function's
    name), ``{args}`` (its arguments, written as ``args`` says), ``{index}`` (a number the model
    picks: Kimi's call index), ``{id}`` (nine letters or digits: Mistral's call id) and
    ``{object}``: one JSON object whose ``keys`` hold those parts, in that order. ``marker``: a
    template that contains it teaches this syntax (a family lists its default syntax first,
    without a marker, then the others, most specific first).
    """

    name: str
    call: str
    open: str = ""
    sep: str = "\n"
    close: str = ""
    repeat: bool = True
    args: str = JSON_ARGS
    keys: tuple[tuple[str, str], ...] = (("name", NAME), ("arguments", ARGUMENTS))
    marker: str | None = None

    def parts(self) -> list[tuple[bool, str]]:
        """``call`` split into (is a placeholder, text or placeholder name), in order."""
        out: list[tuple[bool, str]] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(self.call):
            if match.start() > pos:
                out.append((False, self.call[pos : match.start()]))
            out.append((True, match.group(1)))
            pos = match.end()
        if pos < len(self.call):
            out.append((False, self.call[pos:]))
        return out


@frozen
class Family:
    """One family: ``recognise`` reads the chat template text; ``parse`` reads outputs;
    ``forced``: its call syntaxes (``syntax`` picks the one a template teaches)."""

    name: str
    title: str  # the models, for people
    recognise: Callable[[str], bool]
    parse: Parse
    forced: tuple[Forced, ...]
    reasoning_open: str | None = None  # a prompt ending with it leaves the model reasoning
    reasoning_close: str | None = None
    # Its markup is control tokens even without tools (harmony channels, Command R's response
    # markers): they render as text for every chat request, not only those with tools.
    special_always: bool = False
    # Its templates refuse other tool-call ids (Mistral's: 9 letters or digits).
    call_id_length: int | None = None
    # Variables its templates read besides the usual ones (FireFunction's: the tools as JSON
    # text in ``functions``).
    variables: TemplateVariables | None = None

    @property
    def syntax(self) -> Forced:
        """The syntax calls are forced in (``registry.family`` puts a template's first)."""
        return self.forced[0]

    def syntax_for(self, template: str) -> Forced:
        """The syntax a chat template teaches: the first whose marker it contains, else the
        default."""
        marked = (f for f in self.forced if f.marker is not None and f.marker in template)
        return next(marked, self.forced[0])
