"""Forced tool calls (``tool_choice`` required, or a named function) as a GBNF grammar in the
model family's own syntax (``toolformats.Forced``): the model writes what it was trained to
write, and the family's parser reads it back.

One alternative per tool, the function's name written out, so a choice among several tools
needs no fallback syntax. Arguments are valid against each tool's parameters schema (checked by
``grammar.check_schema``): a JSON argument object, or a JSON call object, is written by the
engine's JSON-schema converter (``SchemaRule``); arguments written one parameter at a time
(Qwen3-Coder's ``<parameter=...>``, GLM's ``<arg_value>``) follow the schema's properties in
order, the required ones always, each value typed as the family's parser reads it back: a
parameter the schema types ``string`` as bare text (its enum, pattern, format and length
enforced), an enum of words too, any other as JSON; LFM2's keyword arguments (``KEY=VALUE``)
follow them in the same order, each value JSON.

A prompt that leaves the model inside its reasoning (a template ending with ``<think>``) gets
that reasoning closed first, empty: the client asked for a call now.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from llmserve.engine.protocol import GbnfGrammar, SchemaRule
from llmserve.prompt.grammar import ANY, DEFS, UnsupportedSchema, check_schema
from llmserve.prompt.toolformats import (
    ARGUMENTS,
    DSML_ARGS,
    DSML_V4_ARGS,
    GLM_ARGS,
    GLM_COMPACT_ARGS,
    ID,
    INDEX,
    JSON_ARGS,
    NAME,
    OBJECT,
    PY_ARGS,
    XML_ARGS,
    Family,
    Forced,
)
from llmserve.prompt.toolformats.deepseek_dsml import END_PARAM, param_open
from llmserve.prompt.toolformats.pythonic import KEYWORD

RULE = "llmserve"  # our rules' prefix (the converter's rules are named after ours, or primitives)
# Bare text of a string parameter: no control characters but tab and newline, and no "<", so
# no closing tag either (used where a length is enforced; free text may hold "<").
RAW_CHAR = "[^\\x00-\\x08\\x0B-\\x1F\\x7F<]"
_DATE = '[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )'
_TIME = (
    '( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? '
    '( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )'
)
_UUID = '[0-9a-fA-F]{8} ( "-" [0-9a-fA-F]{4} ){3} "-" [0-9a-fA-F]{12}'
RAW_FORMATS = {
    "date": _DATE,
    "time": _TIME,
    "date-time": f'{_DATE} "T" {_TIME}',
    "uuid": _UUID,
    **{f"uuid{i}": _UUID for i in range(1, 6)},
}
# The JSON values of a call object's parts other than name and arguments.
_PART_SCHEMAS: dict[str, dict[str, Any]] = {
    INDEX: {"type": "string", "pattern": "^[0-9]{1,3}$"},  # Command R's tool_call_id
    ID: {"type": "string", "pattern": "^[a-zA-Z0-9]{9}$"},  # Mistral Nemo's id
}
_PART_RULES = {INDEX: "[0-9]{1,3}", ID: "[a-zA-Z0-9]{9}"}
# Where a bare parameter value ends, by argument style: the text may not contain it.
_VALUE_END = {
    XML_ARGS: "</parameter>",
    GLM_ARGS: "</arg_value>",
    GLM_COMPACT_ARGS: "</arg_value>",
    DSML_ARGS: END_PARAM,
    DSML_V4_ARGS: END_PARAM,
}


def tool_call_grammar(
    tools: Sequence[tuple[str, Mapping[str, Any] | None, str]],
    *,
    parallel: bool,
    family: Family,
    prompt: str = "",
) -> GbnfGrammar:
    """A call of one of ``tools`` (name, parameters schema, and the request field that schema
    came from) in ``family``'s syntax, or several if ``parallel`` and the syntax allows them;
    ``prompt``: the rendered prompt the output continues."""
    syntax = family.syntax
    writer = _Writer(syntax)
    names = [writer.call(i, *tool) for i, tool in enumerate(tools)]
    writer.lines.append(f"{RULE}-call ::= {' | '.join(names)}")
    calls = f"{RULE}-call"
    if parallel and syntax.repeat:
        calls = f"{calls} ({literal(syntax.sep)} {calls})*" if syntax.sep else f"{calls}+"
    root = [literal(text) for text in (reasoning_closed(family, prompt) + syntax.open,) if text]
    root.append(calls)
    root += [literal(syntax.close)] if syntax.close else []
    writer.lines.insert(0, f"root ::= {' '.join(root)}")
    return GbnfGrammar(text="\n".join(writer.lines), rules=tuple(writer.rules))


def reasoning_closed(family: Family, prompt: str) -> str:
    """What a forced output starts with after ``prompt``: the reasoning closed, empty, if the
    prompt left the model inside it, and a blank line unless the calls open with their own."""
    opened, close = family.reasoning_open, family.reasoning_close
    if not (opened and close and prompt.rstrip().endswith(opened)):
        return ""
    return close if family.syntax.open[:1].isspace() else close + "\n\n"


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def text_without(name: str, end: str) -> list[str]:
    """GBNF rules (``NAME-0`` the start) for any text that does not contain ``end``: one rule
    per characters of ``end`` matched so far, as a string-search automaton."""
    rules = []
    alphabet = sorted(set(end))
    for state in range(len(end)):
        seen = end[:state]
        moves: list[str] = [""]  # the text may stop anywhere
        leaving: list[str] = []
        for ch in alphabet:
            nxt = _next_state(end, seen + ch)
            if nxt == len(end):
                leaving.append(ch)  # completes ``end``: not allowed
            elif nxt:
                leaving.append(ch)
                moves.append(f"{literal(ch)} {name}-{nxt}")
        others = "".join(_class_char(ch) for ch in leaving)
        moves.append(f"[^{others}] {name}-0")
        rules.append(f"{name}-{state} ::= {' | '.join(moves)}")
    return rules


def _next_state(end: str, seen: str) -> int:
    """The longest start of ``end`` that ``seen`` ends with."""
    for k in range(min(len(end), len(seen)), 0, -1):
        if seen.endswith(end[:k]):
            return k
    return 0


def _class_char(ch: str) -> str:
    return f"\\x{ord(ch):02X}" if ord(ch) < 0x100 else f"\\u{ord(ch):04X}"


def _bare_choices(schema: Mapping[str, Any]) -> bool:
    """An enum (or const) of strings none of which reads as JSON: written bare, as a model
    writes it, and still read back as that string."""
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    if not values or not all(isinstance(v, str) for v in values):
        return False
    for value in values:
        try:
            json.loads(value)
        except ValueError:
            continue
        return False
    return True


class _Writer:
    """Writes the rules of one grammar: ``lines`` of GBNF, ``rules`` for the converter."""

    def __init__(self, syntax: Forced) -> None:
        self.syntax = syntax
        self.lines: list[str] = []
        self.rules: list[SchemaRule] = []
        self._texts: dict[str, str] = {}

    def schema_rule(self, schema: Mapping[str, Any], *, raw: bool = False) -> str:
        name = f"{RULE}-v{len(self.rules)}"
        self.rules.append(SchemaRule(name=name, schema=json.dumps(schema), raw=raw))
        return name

    def call(self, index: int, name: str, parameters: Mapping[str, Any] | None, param: str) -> str:
        empty = {"type": "object", "properties": {}}
        arguments = check_schema(empty if parameters is None else parameters, param=param)
        pieces = []
        for placeholder, text in self.syntax.parts():
            if not placeholder:
                pieces.append(literal(text))
            elif text == NAME:
                pieces.append(literal(name))
            elif text == OBJECT:
                pieces.append(self.schema_rule(self.call_object(name, arguments)))
            elif text == ARGUMENTS and self.syntax.args == JSON_ARGS:
                pieces.append(self.schema_rule(arguments))
            elif text == ARGUMENTS and self.syntax.args == PY_ARGS:
                pieces.append(
                    self.keyword_arguments(f"{RULE}-call-{index}", name, arguments, param)
                )
            elif text == ARGUMENTS:
                pieces += self.tagged_arguments(name, arguments, parameters, param)
            else:
                pieces.append(_PART_RULES[text])
        rule = f"{RULE}-call-{index}"
        self.lines.append(f"{rule} ::= {' '.join(pieces) or literal('')}")
        return rule

    def call_object(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        # The arguments' definitions move to the root, where their "#/$defs/..." point.
        body = {k: v for k, v in arguments.items() if k not in DEFS}
        parts = {NAME: {"const": name}, ARGUMENTS: body, **_PART_SCHEMAS}
        return {
            "type": "object",
            "properties": {key: parts[part] for key, part in self.syntax.keys},
            "required": [key for key, _ in self.syntax.keys],
            "additionalProperties": False,
            **{k: v for k, v in arguments.items() if k in DEFS},
        }

    def tagged_arguments(
        self,
        tool: str,
        arguments: dict[str, Any],
        original: Mapping[str, Any] | None,
        param: str,
    ) -> list[str]:
        """One tagged value per parameter, in the schema's order; optional ones may be left
        out."""
        kind = self.syntax.args
        if not self.object_parameters(tool, arguments, param):
            # Any arguments: none written (V4 writes a blank line in a call without any).
            return [literal("\n")] if kind == DSML_V4_ARGS else []
        declared = (original or {}).get("properties")
        declared = declared if isinstance(declared, Mapping) else {}
        required = set(arguments.get("required", ()))
        # Each value's schema carries the definitions its "#/$defs/..." point at.
        defs = {k: v for k, v in arguments.items() if k in DEFS}
        line = "" if kind == GLM_COMPACT_ARGS else "\n"
        pieces, optional = [], []
        for key, schema in arguments.get("properties", {}).items():
            given = declared.get(key)
            text = isinstance(given, Mapping) and given.get("type") == "string"
            bare = text or _bare_choices(schema)
            if bare:
                value = self.bare(schema, _VALUE_END[kind])
            else:
                value = self.schema_rule({**schema, **defs})
            if kind == XML_ARGS:
                head, tail = f"<parameter={key}>\n", "\n</parameter>\n"
            elif kind in (DSML_ARGS, DSML_V4_ARGS):
                head, tail = param_open(key, bare), f"{END_PARAM}\n"
            else:
                head, tail = f"<arg_key>{key}</arg_key>{line}<arg_value>", f"</arg_value>{line}"
            one = f"{literal(head)} {value} {literal(tail)}"
            pieces.append(one if key in required else f"( {one} )?")
            optional += [] if key in required else [one]
        if kind == DSML_V4_ARGS and len(optional) == len(pieces):
            # V4 writes a blank line in a call without arguments: some of them, or that line.
            blank = literal("\n")
            return [f"( {self.some(optional)} | {blank} )" if optional else blank]
        return pieces

    def some(self, ones: list[str]) -> str:
        """At least one of ``ones``, in their order, each at most once: a rule per position
        (``-k``: at least one of ``ones[k:]``; ``-any-k``: any of them)."""
        name = f"{RULE}-some-{len(self.lines)}"
        for k, one in enumerate(ones):
            if k + 1 < len(ones):
                self.lines.append(f"{name}-{k} ::= {one} {name}-any-{k + 1} | {name}-{k + 1}")
            else:
                self.lines.append(f"{name}-{k} ::= {one}")
            if k > 0:
                rest = f" {name}-any-{k + 1}" if k + 1 < len(ones) else ""
                self.lines.append(f"{name}-any-{k} ::= ( {one} )?{rest}")
        return f"{name}-0"

    def object_parameters(self, tool: str, arguments: dict[str, Any], param: str) -> bool:
        """Whether the arguments have parameters to write one by one (False: any arguments);
        a schema that is not an object's is a 400."""
        if arguments == ANY:
            return False
        if arguments.get("type") != "object":
            raise UnsupportedSchema(
                f"Tool '{tool}': calls in the '{self.syntax.name}' syntax write one value per "
                "parameter, so its parameters must be an object schema.",
                param=param,
            )
        return True

    def keyword_arguments(self, rule: str, tool: str, arguments: dict[str, Any], param: str) -> str:
        """Python keyword arguments (LFM2), ``KEY=VALUE`` with ", " between: the schema's
        properties in order, the required ones always, each value JSON valid against its
        schema. Rules ``RULE-kwN``: the arguments from property N on with none written before
        them, ``RULE-ktN``: the same after one written (each then led by ", ")."""
        if not self.object_parameters(tool, arguments, param):
            return literal("")  # any arguments: none written
        defs = {k: v for k, v in arguments.items() if k in DEFS}
        required = set(arguments.get("required", ()))
        for key in arguments.get("properties", {}):
            if not re.fullmatch(KEYWORD, key):
                raise UnsupportedSchema(
                    f"Tool '{tool}': parameter {key!r} cannot be a keyword argument in the "
                    f"'{self.syntax.name}' syntax (no spaces, quotes, brackets, '=' or ',').",
                    param=param,
                )
        items = [
            (f"{literal(key + '=')} {self.schema_rule({**schema, **defs})}", key in required)
            for key, schema in arguments.get("properties", {}).items()
        ]
        self.lines += [
            f"{rule}-kw{len(items)} ::= {literal('')}",
            f"{rule}-kt{len(items)} ::= {literal('')}",
        ]
        for n, (value, needed) in reversed(list(enumerate(items))):
            after = f"{value} {rule}-kt{n + 1}"
            first = after if needed else f"{after} | {rule}-kw{n + 1}"
            later = (
                f"{literal(', ')} {after}"
                if needed
                else f"( {literal(', ')} {value} )? {rule}-kt{n + 1}"
            )
            self.lines += [f"{rule}-kw{n} ::= {first}", f"{rule}-kt{n} ::= {later}"]
        return f"{rule}-kw0"

    def bare(self, schema: Mapping[str, Any], end: str) -> str:
        """A string parameter's value as bare text, as the parser reads it back."""
        values = [schema["const"]] if "const" in schema else schema.get("enum")
        if values is not None:
            return "( " + " | ".join(literal(str(v)) for v in values) + " )"
        if "pattern" in schema:
            return self.schema_rule({"type": "string", "pattern": schema["pattern"]}, raw=True)
        if "format" in schema:
            return f"( {RAW_FORMATS[schema['format']]} )"
        if "minLength" in schema or "maxLength" in schema:
            high = schema.get("maxLength")
            return f"{RAW_CHAR}{{{schema.get('minLength', 0)},{'' if high is None else high}}}"
        if end not in self._texts:
            name = f"{RULE}-text-{len(self._texts)}"
            self._texts[end] = name
            self.lines += text_without(name, end)
        return f"{self._texts[end]}-0"
