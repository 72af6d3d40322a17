"""One server's kept runs reduced to the numbers of the table, the plots and the JSON summary.

Per-request numbers (decode rate, TTFT, inter-token gaps) are pooled over rounds; throughput
(tokens/s, requests/s) is one number per run, so its median is over runs. A missing number is
NaN, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from perf.mixed import summarize_mixed
from perf.multiturn import summarize_turns
from perf.overhead import summarize_overhead
from perf.prefill import summarize_prefill
from perf.runs import ServerRun
from perf.servers import INTERLEAVED, MULTITURN, WORKLOADS
from perf.stats import finite, median, percentile, rate
from perf.workloads import RequestResult

KIB_PER_MIB = 1024


def summarize(
    runs: Sequence[ServerRun],
    concurrency: Sequence[int],
    turns: int = 5,
    prefill_lengths: Sequence[int] = (),
) -> dict[str, float]:
    """One server's runs (all rounds and workloads) reduced to the table's numbers."""
    single = [r for run in runs for r in run.single if r.ok]
    summary: dict[str, float] = {
        "ready_s": median(finite(run.ready_s for run in runs)),
        "single.decode_tok_s": median(finite(r.decode_tok_s for r in single)),
        "single.decode_tok_s_best": max(finite(r.decode_tok_s for r in single), default=math.nan),
        "single.ttft_ms": median(finite(r.ttft * 1000 for r in single)),
        **_itl("single", single),
    }
    for level in concurrency:
        summary |= _level(runs, level)
    for workload in (MULTITURN, INTERLEAVED):
        chat = [t for run in runs if run.workload == workload for t in run.turns]
        summary |= summarize_turns(workload, chat, turns)
        summary |= _itl(workload, [t.request for t in chat if t.request.ok])
        summary[f"{workload}.requests_per_s"] = _phase_rate(runs, workload, "turns")
    summary |= summarize_prefill([p for run in runs for p in run.prefill], prefill_lengths)
    summary |= summarize_mixed([run.mixed for run in runs if run.mixed is not None])
    summary |= summarize_overhead([run.overhead for run in runs if run.overhead])
    summary |= _streams(runs)
    for key in ("server_cores", "foreign_cores"):
        summary[key] = median(finite(run.cpu.get(key, math.nan) for run in runs))
    for workload in WORKLOADS:
        peaks = [run.peak_rss_kib for run in runs if run.workload == workload and run.peak_rss_kib]
        summary[f"rss.{workload}_mib"] = max(peaks) / KIB_PER_MIB if peaks else math.nan
    summary["failed_starts"] = float(sum(run.error is not None for run in runs))
    return summary


def _itl(prefix: str, requests: Sequence[RequestResult]) -> dict[str, float]:
    """Inter-token latency p50/p95 in ms, over the gaps of every stream pooled."""
    gaps_ms = [gap * 1000 for r in requests for gap in r.itl]
    return {
        f"{prefix}.itl_p50_ms": percentile(gaps_ms, 50),
        f"{prefix}.itl_p95_ms": percentile(gaps_ms, 95),
    }


def _level(runs: Sequence[ServerRun], level: int) -> dict[str, float]:
    results = [res for run in runs for res in run.levels if res.concurrency == level]
    requests = [r for res in results for r in res.requests if r.ok]
    ttfts = finite(r.ttft * 1000 for r in requests)
    key = f"c{level}"
    return {
        f"{key}.aggregate_tok_s": median(finite(r.aggregate_tok_s for r in results)),
        f"{key}.requests_per_s": median(finite(r.requests_per_s for r in results)),
        f"{key}.stream_decode_tok_s": median(finite(r.decode_tok_s for r in requests)),
        f"{key}.ttft_p50_ms": percentile(ttfts, 50),
        f"{key}.ttft_p95_ms": percentile(ttfts, 95),
        **_itl(key, requests),
    }


def _phase_rate(runs: Sequence[ServerRun], workload: str, phase: str) -> float:
    """Median over runs of completed requests per second of a one-at-a-time phase."""
    rates = [
        rate(sum(r.complete for r in run.all_requests()), run.walls.get(phase, math.nan))
        for run in runs
        if run.workload == workload
    ]
    return median(finite(rates))


def _streams(runs: Sequence[ServerRun]) -> dict[str, float]:
    """Completed and cut-short streams, in all and per workload; usage cross-checks."""
    every = [r for run in runs for r in run.all_requests()]
    counts: dict[str, float] = {
        "requests": float(len(every)),
        "failed_requests": float(sum(not r.ok for r in every)),
        "completed_streams": float(sum(r.complete for r in every)),
        "cut_short_streams": float(sum(not r.complete for r in every)),
        "usage_mismatches": float(
            sum(r.usage_tokens is not None and r.usage_tokens != r.tokens for r in every if r.ok)
        ),
    }
    for workload in WORKLOADS:
        mine = [r for run in runs if run.workload == workload for r in run.all_requests()]
        if mine:
            counts[f"{workload}.completed_streams"] = float(sum(r.complete for r in mine))
            counts[f"{workload}.cut_short_streams"] = float(sum(not r.complete for r in mine))
    return counts
