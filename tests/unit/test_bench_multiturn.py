"""perf multi-turn chat helpers: conversation text, chat chunks, turn summaries, the goal."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

from perf.bench import units
from perf.conversations import Conversation, conversation_seeds, system_prompt, user_message
from perf.multiturn import TurnResult, goal_verdict, summarize_turns
from perf.plan import Plan, _workload_list
from perf.runs import ServerRun
from perf.servers import (
    ServerConfig,
    llama_cpp_server_spec,
    llmserve_kv_unified_spec,
    llmserve_nocache_spec,
    llmserve_spec,
    serves,
)
from perf.sse import chunk_prompt_tokens, chunk_text
from perf.summary import summarize
from perf.table import TableShape, markdown_table
from perf.workloads import RequestResult

CONFIG = ServerConfig(model_path=Path("m.gguf"), threads=2, ctx_per_sequence=4096, parallel=2)


def turn(
    number: int, ttft_ms: float, cached: int | None = None, prompt: int | None = None
) -> TurnResult:
    """A successful turn with the given TTFT and usage."""
    request = RequestResult(
        ok=True, tokens=2, ttft=ttft_ms / 1000, cached_tokens=cached, prompt_tokens=prompt
    )
    return TurnResult(conversation=1, turn=number, request=request)


def shared_chars(first: str, second: str) -> int:
    """How many leading characters two strings have in common."""
    pairs = zip(first, second, strict=False)
    return next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(first), len(second)))


def plan(**changes: object) -> Plan:
    """A Plan with small defaults, overridden by ``changes``."""
    fields: dict[str, object] = {
        "servers": ["llmserve", "llmserve_nocache", "llama_cpp_server"],
        "workloads": ["decode", "multiturn", "interleaved"],
        "rounds": 1,
        "single_reps": 1,
        "per_client": 1,
        "concurrency": [1],
        "max_tokens": 8,
        "conversations": 1,
        "interleaved": 4,
        "turns": 5,
        "answer_tokens": 32,
        "parallel": 8,
        "chat_parallel": 2,
        "time_limit": 60.0,
        "ready_timeout": 10.0,
        "request_timeout": 10.0,
        "quiet_wait": 0.0,
        "quiet_threshold": 0.3,
        "retries": 0,
    }
    return Plan(**(fields | changes))  # type: ignore[arg-type]


def test_system_prompt_is_deterministic_and_about_700_tokens_long() -> None:
    """The same seed gives the same text, of ~540 words (~700 demo-model tokens)."""
    assert system_prompt(7) == system_prompt(7)
    assert 540 <= len(system_prompt(7).split()) < 580


def test_conversations_share_at_most_their_first_words() -> None:
    """Two conversations' system prompts diverge within the first sentence."""
    prompts = [system_prompt(seed) for seed in (1000, 1001, 1002, 2000, 1100)]
    for index, first in enumerate(prompts):
        for second in prompts[index + 1 :]:
            assert shared_chars(first, second) < 80


def test_user_messages_differ_by_turn() -> None:
    """Each turn asks a question of its own, numbered."""
    assert user_message(3, 1).startswith("Question 1: ")
    assert user_message(3, 1) != user_message(3, 2)


def test_each_turn_resends_the_history_with_the_answers() -> None:
    """Turn 2's messages are system, user 1, the streamed answer 1, user 2."""
    conversation = Conversation(seed=5)
    first = conversation.ask()
    conversation.answer("Answer one.")
    second = conversation.ask()
    assert [m["role"] for m in first] == ["system", "user"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[:2] == first
    assert second[2]["content"] == "Answer one."
    assert conversation.turns_asked == 2


def test_conversation_seeds_differ_by_round_and_workload() -> None:
    """No seed repeats across rounds or workloads: a restarted server's disk cache cannot help."""
    seeds = [
        s
        for r in range(3)
        for w in ("multiturn", "interleaved")
        for s in conversation_seeds(r, w, 4)
    ]
    assert len(set(seeds)) == len(seeds)


def test_chat_chunk_text_is_the_delta_content() -> None:
    """Chat chunks carry text in delta.content; a role-only delta is no token."""
    assert chunk_text({"choices": [{"delta": {"content": "Hi"}}]}) == "Hi"
    assert chunk_text({"choices": [{"delta": {"role": "assistant"}}]}) == ""
    assert chunk_text({"choices": [{"text": "x"}]}) == "x"


def test_prompt_and_cached_tokens_are_read_from_usage() -> None:
    """usage.prompt_tokens_details.cached_tokens is read where present, None otherwise."""
    usage = {"prompt_tokens": 800, "prompt_tokens_details": {"cached_tokens": 750}}
    assert chunk_prompt_tokens({"usage": usage}) == (800, 750)
    assert chunk_prompt_tokens({"usage": {"prompt_tokens": 9}}) == (9, None)
    assert chunk_prompt_tokens({"choices": []}) == (None, None)


def test_turn_summary_compares_later_turns_with_turn_one() -> None:
    """Turns 2+ are pooled; their median TTFT is divided by turn 1's median."""
    turns = [turn(1, 1000, 0, 700), turn(2, 100, 740, 760), turn(3, 120, 790, 810)]
    turns += [turn(4, 80, 840, 860), turn(5, 110, 890, 910)]
    summary = summarize_turns("multiturn", turns, 5)
    assert summary["multiturn.ttft_turn1_ms"] == pytest.approx(1000)
    assert summary["multiturn.ttft_later_ms"] == pytest.approx(105)
    assert summary["multiturn.later_over_first"] == pytest.approx(0.105)
    assert summary["multiturn.cached_tokens_later"] == pytest.approx(815)
    assert summary["multiturn.prompt_tokens_first"] == 700


def test_unreported_cached_tokens_are_missing_not_zero() -> None:
    """A server without usage in its stream shows '-', not 0 cached tokens."""
    summary = summarize_turns("interleaved", [turn(1, 900), turn(2, 90)], 5)
    assert math.isnan(summary["interleaved.cached_tokens_later"])
    assert math.isnan(summary["interleaved.ttft_turn5_ms"])


def test_failed_turns_are_not_summarised() -> None:
    """A failed turn's NaN TTFT does not reach the medians."""
    failed = TurnResult(conversation=1, turn=2, request=RequestResult(ok=False, error="x"))
    summary = summarize_turns("multiturn", [turn(1, 900), failed, turn(2, 90)], 2)
    assert summary["multiturn.ttft_later_ms"] == pytest.approx(90)


def test_goal_is_met_when_later_turns_are_fast_and_beat_the_peer() -> None:
    """Both halves of issue 3's goal are reported as met."""
    summaries = {
        "llmserve": {"multiturn.later_over_first": 0.1, "multiturn.ttft_later_ms": 60.0},
        "llama_cpp_server": {"multiturn.ttft_later_ms": 100.0},
    }
    lines = goal_verdict(summaries, "llmserve", "llama_cpp_server")
    assert lines[0].endswith("met (0.10 of turn 1's).")
    assert lines[1].endswith("met (60 ms vs 100 ms).")


def test_goal_not_met_or_not_measured_is_said() -> None:
    """A slow or missing measurement is reported, never left out."""
    slow = {"llmserve": {"multiturn.later_over_first": 0.5, "multiturn.ttft_later_ms": 300.0}}
    lines = goal_verdict(slow, "llmserve", "llama_cpp_server")
    assert "NOT met (0.50" in lines[0]
    assert lines[1].endswith("not measured.")


def test_units_skip_workloads_a_server_does_not_run() -> None:
    """llmserve_nocache only runs the chat workloads; the others run everything."""
    assert not serves("llmserve_nocache", "decode")
    assert serves("llmserve_nocache", "interleaved")
    assert units(plan(workloads=["decode"])) == [
        ("decode", "llmserve"),
        ("decode", "llama_cpp_server"),
    ]
    assert ("multiturn", "llmserve_nocache") in units(plan())


def test_workload_list_keeps_a_fixed_order_and_rejects_unknown_names() -> None:
    """--workloads multiturn,decode runs decode first; a typo is an argparse error."""
    assert _workload_list("multiturn,decode") == ["decode", "multiturn"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown workload"):
        _workload_list("multi")


def test_nocache_server_turns_the_cache_off_by_environment() -> None:
    """llmserve_nocache is llmserve with LLM_ENGINE_CACHE_ENABLED=false."""
    spec = llmserve_nocache_spec(CONFIG, 8000, "multiturn")
    assert spec.env["LLM_ENGINE_CACHE_ENABLED"] == "false"
    assert spec.command[2:4] == ["llmserve", "serve"]


def test_kv_unified_server_is_llmserve_with_one_kv_buffer_on_every_workload() -> None:
    """llmserve_kv_unified: the same command, LLM_ENGINE_KV_UNIFIED=true, all workloads."""
    spec = llmserve_kv_unified_spec(CONFIG, 8000, "decode")
    plain = llmserve_spec(CONFIG, 8000, "decode")
    assert spec.name == "llmserve_kv_unified"
    assert spec.command == plain.command
    assert spec.env == {**plain.env, "LLM_ENGINE_KV_UNIFIED": "true"}
    assert serves("llmserve_kv_unified", "prefill")
    assert serves("llmserve_kv_unified", "overhead")


def test_llama_cpp_server_cache_is_on_only_for_chat_workloads() -> None:
    """--cache True on the chat workloads, where it can help; off for decoding."""
    chat = llama_cpp_server_spec(CONFIG, 8000, "interleaved").command
    decode = llama_cpp_server_spec(CONFIG, 8000, "decode").command
    assert chat[chat.index("--cache") + 1] == "True"
    assert "--cache" not in decode


def test_table_has_chat_rows_with_ratios_to_the_peer() -> None:
    """The interleaved rows show llmserve's TTFT ratio to llama_cpp_server's."""
    runs = {
        "llmserve": ServerRun("llmserve", 0, "interleaved", turns=[turn(1, 800), turn(2, 50)]),
        "llama_cpp_server": ServerRun(
            "llama_cpp_server", 0, "interleaved", turns=[turn(1, 800), turn(2, 200)]
        ),
    }
    summaries = {name: summarize([run], []) for name, run in runs.items()}
    table = markdown_table(summaries, list(runs), TableShape(workloads=["interleaved"]))
    row = next(line for line in table.splitlines() if "turns 2-5 (median)" in line)
    assert row.endswith("| 50 | 200 | 0.25x |")
