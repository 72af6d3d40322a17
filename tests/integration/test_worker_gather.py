"""The worker's gather window: after a step that finished requests, an idle worker waits a moment
for their clients' next requests, so that they share one decode step instead of one slipping a
whole step behind (issue 19: the 1-token p99 at 8 connections).

The tiny model's steps take microseconds, so each test widens the window (a fraction of the
last step, capped) until timing cannot decide the outcome, and starts from a fresh worker whose
"last step" it sets itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llmserve.engine import worker as worker_module
from llmserve.engine.worker import Job, StepTiming, Worker
from tests.support.workers import GREEDY, CollectingSink, config, running

PROMPTS = ([2, 100, 101, 102], [2, 200, 201], [2, 300, 301, 302, 303], [2, 400])


def wide_window(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(worker_module, "GATHER_FRACTION", 1e9)
    monkeypatch.setattr(worker_module, "GATHER_MAX_S", seconds)


def as_if_a_step_finished(worker: Worker, jobs: int) -> None:
    """The fresh worker's last step finished ``jobs`` jobs just now (it has run no step yet, so
    nothing of its own overwrites this)."""
    assert worker.steps == 0
    with worker._cond:
        worker._last_step = StepTiming(duration=1.0, ended=time.monotonic(), expected=jobs)


def submit(worker: Worker, tokens: list[int], max_tokens: int = 1) -> CollectingSink:
    sink = CollectingSink()
    worker.submit(Job(tokens=tokens, sink=sink, max_tokens=max_tokens, stop=(), sampling=GREEDY))
    return sink


def test_clients_coming_back_one_by_one_share_one_step(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wide_window(monkeypatch, 5.0)
    with running(tiny_gguf, config()) as worker:
        as_if_a_step_finished(worker, 4)
        started = time.monotonic()
        sinks = []
        for tokens in PROMPTS:
            sinks.append(submit(worker, tokens))
            time.sleep(0.01)  # the event loop hands requests over one at a time
        assert all(sink.done.wait(10) for sink in sinks)
        assert worker.steps == 1, "the four requests must share one step"
        # The wait ended when the fourth arrived, not at the window's end.
        assert time.monotonic() - started < 2.5


def test_the_window_ends_when_a_client_does_not_come_back(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wide_window(monkeypatch, 0.05)
    with running(tiny_gguf, config()) as worker:
        as_if_a_step_finished(worker, 2)
        sink = submit(worker, PROMPTS[0])
        assert sink.done.wait(5), "a lone request must not wait for one that never comes"
        assert sink.events[-1].finish_reason == "length"


def test_a_running_stream_is_never_held_for_clients_that_do_not_come_back(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window this long would stall the stream for all to see if it applied while one runs.
    wide_window(monkeypatch, 30.0)
    with running(tiny_gguf, config()) as worker:
        stream = submit(worker, PROMPTS[0], max_tokens=400)
        deadline = time.monotonic() + 10
        while not stream.events and time.monotonic() < deadline:
            time.sleep(0.001)
        # Two one-token requests finish beside the stream; their clients never send again.
        short = [submit(worker, tokens) for tokens in PROMPTS[1:3]]
        assert all(sink.done.wait(10) for sink in short)
        assert stream.done.wait(10), "the stream must not wait for requests that never come"
        assert sum(e.tokens for e in stream.events) == 400
