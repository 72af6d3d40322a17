"""JSON schemas for constrained output: keep what the grammar enforces, refuse the rest.

llama.cpp's JSON-schema-to-GBNF converter (``llama_cpp.llama_grammar``, run by ``sampling``)
drops keywords it does not understand without a word, and mishandles a few it does (a
``type`` list loses its siblings; ``items: {}`` crashes it). A schema it mistranslated would
give output that parses but does not validate. So every schema passes ``check_schema`` first:
annotations are stripped, a few forms are rewritten into ones the converter gets right, and any
keyword whose constraint the grammar would not enforce is a 400 naming it and where it is.
What remains is enforced exactly: the output validates against the schema the client sent
(unless ``max_tokens`` cuts it short).

Supported: ``type`` (one or a list), ``enum``, ``const``, ``anyOf``, local ``$ref`` into
``$defs`` / ``definitions`` (recursion included), ``properties``, ``required``,
``additionalProperties``, ``items``, ``prefixItems``, ``minItems``, ``maxItems``,
``minLength``, ``maxLength``, ``format`` (date, time, date-time, uuid) and ``pattern`` (a
regular-expression subset: literals, classes, groups, ``|``, ``* + ? {m,n}``, ``\\d \\w \\s``).
"""

from __future__ import annotations

import json
from typing import Any

from llmserve.engine.protocol import JsonGrammar
from llmserve.errors import InvalidRequest

TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
# Any JSON value. The converter turns an empty schema into "an object", so spell it out.
ANY: dict[str, Any] = {"anyOf": [{"type": t} for t in TYPES if t != "integer"]}
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
DEFS = ("$defs", "definitions")
OBJECT_KEYWORDS = frozenset({"properties", "required", "additionalProperties"})
ARRAY_KEYWORDS = frozenset({"items", "prefixItems", "minItems", "maxItems"})
STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern", "format"})
SUPPORTED = (
    frozenset({"type", "enum", "const", "anyOf", "$ref", *DEFS})
    | OBJECT_KEYWORDS
    | ARRAY_KEYWORDS
    | STRING_KEYWORDS
)
FORMATS = frozenset({"date", "time", "date-time", "uuid", *(f"uuid{i}" for i in range(1, 6))})


class UnsupportedSchema(InvalidRequest):
    """The schema asks for something the grammar sampler would not enforce."""


def check_schema(schema: object, *, param: str) -> dict[str, Any]:
    """The schema, normalized for the converter; 400 naming anything it would not enforce."""
    checker = _Checker(param)
    normalized = checker.node(schema, "#")
    checker.check_refs(normalized, normalized, "#")
    if "$ref" in normalized:
        # The converter collects the targets of references only below a root without one.
        normalized = {"anyOf": [{"$ref": normalized.pop("$ref")}], **normalized}
    return normalized


def json_object_grammar() -> JsonGrammar:
    """``response_format: json_object``: any JSON object."""
    return JsonGrammar(schema=json.dumps({"type": "object"}))


def json_schema_grammar(schema: object, *, param: str) -> JsonGrammar:
    """``response_format: json_schema``: JSON that validates against ``schema``."""
    return JsonGrammar(schema=json.dumps(check_schema(schema, param=param)))


class _Checker:
    def __init__(self, param: str) -> None:
        self.param = param

    def fail(self, path: str, message: str) -> UnsupportedSchema:
        return UnsupportedSchema(
            f"Unsupported JSON schema at '{path}': {message}", param=self.param
        )

    def node(self, schema: object, path: str) -> dict[str, Any]:
        if schema is True:
            return dict(ANY)
        if schema is False:
            raise self.fail(path, "a false schema allows no value at all")
        if not isinstance(schema, dict):
            raise self.fail(path, "a schema must be an object or a boolean")
        out = {k: v for k, v in schema.items() if k not in ANNOTATIONS}
        unknown = sorted(set(out) - SUPPORTED)
        if unknown:
            raise self.fail(
                path,
                f"'{unknown[0]}' is not supported (the grammar would not enforce it); "
                f"supported keywords: {', '.join(sorted(SUPPORTED))}",
            )
        defs = {k: self.defs(out.pop(k), f"{path}/{k}") for k in DEFS if k in out}
        return {**self.body(out, path), **defs}

    def check_refs(self, root: dict[str, Any], node: object, path: str) -> None:
        """Every reference must point at a schema in the document."""
        if isinstance(node, list):
            for i, item in enumerate(node):
                self.check_refs(root, item, f"{path}/{i}")
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target: object = root
                for part in ref[2:].split("/"):
                    if not isinstance(target, dict) or part not in target:
                        raise self.fail(path, f"the reference {ref!r} points at nothing")
                    target = target[part]
            for key, value in node.items():
                if key not in ("enum", "const"):
                    self.check_refs(root, value, f"{path}/{key}")

    def defs(self, value: object, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "definitions must be an object of schemas")
        return {name: self.node(sub, f"{path}/{name}") for name, sub in value.items()}

    def body(self, out: dict[str, Any], path: str) -> dict[str, Any]:
        if not out:
            return dict(ANY)
        if "$ref" in out:
            return self.ref(out, path)
        if "anyOf" in out:
            return self.any_of(out, path)
        kind = out.get("type")
        if isinstance(kind, list):
            return self.type_list(out, kind, path)
        if kind is not None and kind not in TYPES:
            raise self.fail(f"{path}/type", f"unknown type {kind!r}")
        if "enum" in out or "const" in out:
            return self.constant(out, path)
        kind = kind or self.implied_type(out, path)
        if kind == "object":
            return self.object(out, path)
        if kind == "array":
            return self.array(out, path)
        if kind == "string":
            return self.string(out, path)
        # number, integer, boolean, null: keywords of other types do not apply to them.
        return {"type": kind} if kind else dict(ANY)

    def ref(self, out: dict[str, Any], path: str) -> dict[str, Any]:
        ref = out["$ref"]
        if len(out) > 1:
            raise self.fail(path, f"'$ref' with sibling keywords ({', '.join(sorted(out))})")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise self.fail(path, f"only local references ('#/$defs/...') are supported: {ref!r}")
        return out

    def any_of(self, out: dict[str, Any], path: str) -> dict[str, Any]:
        if len(out) > 1:
            others = ", ".join(sorted(k for k in out if k != "anyOf"))
            raise self.fail(path, f"'anyOf' with sibling keywords ({others})")
        options = out["anyOf"]
        if not isinstance(options, list) or not options:
            raise self.fail(f"{path}/anyOf", "must be a non-empty array of schemas")
        return {"anyOf": [self.node(s, f"{path}/anyOf/{i}") for i, s in enumerate(options)]}

    def type_list(self, out: dict[str, Any], kinds: list[Any], path: str) -> dict[str, Any]:
        if not kinds or any(k not in TYPES for k in kinds) or len(set(kinds)) != len(kinds):
            raise self.fail(f"{path}/type", f"must list distinct JSON types: {kinds!r}")
        rest = {k: v for k, v in out.items() if k != "type"}
        if len(kinds) == 1:
            return self.body({**rest, "type": kinds[0]}, path)
        # The converter keeps only the types of a list; one branch per type keeps the rest.
        return {"anyOf": [self.body({**rest, "type": k}, path) for k in kinds]}

    def constant(self, out: dict[str, Any], path: str) -> dict[str, Any]:
        extra = sorted(set(out) - {"enum", "const", "type"})
        if extra or ("enum" in out and "const" in out):
            raise self.fail(path, f"'enum'/'const' with other constraints ({', '.join(extra)})")
        values = [out["const"]] if "const" in out else out["enum"]
        if not isinstance(values, list) or not values:
            raise self.fail(f"{path}/enum", "must be a non-empty array")
        kind = out.get("type")
        wrong = next((v for v in values if kind is not None and not _is_type(v, kind)), None)
        if wrong is not None:
            raise self.fail(path, f"{wrong!r} is not of type {kind!r}")
        return out

    def implied_type(self, out: dict[str, Any], path: str) -> str | None:
        kinds = [
            kind
            for kind, words in (
                ("object", OBJECT_KEYWORDS),
                ("array", ARRAY_KEYWORDS),
                ("string", STRING_KEYWORDS),
            )
            if words & set(out)
        ]
        if len(kinds) > 1:
            raise self.fail(path, f"give a 'type': keywords of {' and '.join(kinds)} are mixed")
        return kinds[0] if kinds else None

    def object(self, out: dict[str, Any], path: str) -> dict[str, Any]:
        properties = out.get("properties", {})
        if not isinstance(properties, dict):
            raise self.fail(f"{path}/properties", "must be an object of schemas")
        result: dict[str, Any] = {"type": "object"}
        if properties:
            result["properties"] = {
                name: self.node(sub, f"{path}/properties/{name}")
                for name, sub in properties.items()
            }
        required = out.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise self.fail(f"{path}/required", "must be an array of property names")
        missing = [r for r in required if r not in properties]
        if missing:
            raise self.fail(f"{path}/required", f"'{missing[0]}' is not in 'properties'")
        if required:
            result["required"] = required
        extra = out.get("additionalProperties")
        if extra is False or (extra is None and properties):
            # Closed: the converter writes the listed properties only.
            result["additionalProperties"] = False
        elif properties:
            # The converter's extra keys may repeat a listed one, with a value of the wrong type.
            raise self.fail(path, "'additionalProperties' alongside 'properties'")
        elif extra is not True and extra is not None:
            result["additionalProperties"] = self.node(extra, f"{path}/additionalProperties")
        return result

    def array(self, out: dict[str, Any], path: str) -> dict[str, Any]:
        result: dict[str, Any] = {"type": "array"}
        low, high = out.get("minItems", 0), out.get("maxItems")
        self.counts(low, high, path, "Items")
        if "prefixItems" in out:
            prefix = out["prefixItems"]
            if not isinstance(prefix, list) or not prefix:
                raise self.fail(f"{path}/prefixItems", "must be a non-empty array of schemas")
            if out.get("items", False) is not False or "minItems" in out or "maxItems" in out:
                raise self.fail(path, "'prefixItems' with 'items', 'minItems' or 'maxItems'")
            result["prefixItems"] = [
                self.node(s, f"{path}/prefixItems/{i}") for i, s in enumerate(prefix)
            ]
            return result
        items = out.get("items", True)
        if items is False:
            raise self.fail(f"{path}/items", "'items': false needs 'prefixItems'")
        if isinstance(items, list):
            raise self.fail(f"{path}/items", "an array of schemas is 'prefixItems' now")
        result["items"] = self.node(items, f"{path}/items")
        if low:
            result["minItems"] = low
        if high is not None:
            result["maxItems"] = high
        return result

    def string(self, out: dict[str, Any], path: str) -> dict[str, Any]:
        present = sorted(STRING_KEYWORDS & set(out))
        if len(present) > 1 and not set(present) <= {"minLength", "maxLength"}:
            raise self.fail(path, f"combining {' and '.join(present)} is not supported")
        result: dict[str, Any] = {"type": "string"}
        if "format" in out:
            if out["format"] not in FORMATS:
                raise self.fail(
                    f"{path}/format",
                    f"format {out['format']!r} is not supported; supported: "
                    f"{', '.join(sorted(FORMATS))}",
                )
            result["format"] = out["format"]
        if "pattern" in out:
            result["pattern"] = _Pattern(self, f"{path}/pattern").translate(out["pattern"])
        low, high = out.get("minLength", 0), out.get("maxLength")
        self.counts(low, high, path, "Length")
        if low or high is not None:
            result["minLength"] = low
            if high is not None:
                result["maxLength"] = high
        return result

    def counts(self, low: object, high: object, path: str, what: str) -> None:
        if not _is_count(low) or (high is not None and not _is_count(high)):
            raise self.fail(path, f"'min{what}' and 'max{what}' must be non-negative integers")
        if high is not None and high < low:  # type: ignore[operator]
            raise self.fail(path, f"'max{what}' is below 'min{what}'")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_type(value: object, kind: str) -> bool:
    match kind:
        case "null":
            return value is None
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "string":
            return isinstance(value, str)
        case "array":
            return isinstance(value, list)
    return isinstance(value, dict)


# Characters a pattern may produce: JSON strings need no escape for them. Quotes, backslashes
# and control characters would (and the converter would emit them raw).
def _plain(ch: str) -> bool:
    return ch >= " " and ch not in '"\\\x7f'


_CLASS_ESCAPES = {"d": "0-9", "w": "A-Za-z0-9_", "s": " "}
_ESCAPABLE = frozenset(".-()[]{}*+?|/^$")
# Escaped outside a class: these stay literal characters for the converter; the others become
# one-character classes (GBNF knows no escape for them).
_LITERAL_ESCAPES = frozenset("/^$-")


class _Pattern:
    """Checks a regular expression against the subset the converter translates safely, and
    rewrites it for the converter (anchored; ``\\d`` and escaped metacharacters as classes).

    Narrowing is fine (``\\s`` produces only spaces): every string the grammar allows matches.
    """

    def __init__(self, checker: _Checker, path: str) -> None:
        self.checker = checker
        self.path = path

    def fail(self, message: str) -> UnsupportedSchema:
        return self.checker.fail(self.path, message)

    def translate(self, pattern: object) -> str:
        if not isinstance(pattern, str):
            raise self.fail("must be a string")
        # An unanchored pattern matches anywhere; generating a whole match satisfies it too.
        body = pattern.removeprefix("^")
        if body.endswith("$") and not body.endswith("\\$"):
            body = body[:-1]
        out: list[str] = []
        i, depth = 0, 0
        while i < len(body):
            ch = body[i]
            if ch == "\\":
                out.append(self.escape(body[i + 1 : i + 2]))
                i += 2
                continue
            if ch == "[":
                end, text = self.char_class(body, i + 1)
                out.append(text)
                i = end
                continue
            if ch == "(":
                if body[i + 1 : i + 2] == "?":
                    raise self.fail("groups with '(?' (lookaround, named, non-capturing)")
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    raise self.fail("unbalanced ')'")
            elif ch in "*+?" and body[i + 1 : i + 2] in ("?", "+"):
                raise self.fail("lazy or possessive quantifiers")
            elif ch == "{":
                end = body.find("}", i)
                spec = body[i + 1 : end] if end > 0 else ""
                if not spec or not all(p.strip().isdigit() or not p for p in spec.split(",")):
                    raise self.fail(f"a quantifier must be {{m}}, {{m,}} or {{m,n}}: {spec!r}")
                out.append(body[i : end + 1])
                i = end + 1
                continue
            elif ch in "^$":
                raise self.fail(f"'{ch}' is supported only at the start or end")
            elif ch == ".":
                raise self.fail("'.' (it would allow characters JSON must escape); use a class")
            elif ch not in "|" and not _plain(ch):
                raise self.fail(f"the character {ch!r}")
            out.append(ch)
            i += 1
        if depth:
            raise self.fail("unbalanced '('")
        return "^" + "".join(out) + "$"

    def escape(self, ch: str) -> str:
        if ch in _CLASS_ESCAPES:
            return f"[{_CLASS_ESCAPES[ch]}]"
        if ch in _LITERAL_ESCAPES:
            return ch
        if ch == "]":
            return "[\\]]"
        if ch in _ESCAPABLE:
            return f"[{ch}]"
        raise self.fail(f"the escape '\\{ch}'")

    def char_class(self, body: str, i: int) -> tuple[int, str]:
        if body[i : i + 1] == "^":
            raise self.fail("negated classes '[^...]' (they would allow quotes and backslashes)")
        members: list[str] = []
        tail = ""  # escaped ^ and -, placed last where both GBNF and re read them literally
        while i < len(body) and body[i] != "]":
            ch = body[i]
            if ch == "\\":
                esc = body[i + 1 : i + 2]
                if esc in _CLASS_ESCAPES:
                    members.append(_CLASS_ESCAPES[esc])
                elif esc in "^-" and esc:
                    tail = "".join(sorted(set(tail + esc), reverse=True))  # "^-"
                elif esc in _ESCAPABLE:
                    members.append("\\]" if esc == "]" else esc)
                else:
                    raise self.fail(f"the escape '\\{esc}' in a class")
                i += 2
                continue
            if not _plain(ch):
                raise self.fail(f"the character {ch!r} in a class")
            members.append(ch)
            i += 1
        if i >= len(body):
            raise self.fail("unbalanced '['")
        text = "".join(members)
        self.check_ranges(text)
        if not text:  # nothing for "^" to follow: "[^]" would read as a negation
            if not tail:
                raise self.fail("an empty class '[]'")
            return i + 1, {"^": "^", "-": "[-]", "^-": "[-^]"}[tail]
        return i + 1, f"[{text}{tail}]"

    def check_ranges(self, text: str) -> None:
        for k in range(1, len(text) - 1):
            if text[k] == "-" and text[k - 1] != "\\":
                low, high = text[k - 1], text[k + 1]
                if any(low <= bad <= high for bad in '"\\'):
                    raise self.fail(f"the range {low}-{high} includes a quote or a backslash")
