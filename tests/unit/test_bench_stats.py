"""perf helpers: percentiles, decode rate, SSE decoding, the comparison table."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from perf.prompts import PromptPool
from perf.runs import ServerRun, select_runs
from perf.sse import SseDecoder, chunk_completion_tokens, chunk_text
from perf.stats import decode_rate, median, percentile, ratio
from perf.table import TableShape, markdown_table


def decode_all(lines: list[str]) -> list[str]:
    """Feed every line, then close; return the events' data in order."""
    decoder = SseDecoder()
    events = [decoder.feed(line) for line in lines]
    events.append(decoder.close())
    return [e for e in events if e is not None]


def test_percentile_interpolates_between_ranks() -> None:
    """Percentiles interpolate linearly, like numpy's default."""
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)


def test_percentile_of_one_value_is_that_value() -> None:
    """A single sample is every percentile of itself."""
    assert percentile([7.0], 0) == percentile([7.0], 100) == 7.0


def test_percentile_of_nothing_is_nan() -> None:
    """An empty sample (a workload cut short) gives NaN, not an error."""
    assert math.isnan(median([]))


def test_percentile_rejects_out_of_range_q() -> None:
    """q outside 0..100 is a programming error."""
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_ratio_of_missing_values_is_nan() -> None:
    """A ratio with a missing side or a zero denominator is NaN."""
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 2.0))
    assert ratio(3.0, 2.0) == 1.5


def test_decode_rate_excludes_the_first_token() -> None:
    """11 tokens, the last one second after the first: 10 tok/s."""
    assert decode_rate(11, 0.5, 1.5) == pytest.approx(10.0)


def test_decode_rate_needs_two_tokens() -> None:
    """One token has no decode interval."""
    assert math.isnan(decode_rate(1, 0.5, 0.5))


def test_sse_events_end_at_blank_lines() -> None:
    """Each data line followed by a blank line is one event, with the leading space dropped."""
    assert decode_all(["data: {}", "", "data: [DONE]", ""]) == ["{}", "[DONE]"]


def test_sse_comments_and_other_fields_are_ignored() -> None:
    """Pings (comments) and event/id fields carry no data."""
    assert decode_all([": ping - 2025", "", "event: message", "id: 1", "data: x", ""]) == ["x"]


def test_sse_multiline_data_is_joined() -> None:
    """Several data lines of one event join with newlines."""
    assert decode_all(["data: a", "data:b", ""]) == ["a\nb"]


def test_sse_last_event_without_blank_line_is_flushed() -> None:
    """close() dispatches an event the stream did not terminate."""
    assert decode_all(["data: tail"]) == ["tail"]


def test_chunk_accessors_handle_usage_only_chunks() -> None:
    """A usage chunk has no choices: no text, but completion tokens."""
    chunk = {"choices": [], "usage": {"completion_tokens": 12}}
    assert chunk_text(chunk) == ""
    assert chunk_completion_tokens(chunk) == 12
    assert chunk_completion_tokens({"choices": [{"text": "a"}]}) is None


def test_prompt_pool_never_repeats() -> None:
    """Prompts stay distinct past one cycle of the fixed set."""
    pool = PromptPool(("a", "b"))
    assert [pool.take() for _ in range(5)] == ["a", "b", "Part 2. a", "Part 2. b", "Part 3. a"]


def test_table_has_llmserve_ratio_against_the_baseline() -> None:
    """The ratio column divides llmserve's number by llama_cpp_server's."""
    summaries = {
        "llmserve": {"single.decode_tok_s": 30.0},
        "llama_cpp_server": {"single.decode_tok_s": 20.0},
    }
    table = markdown_table(summaries, ["llmserve", "llama_cpp_server"], TableShape())
    header, _, first = table.splitlines()[:3]
    assert header.endswith("| llmserve / llama_cpp_server |")
    assert first.endswith("| 30.0 | 20.0 | 1.50x |")


def test_noisy_runs_are_left_out_when_a_quiet_one_exists() -> None:
    """A run during other load is not summarised if the server also has a quiet run."""
    quiet = ServerRun(server="a", round=0, cpu={"foreign_cores": 0.05})
    noisy = ServerRun(server="a", round=1, cpu={"foreign_cores": 1.2})
    kept, notes = select_runs([quiet, noisy], "a", threshold=0.3)
    assert kept == [quiet]
    assert notes == ["a decode run 2: left out, others used 1.20 cores"]


def test_least_noisy_run_is_kept_when_there_is_no_quiet_one() -> None:
    """With only noisy runs, the least noisy one is summarised, flagged."""
    noisier = ServerRun(server="a", round=0, cpu={"foreign_cores": 1.2})
    noisy = ServerRun(server="a", round=1, cpu={"foreign_cores": 0.5})
    kept, notes = select_runs([noisier, noisy], "a", threshold=0.3)
    assert kept == [noisy]
    assert notes == [
        "a decode run 1: left out, others used 1.20 cores",
        "a decode run 2: kept though others used 0.50 cores (no quiet run)",
    ]


def test_event_data_yields_each_events_data_and_skips_comments() -> None:
    """The SSE reading loop shared by the benchmark and the soak client."""
    import asyncio

    from perf.sse import event_data

    async def lines() -> AsyncIterator[str]:
        for line in [": ping", 'data: {"a": 1}', "", "data: [DONE]", ""]:
            yield line

    async def collect() -> list[str]:
        return [data async for data in event_data(lines())]

    assert asyncio.run(collect()) == ['{"a": 1}', "[DONE]"]
