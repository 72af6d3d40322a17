"""Hostile chat templates (they come with model files): no code runs, no render runs away in
time or memory; each attempt is the request's 400, and the template keeps serving."""

from __future__ import annotations

import time
from typing import Any

import pytest

from llmserve.errors import InvalidRequest
from llmserve.prompt.chat import ChatTemplate
from llmserve.prompt.sandbox import MAX_RENDER_SECONDS

MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
# Refused well within the time bound, plus slack for a loaded test machine.
QUICK_S = MAX_RENDER_SECONDS + 2.0


def template(source: str) -> ChatTemplate:
    return ChatTemplate(
        gguf_template=source, override=None, architecture="llama", bos_token="<s>", eos_token="</s>"
    )


def refused(source: str, match: str | None = None) -> InvalidRequest:
    """Render ``source``; it must fail as a 400 (matching ``match``) within QUICK_S."""
    start = time.monotonic()
    with pytest.raises(InvalidRequest, match=match) as caught:
        template(source).render(MESSAGES)
    assert time.monotonic() - start < QUICK_S
    assert caught.value.status == 400
    return caught.value


ESCAPES = {
    "mro-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler-globals": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "joiner-globals": "{{ joiner.__init__.__globals__['os'].system('id') }}",
    "namespace-globals": "{{ namespace.__init__.__globals__ }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "raise-exception-globals": "{{ raise_exception.__globals__['json'] }}",
    "strftime-self": "{{ strftime_now.__self__.clock.__globals__ }}",
    "range-builtins": "{{ range.__self__.__import__('os').system('id') }}",
    "format-field-walk": "{{ '{0.__class__.__base__.__subclasses__}'.format('') }}",
    "self-module": "{{ self._TemplateReference__context.environment.__class__ }}",
    "message-mutation": "{{ messages.append(1) }}",
    "dict-update": "{{ messages[0].update({'role': 'system'}) }}",
}


@pytest.mark.parametrize("source", list(ESCAPES.values()), ids=list(ESCAPES))
def test_sandbox_escape_attempt_is_refused(source: str) -> None:
    """Attribute walks to __class__/__globals__, cycler/joiner tricks and mutation are 400s."""
    refused(source)


def test_unsafe_attribute_through_the_attr_filter_is_undefined() -> None:
    """``|attr('__class__')`` yields Jinja's undefined (renders empty), never the class."""
    assert template("{{ ''|attr('__class__')|attr('__base__') }}").render(MESSAGES) == ""


def test_escape_attempts_leave_the_messages_untouched() -> None:
    """After mutation attempts, the caller's messages are as they were."""
    messages = [{"role": "user", "content": "hi"}]
    for source in (ESCAPES["message-mutation"], ESCAPES["dict-update"]):
        with pytest.raises(InvalidRequest):
            template(source).render(messages)
    assert messages == [{"role": "user", "content": "hi"}]


RUNAWAYS = {
    "range-1e9": "{% for i in range(10**9) %}{% endfor %}",
    "nested-loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "nested-loops-with-loop-var": (
        "{% for i in range(100000) %}{% for j in range(100000) %}"
        "{% if loop.last %}{% endif %}{% endfor %}{% endfor %}"
    ),
    "loop-over-long-string": "{% for c in 'x' * 4000000 %}{% for d in 'y' * 4000000 %}"
    "{% endfor %}{% endfor %}",
    "exponential-macro": (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}"
    ),
    "recursive-loop": ("{% for i in range(1000) recursive %}{{ loop(range(1000)) }}{% endfor %}"),
    "sort-in-a-loop": (
        "{% for i in range(100000) %}{% set s = range(100000)|list|sort %}{% endfor %}"
    ),
}


@pytest.mark.parametrize("source", list(RUNAWAYS.values()), ids=list(RUNAWAYS))
def test_runaway_template_is_stopped_in_time(source: str) -> None:
    """Huge loops, nested loops and exponential recursion stop within the time bound."""
    refused(source)


BOMBS = {
    "string-times": "{{ 'x' * 10**12 }}",
    "list-times": "{{ [1] * 10**12 }}",
    "power": "{{ 7 ** 100000000 }}",
    "doubling-plus": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s|length }}"
    ),
    "doubling-tilde": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}"
    ),
    "keep-building": (
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
        "{% set ns.l = ns.l + ['x' * 4000000] %}{% endfor %}{{ ns.l|length }}"
    ),
    "set-block": (
        "{% set big %}{% for i in range(100000) %}{{ 'x' * 4000000 }}{% endfor %}{% endset %}"
        "{{ big|length }}"
    ),
    "macro-output": (
        "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 4000000 }}{% endfor %}{% endmacro %}"
        "{{ m()|length }}"
    ),
    "center-filter": "{{ 'x'|center(10**9) }}",
    "ljust-method": "{{ 'x'.ljust(10**9) }}",
    "zfill-method": "{{ '1'.zfill(4000000) ~ '1'.zfill(4000000) }}",
    "expandtabs": "{{ ('\\t' * 100000).expandtabs(1000) }}",
    "format-width": "{{ '{:>999999999}'.format(1) }}",
    "format-filter": "{{ '%999999999d'|format(1) }}",
    "percent-width": "{{ '%999999999d' % 1 }}",
    "percent-precision": "{{ '%.999999999f' % 1.0 }}",
    "replace-empty": "{{ ('x' * 1000)|replace('', 'y' * 10000) }}",
    "replace-method": "{{ ('x' * 1000).replace('x', 'y' * 10000) }}",
    "indent-lines": "{{ ('\\n' * 1000000)|indent(100) }}",
    "wordwrap": "{{ ('x' * 1000000)|wordwrap(1, true, 'y' * 100) }}",
    "join-repeats": "{{ (['x' * 4000000] * 100)|join }}",
    "join-method": "{{ ''.join(['x' * 4000000] * 100) }}",
    "batch-fill": "{{ [1]|batch(10**9, 'x')|list|length }}",
    "tojson-indent": "{{ messages|tojson(indent=10**9) }}",
    "print-a-list": "{{ ['x' * 4000000] * 100 }}",
    "lipsum": "{{ lipsum(10**9) }}",
    "squaring": (
        "{% set ns = namespace(x=7 ** 1000) %}{% for i in range(64) %}"
        "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x > 0 }}"
    ),
}


@pytest.mark.parametrize("source", list(BOMBS.values()), ids=list(BOMBS))
def test_memory_bomb_is_refused_before_it_is_built(source: str) -> None:
    """Operations that would build a huge string or list are refused first."""
    refused(source, match="too large|exceed|not allowed|built more than|steps|longer than")


def test_template_serves_normally_after_a_refused_render() -> None:
    """The per-render budget does not leak: a normal render follows a runaway one."""
    chat = template(
        "{% if messages|length > 1 %}{% for i in range(100000) %}{% for j in range(100000) %}"
        "{% endfor %}{% endfor %}{% endif %}"
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}"
    )
    with pytest.raises(InvalidRequest):
        chat.render([*MESSAGES, *MESSAGES])
    assert chat.render(MESSAGES) == "[user] hi"


def test_loops_keep_their_meaning_under_the_step_counter() -> None:
    """loop.index, loop.last, loop.length, for-else and filtered loops work as in Jinja."""
    chat = template(
        "{% for m in messages if m.role == 'user' %}{{ loop.index }}/{{ loop.length }}"
        "{{ '.' if loop.last else ',' }}{% else %}none{% endfor %}"
        "{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}"
        "{% for x in [] %}x{% else %}-{% endfor %}"
    )
    messages = [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}] * 2
    assert chat.render(messages) == "1/2,2/2.a=1-"


def test_a_big_real_chat_renders_within_the_bounds() -> None:
    """Two thousand turns through the built-in template stay inside every bound."""
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i} " * 20}
        for i in range(2000)
    ]
    chat = ChatTemplate(
        gguf_template=None, override=None, architecture="gemma3", bos_token="<s>", eos_token="</s>"
    )
    assert chat.render(messages).count("<start_of_turn>") == 2001


def test_format_width_from_an_argument_is_refused() -> None:
    """A width passed as an argument (``{:>{w}}``) is checked like a literal one."""
    refused("{{ '{:>{w}}'.format(1, w=999999999) }}", match="too large")


def test_star_width_from_an_argument_is_refused() -> None:
    """A printf width taken from the arguments (``%*d``) is checked like a literal one."""
    refused("{{ '%*d' % (999999999, 1) }}", match="too large")


def test_formatting_large_numbers_is_fine() -> None:
    """Big numbers as values (a timestamp) are not widths: format and % print them."""
    chat = template(
        "{{ '{}'.format(1700000000) }} {{ '%d'|format(1700000000) }} {{ '%d' % 10**9 }}"
    )
    assert chat.render(MESSAGES) == "1700000000 1700000000 1000000000"


def test_a_template_may_change_the_lists_and_dicts_it_built() -> None:
    """Lists and dicts a template makes are its own to change (Kimi K2 queues call ids):
    append, pop, update, setdefault."""
    chat = template(
        "{% set q = namespace(ids=[]) %}{% set _ = q.ids.append('a') %}"
        "{% set _ = q.ids.append('b') %}{{ q.ids.pop(0) }}{{ q.ids|length }}"
        "{% set d = {} %}{% set _ = d.update({'k': 1}) %}{{ d.setdefault('j', 2) + d.k }}"
    )
    assert chat.render(MESSAGES) == "a13"


def test_a_copy_of_the_messages_is_the_templates_to_change() -> None:
    """``messages|list`` is a new list (append works) of sealed messages (update refused);
    the caller's messages stay as they were."""
    messages = [{"role": "user", "content": "hi"}]
    chat = template("{% set m = messages|list %}{% set _ = m.append(1) %}{{ m|length }}")
    assert chat.render(messages) == "2"
    with pytest.raises(InvalidRequest):
        template("{% set m = messages|list %}{{ m[0].update({'role': 'x'}) }}").render(messages)
    assert messages == [{"role": "user", "content": "hi"}]


def test_the_tools_are_read_only_to_a_template() -> None:
    """A template cannot change the tools (the grammar reads their schemas after it)."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    chat = template("{{ tools[0].function.parameters.update({'type': 'array'}) }}")
    with pytest.raises(InvalidRequest):
        chat.render(MESSAGES, tools=tools)
    assert tools[0]["function"]["parameters"] == {"type": "object"}


GROWTH = {
    "extend-doubling": (
        "{% set l = [1] %}{% for i in range(64) %}{% set _ = l.extend(l) %}{% endfor %}"
    ),
    "extend-iterator": "{% set l = [] %}{% set _ = l.extend(range(100000)|map('string')) %}"
    "{% for i in range(20) %}{% set _ = l.extend(l) %}{% endfor %}",
    "update-repeated": (
        "{% set d = {} %}{% for i in range(1000) %}{% set _ = d.update({i: i}) %}{% endfor %}"
        "{% for i in range(5000) %}{% set _ = d.update(d) %}{% endfor %}"
    ),
}


@pytest.mark.parametrize("source", list(GROWTH.values()), ids=list(GROWTH))
def test_a_list_a_template_grows_without_bound_is_refused(source: str) -> None:
    """Items added by extend / update are counted (each item passed, as a bound on what the
    list or dict may hold): doubling a list is refused in time."""
    refused(source, match="items|steps")
