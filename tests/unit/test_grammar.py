"""JSON schemas for constrained output: what is enforced, how it is normalized, what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from llmserve.prompt.grammar import (
    ANY,
    UnsupportedSchema,
    check_schema,
)

PARAM = "response_format.json_schema.schema"


def check(schema: object) -> dict[str, Any]:
    return check_schema(schema, param=PARAM)


def refusal(schema: object) -> UnsupportedSchema:
    with pytest.raises(UnsupportedSchema) as caught:
        check(schema)
    assert caught.value.param == PARAM
    assert caught.value.status == 400
    return caught.value


def test_annotations_are_dropped_and_an_empty_schema_is_any_value() -> None:
    """title, description, default, $schema... constrain nothing; {} and true mean any value."""
    schema = {"title": "T", "description": "d", "$schema": "x", "type": "integer", "default": 1}
    assert check(schema) == {"type": "integer"}
    assert check({"title": "only a title"}) == ANY
    assert check(True) == ANY


def test_a_type_list_becomes_one_branch_per_type_keeping_the_rest() -> None:
    """The converter would drop maxLength beside a type list; a branch per type keeps it."""
    assert check({"type": ["string", "null"], "maxLength": 3}) == {
        "anyOf": [{"type": "string", "minLength": 0, "maxLength": 3}, {"type": "null"}]
    }


def test_objects_are_closed_unless_only_additional_properties_are_given() -> None:
    """Listed properties: no others are generated; a map: values by their schema."""
    closed = check({"properties": {"a": {"type": "integer"}}, "required": ["a"]})
    assert closed == {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    mapping = check({"type": "object", "additionalProperties": {"type": "number"}})
    assert mapping == {"type": "object", "additionalProperties": {"type": "number"}}


def test_a_root_reference_is_wrapped_so_the_converter_finds_its_targets() -> None:
    """llama-cpp-python resolves references only below a root that has none."""
    schema = {"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n"}
    assert check(schema) == {"anyOf": [{"$ref": "#/$defs/n"}], "$defs": {"n": {"type": "integer"}}}


@pytest.mark.parametrize(
    ("pattern", "translated"),
    [
        ("[a-z]+", "^[a-z]+$"),
        ("^\\d{3}-\\w$", "^[0-9]{3}-[A-Za-z0-9_]$"),
        ("^a\\.b\\-c$", "^a[.]b-c$"),
        ("^(ab|cd)?[x\\-]$", "^(ab|cd)?[x-]$"),
    ],
)
def test_patterns_are_anchored_and_rewritten_for_the_converter(
    pattern: str, translated: str
) -> None:
    """Unanchored patterns are anchored (a whole match also matches anywhere); \\d, \\w and
    escaped metacharacters become classes the converter translates."""
    assert check({"type": "string", "pattern": pattern})["pattern"] == translated


@pytest.mark.parametrize(
    "keyword",
    [
        {"minimum": 0},
        {"maximum": 9},
        {"exclusiveMinimum": 0},
        {"multipleOf": 2},
        {"oneOf": [{"type": "string"}]},
        {"allOf": [{"type": "string"}]},
        {"not": {"type": "string"}},
        {"if": {}, "then": {}},
        {"uniqueItems": True},
        {"contains": {}},
        {"minProperties": 1},
        {"patternProperties": {}},
        {"propertyNames": {}},
        {"dependentRequired": {}},
    ],
)
def test_keywords_the_grammar_would_not_enforce_are_refused_by_name(
    keyword: dict[str, Any],
) -> None:
    """Never a silently unconstrained answer: the 400 names the keyword and where it is."""
    (name,) = [k for k in keyword if k != "then"] or ["if"]
    error = refusal({"type": "object", "properties": {"x": {"type": "integer", **keyword}}})
    assert f"'{name}'" in error.message
    assert "'#/properties/x'" in error.message


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"$ref": "#/$defs/a", "type": "object", "$defs": {"a": {}}}, "'$ref' with sibling"),
        ({"anyOf": [{}], "type": "string"}, "'anyOf' with sibling"),
        ({"enum": ["a"], "maxLength": 3}, "'enum'/'const' with other"),
        ({"type": "integer", "enum": ["a"]}, "is not of type"),
        ({"type": "string", "pattern": "^a$", "format": "date"}, "combining format and pattern"),
        ({"properties": {"a": {}}, "additionalProperties": True}, "alongside 'properties'"),
        ({"properties": {"a": {}}, "required": ["b"]}, "'b' is not in 'properties'"),
        ({"$ref": "https://example.com/s.json"}, "only local references"),
        ({"$ref": "#/$defs/missing"}, "points at nothing"),
        ({"type": "thing"}, "unknown type"),
        ({"type": "string", "format": "email"}, "format 'email' is not supported"),
        ({"type": "array", "prefixItems": [{}], "items": {}}, "'prefixItems' with"),
        ({"type": "array", "minItems": 3, "maxItems": 1}, "'maxItems' is below"),
        ({"properties": {}, "items": {}}, "give a 'type'"),
        (False, "allows no value"),
    ],
)
def test_schemas_the_converter_would_mistranslate_are_refused(schema: object, words: str) -> None:
    """Forms llama-cpp-python's converter drops or gets wrong are a 400 saying why."""
    assert words in refusal(schema).message


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("a.b", "'.'"),
        ("[^a]", "negated classes"),
        ("(?=a)b", "'(?'"),
        ("\\bword", "the escape '\\b'"),
        ("a*?", "lazy"),
        ('["]', "the character '\"'"),
        ("[ -~]", "includes a quote or a backslash"),
        ("a^b", "'^' is supported only"),
        ("(ab", "unbalanced '('"),
    ],
)
def test_patterns_outside_the_safe_subset_are_refused(pattern: str, words: str) -> None:
    """A pattern that could produce characters JSON must escape, or that the converter cannot
    translate, is refused rather than half-enforced."""
    assert words in refusal({"type": "string", "pattern": pattern}).message
