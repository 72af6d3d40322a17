"""The Jinja2 sandbox chat templates run in: the request's data immutable, and bounded in time,
steps and size.

Jinja's ``ImmutableSandboxedEnvironment`` stops code execution (no ``__class__``, no
``__globals__``, no mutation) but not exhaustion: ``range`` is capped at 100,000 items, yet two
nested loops over it run ten billion times, and ``'x' * 10**12``, ``s + s`` in a loop,
``s|indent(10**9)`` or ``'{:>999999999}'.format(1)`` allocate without limit before any output
exists. A template comes with a model file, so it is untrusted. Here:

- the messages and tools reach the template as a copy (``sealed``) made of list and dict
  subclasses that stay immutable; lists and dicts the template builds itself may be changed
  (``append``, ``pop``, ``update``...: Kimi K2's template queues its call ids in a list), each
  item they gain counted against ``MAX_RENDER_ITEMS``;

- every ``for`` loop's iterable and every call (macros, methods) counts a step against a
  per-render ``Budget`` (a step cap and a wall-clock deadline), so no render runs away;
- every operation that can amplify a string or list (``*``, ``+``, ``~``, ``%``, ``format``,
  padding, ``indent``, ``replace``, ``join``, ``wordwrap``, ``batch``...) checks the size of
  its result *before* building it, against ``MAX_RENDER_CHARS``.

Breaking a bound raises ``TemplateBudgetExceeded``, a ``SecurityError``.
"""

from __future__ import annotations

import math
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from typing import Any, cast

import jinja2
import jinja2.nodes as nodes
from attrs import define, field
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

MAX_RENDER_CHARS = 4 * 1024 * 1024
MAX_RENDER_STEPS = 1_000_000  # loop iterations plus calls; real templates use a few thousand
MAX_RENDER_SECONDS = 1.0  # the render runs on the event loop: keep a stall short
# Everything the bounded operations and ``{{ }}`` outputs build in one render, added up: a loop
# may keep what it builds (``ns.parts + [big]``, a ``set`` block), so each size alone is not
# enough. Generous: a template that grows a string message by message pays the square.
MAX_RENDER_ALLOCATED = 64 * MAX_RENDER_CHARS
# Items that a render's own lists and dicts gain by append, extend, update...: each is a
# reference (8 bytes), so this bounds what mutation can hold at a few MiB.
MAX_RENDER_ITEMS = 1_000_000
_MAX_POWER_BITS = 1 << 16
_MAX_JSON_INDENT = 64

_STEPS_FILTER = "__llmserve_steps"
_CONCAT_FILTER = "__llmserve_concat"


class TemplateBudgetExceeded(SecurityError):
    """The template broke one of the sandbox's bounds (steps, time or size)."""


@define
class Budget:
    """What one render may still spend."""

    deadline: float
    steps: int = field(default=0)
    allocated: int = field(default=0)
    items: int = field(default=0)

    def grow(self, count: int) -> None:
        self.items += count
        if self.items > MAX_RENDER_ITEMS:
            raise TemplateBudgetExceeded(
                f"the chat template added more than {MAX_RENDER_ITEMS} items to its lists"
            )

    def charge(self, size: int) -> None:
        self.allocated += size
        if self.allocated > MAX_RENDER_ALLOCATED:
            raise TemplateBudgetExceeded(
                f"the chat template built more than {MAX_RENDER_ALLOCATED} characters"
            )

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_RENDER_STEPS:
            raise TemplateBudgetExceeded(
                f"the chat template took more than {MAX_RENDER_STEPS} steps"
            )
        if time.monotonic() > self.deadline:
            raise TemplateBudgetExceeded(
                f"the chat template took longer than {MAX_RENDER_SECONDS} s to render"
            )


_BUDGET: ContextVar[Budget | None] = ContextVar("llmserve_template_budget", default=None)


def new_budget(seconds: float = MAX_RENDER_SECONDS) -> Budget:
    """A fresh budget, to install with ``BUDGET.set`` around one render."""
    return Budget(deadline=time.monotonic() + seconds)


BUDGET = _BUDGET


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def _too_large(size: float, what: str = "output") -> None:
    """Refuse a result of ``size`` characters (or items) before it is built, else charge it."""
    if size > MAX_RENDER_CHARS:
        raise TemplateBudgetExceeded(f"chat template {what} is too large")
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(int(size))


def _printed_size(value: Any, limit: int = MAX_RENDER_CHARS) -> int:
    """About how long ``str(value)`` is, found without building it; stops past ``limit``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple | dict):
        items = value.items() if isinstance(value, dict) else value
        size = 2
        for item in items:
            size += _printed_size(item, limit - size) + 2
            if size > limit:
                break
        return size
    return 24  # numbers, None, booleans, undefined


def _finalize(value: Any) -> Any:
    """Every ``{{ }}`` output, main or buffered (macros, ``set`` blocks), is charged."""
    size = len(value) if type(value) is str else _printed_size(value)
    if size > MAX_RENDER_CHARS:
        _too_large(size)
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(size)
    return value


class SealedList(list):  # type: ignore[type-arg]
    """A list of the request's data: read-only to templates (only plain lists may change)."""

    __slots__ = ()


class SealedDict(dict):  # type: ignore[type-arg]
    """A dict of the request's data: read-only to templates (only plain dicts may change)."""

    __slots__ = ()


def sealed(value: Any) -> Any:
    """A copy of ``value`` for a template: mappings and sequences (not strings) become sealed
    lists and dicts, so nothing a render does can change what the server holds."""
    kind = type(value)  # exact types first: a request holds thousands of values
    if kind in _PLAIN:
        return value
    if kind is dict or isinstance(value, Mapping):
        return SealedDict({key: sealed(item) for key, item in value.items()})
    if kind is list or isinstance(value, list | tuple):
        return SealedList([sealed(item) for item in value])
    return value


_PLAIN = frozenset({str, int, float, bool, type(None)})


# The methods by which a template changes a list or dict it built, and those that add items.
_MUTATORS: dict[type, frozenset[str]] = {
    list: frozenset({"append", "extend", "insert", "pop", "remove", "clear", "reverse", "sort"}),
    dict: frozenset({"update", "setdefault", "pop", "popitem", "clear"}),
}
_ONE_ITEM = frozenset({"append", "insert", "setdefault"})
_MANY_ITEMS = frozenset({"extend", "update"})


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """A loop's iterable, one step per item."""
    budget = _BUDGET.get()
    if budget is None:
        yield from iterable
        return
    tick = budget.tick
    for item in iterable:
        tick()
        yield item


def _concat(parts: list[Any]) -> str:
    """``a ~ b``: the pieces' total size is checked before they are joined."""
    texts = [str(part) for part in parts]
    _too_large(sum(len(text) for text in texts))
    return "".join(texts)


class _Bounded(NodeTransformer):
    """Rewrites a parsed template: loops iterate through ``counted``, ``~`` through
    ``_concat``, so that both pass through code that enforces the bounds."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _STEPS_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, _CONCAT_FILTER, [], [], None, None, lineno=node.lineno)


# printf-style and format() specs: any width or precision of more than 7 digits is refused.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\d*|\*)(?:\.(\d*|\*))?")
_FORMAT_NUMBERS = re.compile(r"\d+")


def _check_widths_from(values: Iterable[Any]) -> None:
    # A width taken from the arguments (`%*d`, `{:>{w}}`) is bounded like a written one.
    if any(abs(n) > MAX_RENDER_CHARS for n in _int_args(values)):
        _too_large(math.inf, "format")


def _check_percent(template: str, values: Iterable[Any] = ()) -> None:
    for width, precision in _PERCENT_SPEC.findall(template):
        if "*" in (width, precision):
            _check_widths_from(values)
            continue
        _too_large(max(int(width or 0), int(precision or 0)) + len(template), "format")


def _check_format_spec(template: str, values: Iterable[Any] = ()) -> None:
    for _, _, spec, _ in string.Formatter().parse(template):
        if spec and "{" in spec:
            _check_widths_from(values)
        for number in _FORMAT_NUMBERS.findall(spec or ""):
            _too_large(int(number) + len(template), "format")


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def _replaced_size(text: str, old: str, new: str, count: int = -1) -> int:
    hits = len(text) + 1 if old == "" else text.count(old)
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _int_args(args: Iterable[Any]) -> Iterator[int]:
    return (a for a in args if isinstance(a, int) and not isinstance(a, bool))


def _check_call(name: str, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a filter or string method whose result would be too large, before it runs."""
    values = (*args, *kwargs.values())
    # No bound of ours is that large; a count or width above it only amplifies. (What format
    # formats may be any number: its widths are checked where they are, below.)
    formats = name in ("format", "str.format")
    if not formats and any(abs(n) > MAX_RENDER_CHARS for n in _int_args(values)):
        _too_large(math.inf, f"argument to {name}")
    text = obj if isinstance(obj, str) else None
    if text is None:
        if name == "join" and isinstance(obj, Iterable) and isinstance(obj, Sized):
            items = list(obj)
            glue = args[0] if args and isinstance(args[0], str) else ""
            size = sum(len(i) if isinstance(i, str) else 16 for i in items)
            _too_large(size + len(glue) * len(items), "join")
        return
    if name in ("center", "ljust", "rjust", "zfill") and args:
        _too_large(max(len(text), int(args[0])) if isinstance(args[0], int) else 0)
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        _too_large(len(text) + text.count("\t") * max(int(tab), 0))
    elif name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = args[2] if len(args) > 2 and isinstance(args[2], int) else -1
        _too_large(_replaced_size(text, old, new, count))
    elif name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        unit = len(width) if isinstance(width, str) else int(width)
        _too_large(len(text) + max(unit, 0) * (text.count("\n") + 1))
    elif name == "wordwrap":
        width = int(args[0]) if args else int(kwargs.get("width", 79))
        wrap = (args[2] if len(args) > 2 else kwargs.get("wrapstring")) or "\n"
        _too_large(len(text) + len(str(wrap)) * (len(text) // max(width, 1) + 1))
    elif name in ("format", "str.format"):
        # The format filter is printf-style (`%`); the method is str.format (`{}`).
        if name == "format":
            _check_percent(text, values)
        else:
            _check_format_spec(text, values)
        _too_large(len(text) + sum(len(str(v)) for v in values))
    elif name == "join":
        items = list(args[0]) if args and isinstance(args[0], Iterable) else []
        size = sum(len(i) if isinstance(i, str) else 16 for i in items)
        _too_large(size + len(text) * len(items))


def _guarded(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    """A builtin filter behind ``_check_call``, keeping Jinja's pass_* markers."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        # Filters taking a context or eval context get it first: the value comes after it.
        skip = 1 if getattr(filter_, "jinja_pass_arg", None) is not None else 0
        if len(args) > skip:
            _check_call(name, args[skip], tuple(args[skip + 1 :]), kwargs)
        _tick()
        return filter_(*args, **kwargs)

    marker = getattr(filter_, "jinja_pass_arg", None)
    if marker is not None:
        guarded.jinja_pass_arg = marker  # type: ignore[attr-defined]
    return guarded


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's lorem-ipsum global, which would write ``n`` paragraphs of any count."""
    _too_large(n * max * 8, "lipsum")
    return generate_lorem_ipsum(n, html, min, max)


# Builtin filters that can grow their input (the others are bounded by it).
_AMPLIFYING_FILTERS = ("center", "indent", "replace", "wordwrap", "format", "join", "batch")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus the bounds above; lists and dicts the template built (plain
    ``list`` and ``dict``, never the ``sealed`` request data) may change."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in _AMPLIFYING_FILTERS:
            self.filters[name] = _guarded(name, self.filters[name])
        self.filters[_STEPS_FILTER] = counted
        self.finalize = _finalize
        self.globals["lipsum"] = _lipsum
        self.filters[_CONCAT_FILTER] = _concat

    @staticmethod
    def concat(parts: Iterable[str]) -> str:  # type: ignore[override]
        """Joins macro, block and ``set`` block output: checked before it is built."""
        pieces = list(parts)
        _too_large(sum(len(piece) for piece in pieces))
        return "".join(pieces)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        return cast("nodes.Template", _Bounded().visit(tree))  # the root stays a Template

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr in _MUTATORS.get(type(obj), ()):
            return SandboxedEnvironment.is_safe_attribute(self, obj, attr, value)
        return super().is_safe_attribute(obj, attr, value)

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        # llama.cpp's template engine adds null and undefined to a string as empty text, and
        # templates count on it (Command R+ reads each parameter's description, FireFunction a
        # "functions" variable): jinja would raise.
        if operator == "+" and isinstance(left, str) and _blank(right):
            return left
        if operator == "+" and _blank(left) and isinstance(right, str):
            return right
        if operator == "+" and type(left) is str and type(right) is str:
            # Templates glue their turns with +: the common case stays cheap.
            _too_large(len(left) + len(right))
            return left + right
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int):
                    _too_large(len(seq) * count)
            # Squaring in a loop doubles an integer's size each time: bounded like **.
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > _MAX_POWER_BITS
            ):
                raise TemplateBudgetExceeded("chat template arithmetic is too large")
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _too_large(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            _check_percent(left, right.values() if isinstance(right, dict) else _as_tuple(right))
        elif (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and left.bit_length() * right > _MAX_POWER_BITS
        ):
            raise TemplateBudgetExceeded("chat template arithmetic is too large")
        return super().call_binop(context, operator, left, right)

    def call(
        __self,  # Jinja names it so: a keyword argument "self" must still pass through
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_call(getattr(__obj, "__name__", ""), owner, args, kwargs)
        elif type(owner) in _MUTATORS:
            args = _charge_growth(getattr(__obj, "__name__", ""), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja sandboxes str.format at attribute access; widths are checked there too.
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text: str = value.__self__
        _check_format_spec(text)

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_call("str.format", text, args, kwargs)
            return wrapped(*args, **kwargs)

        return checked


def _blank(value: Any) -> bool:
    return value is None or isinstance(value, jinja2.Undefined)


def _charge_growth(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Count the items a list or dict method adds (``extend``/``update`` of an iterator: read
    into a list first, one step an item); the arguments to call it with."""
    if name in _ONE_ITEM:
        added = 1
    elif name in _MANY_ITEMS:
        if args and not isinstance(args[0], Sized):
            args = (list(counted(args[0])), *args[1:])
        added = (len(args[0]) if args else 0) + len(kwargs)
    else:
        return args
    budget = _BUDGET.get()
    if budget is not None:
        budget.grow(added)
    return args


def json_indent_ok(indent: int | str | None) -> None:
    """``tojson(indent=...)``: an indent repeats on every line of the output."""
    size = len(indent) if isinstance(indent, str) else (indent or 0)
    if size > _MAX_JSON_INDENT:
        raise TemplateBudgetExceeded(f"tojson indent above {_MAX_JSON_INDENT} is not allowed")
