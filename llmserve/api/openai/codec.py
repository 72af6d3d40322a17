"""The one cattrs converter: JSON requests in, response dicts and JSON bytes out.

Structuring is strict about JSON types (``"0.5"`` is not a number, ``true`` is not an int),
because OpenAI is, and lenient about unknown keys, because OpenAI is too. Every failure becomes
one ``InvalidRequest`` whose ``param`` is the path of the first bad field, e.g.
``messages[0].role``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
from cattrs import Converter
from cattrs.cols import homogenous_tuple_structure_factory
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from llmserve.api.openai.wire import KEEP_NULL, ContentPart
from llmserve.api.openai.wire_embeddings import EmbeddingInput
from llmserve.api.openai.wire_tools import NamedToolChoice, ToolChoice
from llmserve.errors import InvalidRequest

T = TypeVar("T")

_UNPARSEABLE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The API expects a JSON payload, but what was sent was "
    "not valid JSON.)"
)


class _WrongType(TypeError):
    """A JSON value of the wrong kind; carries enough to say what was expected."""

    def __init__(self, expected: str, value: object) -> None:
        super().__init__(f"expected {expected}, got {_kind(value)}")
        self.expected = expected
        self.value = value


class _NotAllowed(ValueError):
    """A value outside a fixed set (a Literal)."""

    def __init__(self, value: object, allowed: tuple[object, ...]) -> None:
        super().__init__(f"{value!r} not in {allowed!r}")
        self.value = value
        self.allowed = allowed


def _kind(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return type(value).__name__


# -- strict primitives ------------------------------------------------------------------------


def _structure_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise _WrongType("a string", value)
    return value


def _structure_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _WrongType("an integer", value)
    return value


def _structure_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _WrongType("a number", value)
    return float(value)


def _structure_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise _WrongType("a boolean", value)
    return value


# -- unions the wire format uses --------------------------------------------------------------


def _structure_stop(value: object, _: type) -> str | tuple[str, ...] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return converter.structure(value, tuple[str, ...])
    raise _WrongType("a string or an array of strings", value)


def _structure_content(value: object, _: type) -> str | tuple[ContentPart, ...] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return converter.structure(value, tuple[ContentPart, ...])
    raise _WrongType("a string or an array of content parts", value)


def _structure_json_object(value: object, _: type) -> dict[str, Any]:
    # Free-form JSON (a JSON schema): kept as sent, but it must be an object.
    if not isinstance(value, dict):
        raise _WrongType("an object", value)
    return value


def _structure_biases(value: object, _: type) -> dict[str, float]:
    if not isinstance(value, dict):
        raise _WrongType("an object", value)
    return {key: _structure_float(bias, float) for key, bias in value.items()}


_TOOL_CHOICES = ("none", "auto", "required")


def _structure_tool_choice(value: object, _: type) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in _TOOL_CHOICES:
            raise _NotAllowed(value, _TOOL_CHOICES)
        return value  # type: ignore[return-value]
    if isinstance(value, dict):
        return converter.structure(value, NamedToolChoice)
    raise _WrongType("a string or an object", value)


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _structure_prompt(value: object, _: type) -> str | tuple[int, ...]:
    """OpenAI's prompt forms, one prompt only: text, [text], [token ids] or [[token ids]]."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _WrongType("a string, an array of strings or an array of token ids", value)
    if not value:
        raise InvalidRequest("Invalid 'prompt': empty array. Expected a prompt.")
    if all(_is_token(v) for v in value):
        return tuple(value)
    if len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if len(value) == 1 and isinstance(value[0], list) and all(_is_token(v) for v in value[0]):
        return tuple(value[0])
    if len(value) > 1 and all(isinstance(v, str | list) for v in value):
        raise InvalidRequest("Batched prompts are not supported; send one prompt per request.")
    raise _WrongType("a string, an array of strings or an array of token ids", value)


def _structure_embedding_input(value: object, _: type) -> EmbeddingInput:
    """OpenAI's embedding inputs: text, [text], [token ids] or [[token ids]], as a tuple."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise _WrongType("a string, an array of strings or an array of token ids", value)
    if value and all(_is_token(v) for v in value):
        return (tuple(value),)
    inputs: list[str | tuple[int, ...]] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            inputs.append(item)
        elif isinstance(item, list) and all(_is_token(v) for v in item):
            inputs.append(tuple(item))
        else:
            raise InvalidRequest(
                f"Invalid type for 'input[{i}]': expected a string or an array of token ids.",
                param=f"[{i}]",
            )
    return tuple(inputs)


# -- containers -------------------------------------------------------------------------------


def _is_variadic_tuple(type_: Any) -> bool:
    args = get_args(type_)
    return get_origin(type_) is tuple and len(args) == 2 and args[1] is Ellipsis


def _array_factory(type_: Any, conv: Converter) -> Callable[[object, Any], tuple[Any, ...]]:
    # cattrs would happily iterate a string into a tuple of characters.
    inner = homogenous_tuple_structure_factory(type_, conv)

    def structure(value: object, cl: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _WrongType("an array", value)
        return inner(value, cl)

    return structure


def _object_factory(cl: type[T], conv: Converter) -> Callable[[object, Any], T]:
    inner = make_dict_structure_fn(cl, conv)

    def structure(value: object, type_: Any) -> T:
        if not isinstance(value, dict):
            raise _WrongType("an object", value)
        return inner(value, type_)

    return structure


def _literal_factory(type_: Any, _: Converter) -> Callable[[object, Any], object]:
    allowed = get_args(type_)

    def structure(value: object, _: Any) -> object:
        # bool is an int subclass: keep True from matching a Literal[1]
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise _NotAllowed(value, allowed)
        return value

    return structure


def _unstructure_factory(cl: type[Any], conv: Converter) -> Callable[[Any], dict[str, Any]]:
    inner = make_dict_unstructure_fn(cl, conv)
    omittable = tuple(
        a.name for a in attrs.fields(cl) if a.default is None and not a.metadata.get(KEEP_NULL)
    )

    def unstructure(obj: Any) -> dict[str, Any]:
        out = inner(obj)
        for name in omittable:
            if out[name] is None:
                del out[name]
        return out

    return unstructure


def make_converter() -> Converter:
    """A converter with the strict JSON rules and the OpenAI wire's hooks; other dialects
    register their own hooks on a fresh one."""
    conv = Converter(forbid_extra_keys=False, detailed_validation=True)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(str | tuple[str, ...] | None, _structure_stop)
    conv.register_structure_hook(str | tuple[ContentPart, ...] | None, _structure_content)
    conv.register_structure_hook(str | tuple[int, ...], _structure_prompt)
    conv.register_structure_hook_func(lambda t: t == dict[str, Any], _structure_json_object)
    conv.register_structure_hook_func(lambda t: t == dict[str, float], _structure_biases)
    conv.register_structure_hook(ToolChoice | None, _structure_tool_choice)
    conv.register_structure_hook_factory(lambda t: get_origin(t) is Literal, _literal_factory)
    conv.register_structure_hook_factory(_is_variadic_tuple, _array_factory)
    conv.register_structure_hook_factory(attrs.has, _object_factory)
    # After the array factory: the later registration wins, and this tuple is not a plain array.
    conv.register_structure_hook_func(lambda t: t == EmbeddingInput, _structure_embedding_input)
    conv.register_unstructure_hook_factory(attrs.has, _unstructure_factory)
    return conv


converter = make_converter()


# -- the public face --------------------------------------------------------------------------


def structure_request(raw: bytes, cls: type[T], conv: Converter | None = None) -> T:
    """Parse a JSON request body into ``cls`` (with ``conv``, by default the OpenAI one); any
    problem is an ``InvalidRequest``."""
    try:
        data = json.loads(raw, parse_constant=_reject_non_finite, parse_float=_finite_float)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        raise InvalidRequest(_UNPARSEABLE) from None
    except RecursionError:  # thousands of nested arrays: no request of ours nests that deep
        raise InvalidRequest(f"{_UNPARSEABLE} (It is nested too deeply.)") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request body must be a JSON object, but got {_kind(data)}.")
    if _SURROGATE_ESCAPE.search(raw):
        try:
            _reject_lone_surrogates(data, "")
        except RecursionError:
            raise InvalidRequest(f"{_UNPARSEABLE} (It is nested too deeply.)") from None
    try:
        return (conv or converter).structure(data, cls)
    except (ClassValidationError, IterableValidationError) as exc:
        raise _as_invalid_request(exc) from None


def _reject_non_finite(token: str) -> float:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise.
    raise ValueError(f"{token} is not valid JSON")


def _finite_float(token: str) -> float:
    # 1e400 is valid JSON but no double: it would reach the sampler as inf.
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"{token} is out of range for a number")
    return value


# A JSON escape of a UTF-16 surrogate; a lone one decodes to a str that cannot become UTF-8,
# which would fail later (tokenizing, logging, answering) instead of here.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_lone_surrogates(value: object, path: str) -> None:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidRequest(
                f"Invalid value for '{path or 'the request body'}': the string holds a lone "
                "UTF-16 surrogate escape, which is not a character.",
                param=path or None,
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_lone_surrogates(key, path)
            _reject_lone_surrogates(item, _join(path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _reject_lone_surrogates(item, f"{path}[{i}]")


def unstructure(obj: object) -> Any:
    """A response object as plain JSON-ready data, unset optional fields left out."""
    return converter.unstructure(obj)


def dump_json(obj: object) -> bytes:
    """A response object as compact UTF-8 JSON."""
    return dumps(converter.unstructure(obj))


def dumps(data: Any) -> bytes:
    """Plain data as compact UTF-8 JSON (non-ASCII text kept as is)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _as_invalid_request(exc: BaseException) -> InvalidRequest:
    path, leaf = _first_error(exc, "")
    if isinstance(leaf, InvalidRequest):
        return InvalidRequest(leaf.message, param=_join(path, leaf.param) or None)
    param = path or None
    where = f"'{path}'" if path else "the request body"
    match leaf:
        case KeyError():
            message = f"Missing required parameter: {where}."
        case _WrongType():
            message = (
                f"Invalid type for {where}: expected {leaf.expected}, but got "
                f"{_kind(leaf.value)} instead."
            )
        case _NotAllowed():
            options = ", ".join(repr(a) for a in leaf.allowed)
            message = f"Invalid value for {where}: {leaf.value!r}. Supported values are: {options}."
        case _:
            message = f"Invalid value for {where}."
    return InvalidRequest(message, param=param)


def _first_error(exc: BaseException, path: str) -> tuple[str, BaseException]:
    """The first leaf error under a cattrs error tree, with its JSON path."""
    if isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        if with_notes:
            sub, note = with_notes[0]
            return _first_error(sub, f"{path}[{note.index}]")
        if without:
            return _first_error(without[0], path)
    elif isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        if with_notes:
            sub, note = with_notes[0]
            return _first_error(sub, _join(path, note.name))
        if without:
            return _first_error(without[0], path)
    return path, exc


def _join(path: str, name: str | None) -> str:
    if not name:
        return path
    if not path or name.startswith("["):
        return f"{path}{name}"
    return f"{path}.{name}"
