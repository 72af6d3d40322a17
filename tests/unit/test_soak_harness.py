"""perf/soak*: the random request generator, answer checks and verdicts, on sample data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from perf.soak_answers import StreamFold, answer_problem, envelope_problem
from perf.soak_client import EXPECTED
from perf.soak_requests import CHAT, COMPLETIONS, MAX_TURNS, RequestMaker, SoakRequest
from perf.soak_verdicts import (
    MIB,
    CacheNumbers,
    RssSummary,
    check_cache_budget,
    check_disk_folder,
    check_idle,
    check_no_5xx,
    check_outcomes,
    check_rss,
    disk_file_slack,
    folder_usage,
    log_problems,
    metric_sum,
    parse_metrics,
    parse_vm_rss,
    slope_per_minute,
    summarize_rss,
)

STATUS = """Name:\tpython
State:\tS (sleeping)
VmPeak:\t 1200000 kB
VmRSS:\t  463872 kB
RssAnon:\t  300000 kB
"""


def requests(seed: int, count: int, parallel: int = 2) -> list[SoakRequest]:
    maker = RequestMaker(random.Random(seed), "m", parallel=parallel)
    out = []
    for _ in range(count):
        request = maker.next()
        out.append(request)
        if request.turn:
            maker.answered("an answer")
    return out


# --- the request generator ---------------------------------------------------------------


def test_same_seed_gives_the_same_requests() -> None:
    """A run can be replayed: the stream of requests depends on the seed only."""
    assert requests(7, 200) == requests(7, 200)
    assert requests(7, 50) != requests(8, 50)


def test_good_requests_are_valid_openai_requests() -> None:
    """Every request not marked bad has valid parameters, within the server's slots."""
    good = [r for r in requests(3, 2000) if not r.bad]
    assert good
    for r in good:
        body = r.body
        assert body is not None
        assert r.raw is None
        assert r.path in (CHAT, COMPLETIONS)
        assert ("messages" in body) == (r.path == CHAT)
        assert ("prompt" in body) == (r.path == COMPLETIONS)
        assert 1 <= body["max_tokens"] <= 48
        assert 0 <= body["temperature"] <= 2
        assert 0 < body.get("top_p", 1) <= 1
        assert 1 <= body.get("n", 1) <= 2
        assert len(body.get("stop", [])) <= 4
        assert body.get("stream", False) == r.stream
        assert not (body.get("echo") and "logprobs" in body)
        assert 0 <= body.get("top_logprobs", 0) <= 20
        if r.path == COMPLETIONS and "logprobs" in body:
            assert 0 <= body["logprobs"] <= 5
        json.dumps(body)  # serialisable


def test_the_mix_covers_every_feature() -> None:
    """Over a few hundred requests every feature the soak means to exercise shows up."""
    sample = requests(1, 600)
    bodies = [r.body or {} for r in sample]
    assert any(r.bad for r in sample)
    assert any(r.raw is not None for r in sample)  # malformed JSON
    assert any(r.cut_after is not None for r in sample)
    assert any(r.abandon_after_s is not None for r in sample)
    assert any(r.stream for r in sample)
    assert any(not r.stream for r in sample)
    assert any(b.get("n", 1) > 1 for b in bodies if "response_format" not in b)
    assert any(b.get("response_format") == {"type": "json_object"} for b in bodies)
    assert any(b.get("logprobs") is True for b in bodies)
    assert any("stop" in b for b in bodies)
    assert any("seed" in b for b in bodies)
    assert {r.path for r in sample} == {CHAT, COMPLETIONS}


def test_disconnects_are_never_conversation_turns() -> None:
    """An answer cut short must not join the history: only whole answers are turns."""
    for r in requests(5, 500):
        if r.disconnects:
            assert not r.turn
        if r.cut_after is not None:
            assert r.stream
        if r.abandon_after_s is not None:
            assert not r.stream


def test_conversations_grow_and_start_over() -> None:
    """Each answered turn adds the answer and the next question; after MAX_TURNS a new chat."""
    maker = RequestMaker(random.Random(2), "m", parallel=2)
    first = maker.history
    assert [m["role"] for m in first] == ["system", "user"]
    for turn in range(2, MAX_TURNS + 1):
        maker.answered(f"answer {turn}")
        history = maker.history
        assert history[: len(first)] == first  # the prefix the cache can reuse
        assert history[-2] == {"role": "assistant", "content": f"answer {turn}"}
        assert len(history) == 2 * turn
        first = history
    maker.answered("last")
    assert [m["role"] for m in maker.history] == ["system", "user"]


def test_bad_requests_are_bad() -> None:
    """Each bad request breaks one rule the server enforces."""
    bad = {r.kind: r for r in requests(9, 3000) if r.bad}
    assert bad["bad:n_over_slots"].body["n"] == 3  # type: ignore[index]
    assert bad["bad:temperature"].body["temperature"] < 0  # type: ignore[index]
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad["bad:malformed_json"].raw or b"")
    assert len(bad) >= 10


# --- answers -----------------------------------------------------------------------------


def chat_request(**body: object) -> SoakRequest:
    return SoakRequest(kind="chat", path=CHAT, body={"model": "m", "max_tokens": 8, **body})


def chat_answer(*texts: str, finish: str = "stop") -> dict[str, object]:
    return {
        "choices": [
            {"index": i, "finish_reason": finish, "message": {"content": t}}
            for i, t in enumerate(texts)
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3},
    }


def test_envelope_problem() -> None:
    """Only {"error": {"message": str, "type": str, ...}} is an OpenAI error envelope."""
    good = {"error": {"message": "bad", "type": "invalid_request_error", "code": None}}
    assert envelope_problem(400, good) is None
    assert envelope_problem(400, {"detail": "bad"}) is not None
    assert envelope_problem(500, None) is not None
    assert envelope_problem(429, {"error": {"message": "", "type": "x"}}) is not None


def test_answer_problem_accepts_a_good_answer() -> None:
    assert answer_problem(chat_request(n=2), chat_answer("a", "b")) is None


@pytest.mark.parametrize(
    ("request_body", "answer", "reason"),
    [
        ({"n": 2}, chat_answer("a"), "choice indexes"),
        ({"stop": [" the"]}, chat_answer("on the hill"), "stop string"),
        ({"response_format": {"type": "json_object"}}, chat_answer("{oops"), "does not parse"),
        ({"logprobs": True}, chat_answer("text"), "logprobs"),
        ({}, chat_answer("a", finish="weird"), "finish_reason"),
        ({"max_tokens": 2}, chat_answer("abc"), "completion_tokens"),
    ],
)
def test_answer_problem_finds_broken_answers(
    request_body: dict[str, object], answer: dict[str, object], reason: str
) -> None:
    problem = answer_problem(chat_request(**request_body), answer)
    assert problem is not None
    assert reason in problem


def test_a_json_answer_cut_by_length_may_be_incomplete() -> None:
    """Only a finished json_object answer must parse."""
    request = chat_request(response_format={"type": "json_object"})
    assert answer_problem(request, chat_answer('{"a": ', finish="length")) is None


def test_stream_fold_rebuilds_choices() -> None:
    """Chunks of two interleaved choices fold back into two whole answers."""
    fold = StreamFold()
    for chunk in [
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 1, "delta": {"content": "B"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": "A"}, "logprobs": {"content": [{}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {"choices": [{"index": 1, "delta": {"content": "b"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"completion_tokens": 3}},
    ]:
        fold.feed(chunk)
    response = fold.response(chat=True)
    assert [c["message"]["content"] for c in response["choices"]] == ["A", "Bb"]
    assert [c["finish_reason"] for c in response["choices"]] == ["length", "stop"]
    assert response["choices"][0]["logprobs_count"] == 1
    request = SoakRequest(
        kind="chat", path=CHAT, body={"n": 2, "logprobs": True, "max_tokens": 4}, stream=True
    )
    assert answer_problem(request, response) is not None  # choice 1 carried no logprobs


def test_stream_fold_keeps_an_error_event() -> None:
    fold = StreamFold()
    fold.feed({"error": {"message": "boom", "type": "server_error"}})
    assert fold.error is not None


# --- RSS ---------------------------------------------------------------------------------


def test_parse_vm_rss() -> None:
    assert parse_vm_rss(STATUS) == 463872 * 1024
    assert parse_vm_rss("Name:\tzombie\nState:\tZ\n") is None


def test_slope_per_minute() -> None:
    """A value rising 1 per second rises 60 per minute; flat or too few samples give 0."""
    assert slope_per_minute([(float(t), 10.0 + t) for t in range(30)]) == pytest.approx(60.0)
    assert slope_per_minute([(float(t), 5.0) for t in range(30)]) == 0.0
    assert slope_per_minute([(1.0, 5.0)]) == 0.0


def test_summarize_rss_takes_the_median_before_the_baseline() -> None:
    """A spike just before the baseline moves neither it nor the peak; the slope is over the
    last half of the load."""
    samples = [(float(t), 400 * MIB) for t in range(0, 30)]
    samples[28] = (28.0, 900 * MIB)
    samples += [(float(t), (400 + (t - 30)) * MIB) for t in range(30, 91)]
    rss = summarize_rss(samples, baseline_at=29.0, load_end=90.0, end=420 * MIB)
    assert rss.baseline == 400 * MIB
    assert rss.peak == 460 * MIB  # the peak counts from the baseline on
    assert rss.slope_last_half_mib_min == pytest.approx(60.0)
    assert rss.growth == 20 * MIB


def test_check_rss_bound_is_the_larger_of_percent_and_mib() -> None:
    small = RssSummary(baseline=100 * MIB, peak=0, end=130 * MIB, slope_last_half_mib_min=0.0)
    assert check_rss(small, max_growth_pct=10, max_growth_mib=32).ok  # 32 MiB > 10%
    large = RssSummary(baseline=1000 * MIB, peak=0, end=1090 * MIB, slope_last_half_mib_min=0)
    assert check_rss(large, max_growth_pct=10, max_growth_mib=32).ok  # 100 MiB > 32 MiB
    grown = RssSummary(baseline=500 * MIB, peak=0, end=600 * MIB, slope_last_half_mib_min=0)
    verdict = check_rss(grown, max_growth_pct=10, max_growth_mib=32)
    assert not verdict.ok
    assert "+100.0 MiB" in verdict.detail


# --- /metrics and the other verdicts -----------------------------------------------------

METRICS = """# HELP llm_engine_requests_running Requests holding a sequence slot.
# TYPE llm_engine_requests_running gauge
llm_engine_requests_running{model="g"} 0.0
# HELP llm_engine_requests_waiting Requests queued for a sequence slot.
# TYPE llm_engine_requests_waiting gauge
llm_engine_requests_waiting{model="g"} 1.0
# HELP llm_engine_cache_hits_total Prompts that reused cached KV.
# TYPE llm_engine_cache_hits_total counter
llm_engine_cache_hits_total{model="g"} 30.0
# HELP llm_engine_cache_misses_total Prompts computed from scratch.
# TYPE llm_engine_cache_misses_total counter
llm_engine_cache_misses_total{model="g"} 10.0
# HELP llm_engine_cache_evictions_total Entries evicted, by tier.
# TYPE llm_engine_cache_evictions_total counter
llm_engine_cache_evictions_total{model="g",tier="ram"} 12.0
llm_engine_cache_evictions_total{model="g",tier="disk"} 4.0
# HELP llm_engine_cache_bytes Bytes of cached KV, by tier.
# TYPE llm_engine_cache_bytes gauge
llm_engine_cache_bytes{model="g",tier="ram"} 2.5e+07
llm_engine_cache_bytes{model="g",tier="disk"} 4.0e+07
"""


def test_parse_metrics_and_sums() -> None:
    samples = parse_metrics(METRICS)
    assert metric_sum(samples, "llm_engine_requests_running") == 0.0
    assert metric_sum(samples, "llm_engine_requests_waiting") == 1.0
    assert metric_sum(samples, "llm_engine_cache_bytes", tier="disk") == 4.0e7
    assert metric_sum(samples, "llm_engine_absent") is None
    cache = CacheNumbers.from_samples(samples)
    assert (cache.hits, cache.evictions_ram, cache.bytes_ram) == (30.0, 12.0, 2.5e7)
    start = CacheNumbers(
        hits=10, misses=10, evictions_ram=2, evictions_disk=0, bytes_ram=0, bytes_disk=0
    )
    delta = cache.since(start)
    assert delta["hit_rate"] == pytest.approx(20 / 20)
    assert delta["evictions_ram"] == 10


def test_verdicts_on_sample_numbers() -> None:
    assert check_no_5xx({200: 10, 429: 3}).ok
    assert not check_no_5xx({200: 10, 500: 1}).ok
    assert check_outcomes({"ok": 3, "cut": 1, "overloaded": 2}, EXPECTED).ok
    assert not check_outcomes({"ok": 3, "bad_envelope": 1}, EXPECTED).ok
    assert check_outcomes({"ok": 3, "timeout": 0}, EXPECTED).ok  # a zero count is no finding
    assert check_idle(0.0, 0.0, settle_s=0.5).ok
    assert not check_idle(1.0, 0.0, settle_s=30).ok
    assert not check_idle(None, None, settle_s=30).ok  # gauges missing: cannot pass
    assert check_cache_budget("ram", 24 * MIB, 24 * MIB).ok
    assert not check_cache_budget("ram", 24 * MIB + 1, 24 * MIB).ok
    slack = disk_file_slack(2048)
    assert check_disk_folder(48 * MIB + 3 * slack, 3, 48 * MIB, slack).ok
    assert not check_disk_folder(48 * MIB + 3 * slack + 1, 3, 48 * MIB, slack).ok


def test_folder_usage(tmp_path: Path) -> None:
    (tmp_path / "a.kv").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.kv").write_bytes(b"y" * 5)
    assert folder_usage(tmp_path) == (15, 2)


def test_log_problems() -> None:
    lines = [
        '{"level": "INFO", "message": "request done"}',
        '{"level": "WARNING", "message": "client went away"}',
        '{"level": "ERROR", "message": "worker step failed"}',
        "Traceback (most recent call last):",
        "not json at all",
    ]
    assert len(log_problems(lines)) == 2
