"""The comparison table: which summary numbers are rows, and the markdown rendering.

Each row names a summary key (see ``perf.summary``), whether higher is better, and whether a
ratio to the peers means something (a count of cached tokens has no meaningful ratio).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from perf.overhead import KEYS as OVERHEAD_KEYS
from perf.servers import DECODE, INTERLEAVED, MIXED, MULTITURN, OVERHEAD, PREFILL, WORKLOADS
from perf.stats import ratio

BASELINE = "llama_cpp_server"
SUBJECT = "llmserve"


@dataclass(frozen=True)
class Row:
    key: str
    workload: str
    metric: str
    higher_is_better: bool
    decimals: int = 1
    with_ratio: bool = True


@dataclass(frozen=True)
class TableShape:
    """The plan's numbers that decide which rows exist."""

    concurrency: Sequence[int] = ()
    workloads: Sequence[str] = (DECODE,)
    turns: int = 5
    prefill_lengths: Sequence[int] = ()


def rows_for(shape: TableShape) -> list[Row]:
    workloads = shape.workloads
    rows = _decode_rows(shape.concurrency) if DECODE in workloads else []
    if PREFILL in workloads:
        rows += _prefill_rows(shape.prefill_lengths)
    if MULTITURN in workloads:
        rows += _chat_rows(MULTITURN, "multi-turn chat", shape.turns, per_turn=True)
    if INTERLEAVED in workloads:
        rows += _chat_rows(INTERLEAVED, "interleaved chat", shape.turns, per_turn=False)
    if MIXED in workloads:
        rows += _mixed_rows()
    if OVERHEAD in workloads:
        rows += _overhead_rows()
    rows += [
        Row("ready_s", "startup", "seconds to ready (median)", False),
        Row("server_cores", "resources", "server CPU cores busy (median)", False, 2, False),
    ]
    rows += [
        Row(f"rss.{w}_mib", "resources", f"peak RSS MiB, {w}", False, 0)
        for w in WORKLOADS
        if w in workloads
    ]
    rows += [
        Row("foreign_cores", "noise", "other processes' CPU cores (median)", False, 2, False),
        Row("completed_streams", "all", "streams completed", True, 0, False),
        Row("cut_short_streams", "all", "streams cut short or failed", False, 0, False),
        Row("runs_kept", "all", "server runs summarised", True, 0, False),
    ]
    return rows


def _decode_rows(concurrency: Sequence[int]) -> list[Row]:
    name = "single stream"
    rows = [
        Row("single.decode_tok_s", name, "decode tok/s (median)", True),
        Row("single.decode_tok_s_best", name, "decode tok/s (best)", True),
        Row("single.ceiling_fraction", name, "best decode / bandwidth ceiling", True, 2, False),
        Row("single.ttft_ms", name, "TTFT ms (median)", False, 0),
        Row("single.itl_p50_ms", name, "inter-token ms p50", False, 1),
        Row("single.itl_p95_ms", name, "inter-token ms p95", False, 1),
    ]
    for level in concurrency:
        name = f"concurrency {level}"
        rows += [
            Row(f"c{level}.aggregate_tok_s", name, "aggregate tok/s", True),
            Row(f"c{level}.requests_per_s", name, "requests/s", True, 2),
            Row(f"c{level}.stream_decode_tok_s", name, "per-stream decode tok/s p50", True),
            Row(f"c{level}.ttft_p50_ms", name, "TTFT ms p50", False, 0),
            Row(f"c{level}.ttft_p95_ms", name, "TTFT ms p95", False, 0),
            Row(f"c{level}.itl_p50_ms", name, "inter-token ms p50", False, 1),
            Row(f"c{level}.itl_p95_ms", name, "inter-token ms p95", False, 1),
        ]
    return rows


def _prefill_rows(lengths: Sequence[int]) -> list[Row]:
    rows: list[Row] = []
    for length in lengths:
        key, name = f"prefill.{length}", f"prefill ~{length}"
        rows += [
            Row(f"{key}.prompt_tokens", name, "prompt tokens (median)", False, 0, False),
            Row(f"{key}.ttft_p50_ms", name, "TTFT ms p50", False, 0),
            Row(f"{key}.ttft_p95_ms", name, "TTFT ms p95", False, 0),
            Row(f"{key}.tok_s", name, "prefill tok/s (median)", True, 0),
        ]
    return rows


def _chat_rows(prefix: str, name: str, turns: int, per_turn: bool) -> list[Row]:
    later = f"turns 2-{turns}"
    rows = [Row(f"{prefix}.ttft_first_ms", name, "TTFT ms turn 1 (median)", False, 0)]
    if per_turn:
        rows += [
            Row(f"{prefix}.ttft_turn{n}_ms", name, f"TTFT ms turn {n} (median)", False, 0)
            for n in range(2, turns + 1)
        ]
    rows += [
        Row(f"{prefix}.ttft_later_ms", name, f"TTFT ms {later} (median)", False, 0),
        Row(f"{prefix}.ttft_later_p95_ms", name, f"TTFT ms {later} (p95)", False, 0),
        Row(f"{prefix}.later_over_first", name, f"{later} TTFT / turn 1's", False, 2, False),
        Row(
            f"{prefix}.cached_tokens_later", name, f"cached tokens {later} (median)", True, 0, False
        ),
        Row(f"{prefix}.prompt_tokens_first", name, "prompt tokens turn 1", False, 0, False),
        Row(f"{prefix}.prompt_tokens_last", name, f"prompt tokens turn {turns}", False, 0, False),
        Row(f"{prefix}.itl_p50_ms", name, "inter-token ms p50", False, 1),
        Row(f"{prefix}.requests_per_s", name, "requests/s (one at a time)", True, 2),
    ]
    return rows


def _mixed_rows() -> list[Row]:
    name = "mixed load"
    return [
        Row("mixed.short_itl_p50_ms", name, "short streams' inter-token ms p50", False, 1),
        Row("mixed.short_itl_p95_ms", name, "short streams' inter-token ms p95", False, 1),
        Row("mixed.short_itl_max_ms", name, "short streams' inter-token ms max", False, 0),
        Row("mixed.long_ttft_p50_ms", name, "long prompts' TTFT ms p50", False, 0),
        Row("mixed.long_ttft_p95_ms", name, "long prompts' TTFT ms p95", False, 0),
        Row("mixed.aggregate_tok_s", name, "aggregate tok/s", True),
        Row("mixed.requests_per_s", name, "requests/s", True, 2),
    ]


def _overhead_rows() -> list[Row]:
    rows: list[Row] = []
    for name, key in OVERHEAD_KEYS.items():
        rows += [
            Row(f"overhead.{key}.requests_per_s", name, "requests/s (median)", True, 0),
            Row(f"overhead.{key}.p99_ms", name, "p99 ms (median)", False, 1),
        ]
    return rows


def _format(value: float, decimals: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{decimals}f}"


def ratio_columns(servers: Sequence[str]) -> list[tuple[str, str]]:
    """(subject, peer) pairs: llmserve against every other server measured."""
    if SUBJECT not in servers:
        return []
    peers = [s for s in servers if s != SUBJECT]
    peers.sort(key=lambda s: s != BASELINE)  # the baseline's ratio first
    return [(SUBJECT, peer) for peer in peers]


def markdown_table(
    summaries: dict[str, dict[str, float]], servers: Sequence[str], shape: TableShape
) -> str:
    ratios = ratio_columns(servers)
    header = ["workload", "metric", *servers, *(f"{a} / {b}" for a, b in ratios)]
    lines = [_md_row(header), _md_row(["---"] * 2 + ["---:"] * (len(header) - 2))]
    for row in rows_for(shape):
        arrow = "↑" if row.higher_is_better else "↓"
        cells = [row.workload, f"{row.metric} {arrow}"]
        cells += [_format(summaries[s].get(row.key, math.nan), row.decimals) for s in servers]
        for subject, peer in ratios:
            value = ratio(
                summaries[subject].get(row.key, math.nan), summaries[peer].get(row.key, math.nan)
            )
            cells.append("-" if math.isnan(value) or not row.with_ratio else f"{value:.2f}x")
        lines.append(_md_row(cells))
    return "\n".join(lines)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
