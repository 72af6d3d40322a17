"""perf metrics: inter-token latency, cut-short streams, RSS parsing, the decode ceiling, and the
prefill and mixed summaries. Pure functions on made-up numbers: no servers."""

from __future__ import annotations

import math

import pytest

from perf.ceiling import TensorSize, bytes_per_token, ceiling_tok_s, fraction_of_ceiling
from perf.longprompts import long_prompt, prompt_seed
from perf.mixed import MixedResult, summarize_mixed
from perf.prefill import PrefillResult, prefill_order, summarize_prefill
from perf.rss import parse_status
from perf.runs import ServerRun
from perf.stats import gaps, rate
from perf.summary import summarize
from perf.workloads import ConcurrencyResult, RequestResult, _record_chunk

STATUS = """Name:\tpython
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t 2345678 kB
VmHWM:\t  812344 kB
VmRSS:\t  790120 kB
RssAnon:\t  100000 kB
Threads:\t4
"""


def stream(times: list[float], done: bool = True, finish: str | None = "length") -> RequestResult:
    """A successful request whose text chunks arrived at ``times`` (seconds)."""
    return RequestResult(
        ok=True,
        tokens=len(times),
        ttft=times[0],
        t_last=times[-1],
        times=times,
        done=done,
        finish_reason=finish,
    )


def text_chunk(text: str, finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"text": text, "finish_reason": finish}]}


def test_gaps_are_intervals_between_arrivals() -> None:
    """n arrivals give n - 1 inter-token gaps; the first wait is TTFT, not a gap."""
    assert gaps([0.5, 0.6, 0.8]) == pytest.approx([0.1, 0.2])
    assert gaps([0.5]) == []


def test_rate_of_an_empty_interval_is_nan() -> None:
    """A phase that never ran has no rate."""
    assert rate(10, 2.0) == 5.0
    assert math.isnan(rate(10, 0.0))


def test_recorded_chunks_keep_arrival_times_and_the_finish_reason() -> None:
    """Each text chunk's arrival is kept; the finish_reason of the last chunk is too."""
    result = RequestResult(ok=False)
    _record_chunk(text_chunk("a"), 0.2, result)
    _record_chunk(text_chunk("b", "length"), 0.25, result)
    _record_chunk({"choices": [], "usage": {"completion_tokens": 2}}, 0.26, result)
    assert result.times == [0.2, 0.25]
    assert result.finish_reason == "length"
    assert result.itl == pytest.approx([0.05])


def test_stream_without_done_or_finish_reason_is_cut_short() -> None:
    """Completed needs no error, a finish_reason and [DONE]; anything less was cut short."""
    assert stream([0.1, 0.2]).complete
    assert not stream([0.1, 0.2], done=False).complete
    assert not stream([0.1, 0.2], finish=None).complete
    failed = RequestResult(ok=False, error="timed out", done=False)
    assert not failed.complete


def test_request_json_has_itl_percentiles_but_not_every_arrival() -> None:
    """The JSON keeps p50/p95/max of the gaps, not the per-token list."""
    data = stream([0.1, 0.2, 0.4]).to_json()
    assert "times" not in data
    assert data["itl_p50_ms"] == pytest.approx(150.0)
    assert data["itl_max_ms"] == pytest.approx(200.0)
    assert data["complete"] is True


def test_concurrency_level_counts_completed_requests_per_second() -> None:
    """requests/s counts only streams answered to the end."""
    level = ConcurrencyResult(2, 4.0, [stream([0.1, 0.2]), stream([0.1, 0.2], done=False)])
    assert level.requests_per_s == pytest.approx(0.25)


def test_summary_pools_itl_and_counts_cut_short_streams() -> None:
    """ITL percentiles pool every stream's gaps; cut-short streams are counted per workload."""
    level = ConcurrencyResult(
        2, 1.0, [stream([0.1, 0.11, 0.12]), stream([0.1, 0.2, 0.3], done=False)]
    )
    run = ServerRun("llmserve", 0, "decode", levels=[level], peak_rss_kib=2048)
    summary = summarize([run], [2])
    assert summary["c2.itl_p50_ms"] == pytest.approx(55.0)
    assert summary["completed_streams"] == 1
    assert summary["cut_short_streams"] == 1
    assert summary["decode.cut_short_streams"] == 1
    assert summary["rss.decode_mib"] == 2.0
    assert math.isnan(summary["rss.prefill_mib"])


def test_parse_status_reads_rss_and_high_water_mark_in_kib() -> None:
    """VmRSS and VmHWM are read from /proc/<pid>/status; other lines are ignored."""
    assert parse_status(STATUS) == {"VmHWM": 812344, "VmRSS": 790120}


def test_parse_status_of_a_kernel_thread_is_empty() -> None:
    """A process without memory lines (kernel thread, zombie) gives nothing, not an error."""
    assert parse_status("Name:\tkthreadd\nState:\tS (sleeping)\nVmRSS:\tgarbage\n") == {}


def test_tied_embedding_is_read_whole_for_the_logits() -> None:
    """Without output.weight the embedding is the output matrix: every byte counts."""
    tensors = [TensorSize("token_embd.weight", 1000, 100), TensorSize("blk.0.ffn_up", 500, 10)]
    assert bytes_per_token(tensors) == 1500


def test_untied_embedding_costs_one_row() -> None:
    """With a separate output matrix, decoding looks up one embedding row per token."""
    tensors = [
        TensorSize("token_embd.weight", 1000, 100),
        TensorSize("output.weight", 1000, 100),
        TensorSize("blk.0.ffn_up", 500, 10),
    ]
    assert bytes_per_token(tensors) == 10 + 1000 + 500


def test_ceiling_is_bandwidth_over_bytes_per_token() -> None:
    """20 GB/s over 250 MB per token is 80 tok/s; 60 tok/s is 0.75 of it."""
    ceiling = ceiling_tok_s(20e9, 250_000_000)
    assert ceiling == pytest.approx(80.0)
    assert fraction_of_ceiling(60.0, ceiling) == pytest.approx(0.75)
    assert math.isnan(fraction_of_ceiling(math.nan, ceiling))
    assert math.isnan(ceiling_tok_s(20e9, 0))


def test_prefill_rate_prefers_the_servers_prompt_count() -> None:
    """usage.prompt_tokens when streamed, else the local tokenizer's count."""
    reported = RequestResult(ok=True, ttft=2.0, prompt_tokens=1000)
    unreported = RequestResult(ok=True, ttft=2.0)
    assert PrefillResult(1000, 990, reported).prefill_tok_s == pytest.approx(500.0)
    assert PrefillResult(1000, 990, unreported).prefill_tok_s == pytest.approx(495.0)
    assert math.isnan(PrefillResult(1000, 990, RequestResult(ok=False)).prefill_tok_s)


def test_prefill_summary_is_per_length() -> None:
    """TTFT percentiles and prefill rate are grouped by the asked length."""
    results = [
        PrefillResult(1000, 1000, RequestResult(ok=True, ttft=1.0)),
        PrefillResult(1000, 1000, RequestResult(ok=True, ttft=2.0)),
        PrefillResult(3000, 3000, RequestResult(ok=True, ttft=6.0)),
    ]
    summary = summarize_prefill(results, [1000, 3000])
    assert summary["prefill.1000.ttft_p50_ms"] == pytest.approx(1500.0)
    assert summary["prefill.1000.tok_s"] == pytest.approx(750.0)
    assert summary["prefill.3000.tok_s"] == pytest.approx(500.0)
    assert summary["prefill.3000.reported"] == 0


def test_prefill_order_alternates_lengths() -> None:
    """Drift over the run hits every length alike."""
    assert prefill_order([1000, 3000], 2) == [1000, 3000, 1000, 3000]


def test_long_prompts_are_distinct_and_about_the_asked_length() -> None:
    """Different seeds, different openings; ~1.27 tokens a word sizes them."""
    first = long_prompt(prompt_seed("prefill", 0, 0), 1000)
    second = long_prompt(prompt_seed("prefill", 0, 1), 1000)
    assert first[:14] != second[:14]
    assert 700 <= len(first.split()) <= 900
    assert prompt_seed("prefill", 1, 0) != prompt_seed("mixed", 0, 0)


def test_mixed_summary_separates_short_streams_and_long_prompts() -> None:
    """Short streams give the ITL, long prompts the TTFT; throughput is over the wall time."""
    result = MixedResult(
        wall_s=2.0,
        short=[stream([0.1, 0.2, 1.2]), stream([0.1, 0.15])],
        long=[RequestResult(ok=True, tokens=1, ttft=0.9, done=True, finish_reason="length")],
    )
    summary = summarize_mixed([result])
    assert summary["mixed.short_itl_max_ms"] == pytest.approx(1000.0)
    assert summary["mixed.short_itl_p50_ms"] == pytest.approx(100.0)
    assert summary["mixed.long_ttft_p50_ms"] == pytest.approx(900.0)
    assert summary["mixed.aggregate_tok_s"] == pytest.approx(3.0)
    assert summary["mixed.requests_per_s"] == pytest.approx(1.5)


def test_mixed_summary_of_no_run_is_nan() -> None:
    """A server that never ran the mixed load shows '-', not zeros."""
    assert all(math.isnan(v) for v in summarize_mixed([]).values())
