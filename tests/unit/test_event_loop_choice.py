"""choose_event_loop: uvloop and httptools when installed, the stdlib's otherwise."""

from __future__ import annotations

import os

from llmserve.api.server import choose_event_loop


def test_fast_loop_and_parser_are_chosen_when_installed() -> None:
    """With uvloop and httptools importable, uvicorn gets both."""
    choice = choose_event_loop(lambda module: True)
    assert (choice.loop, choice.http, choice.fast) == ("uvloop", "httptools", True)


def test_missing_uvloop_falls_back_to_asyncio() -> None:
    """Without uvloop the server still starts, on asyncio, and says it is not the fast path."""
    choice = choose_event_loop(lambda module: module != "uvloop")
    assert (choice.loop, choice.http, choice.fast) == ("asyncio", "httptools", False)


def test_missing_httptools_falls_back_to_h11() -> None:
    """Without httptools the server parses HTTP with h11."""
    choice = choose_event_loop(lambda module: module != "httptools")
    assert (choice.loop, choice.http) == ("uvloop", "h11")


def test_declared_dependencies_are_found_where_installed() -> None:
    """In CI, where the package's dependencies are installed, the fast path is chosen."""
    choice = choose_event_loop()
    if os.environ.get("CI") == "true":
        assert choice.fast
    else:
        assert choice.loop in ("uvloop", "asyncio")
