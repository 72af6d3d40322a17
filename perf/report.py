"""Machine facts, the per-server summary of raw runs, and the markdown table."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from perf.multiturn import TurnResult, summarize_turns
from perf.servers import DECODE, INTERLEAVED, MULTITURN
from perf.stats import median, percentile, ratio
from perf.workloads import ConcurrencyResult, RequestResult

BASELINE = "llama_cpp_server"
SUBJECT = "llmserve"


@dataclass
class ServerRun:
    """Everything one start of one server for one workload produced."""

    server: str
    round: int
    workload: str = DECODE
    ready_s: float = math.nan
    load_before: float = math.nan  # cores others used just before the server started
    error: str | None = None
    single: list[RequestResult] = field(default_factory=list)
    levels: list[ConcurrencyResult] = field(default_factory=list)
    turns: list[TurnResult] = field(default_factory=list)  # multiturn / interleaved
    cpu: dict[str, float] = field(default_factory=dict)  # perf.cpu.usage over the workloads

    def all_requests(self) -> list[RequestResult]:
        return [
            *self.single,
            *(r for level in self.levels for r in level.requests),
            *(t.request for t in self.turns),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "round": self.round,
            "workload": self.workload,
            "ready_s": self.ready_s,
            "load_before": self.load_before,
            "error": self.error,
            "single": [r.to_json() for r in self.single],
            "concurrency": [level.to_json() for level in self.levels],
            "turns": [t.to_json() for t in self.turns],
            "cpu": self.cpu,
        }


@dataclass(frozen=True)
class Row:
    key: str
    workload: str
    metric: str
    higher_is_better: bool
    decimals: int = 1
    with_ratio: bool = True


def rows_for(
    concurrency: Sequence[int], workloads: Sequence[str] = (DECODE,), turns: int = 5
) -> list[Row]:
    rows = _decode_rows(concurrency) if DECODE in workloads else []
    if MULTITURN in workloads:
        rows += _chat_rows(MULTITURN, "multi-turn chat", turns, per_turn=True)
    if INTERLEAVED in workloads:
        rows += _chat_rows(INTERLEAVED, "interleaved chat", turns, per_turn=False)
    rows += [
        Row("ready_s", "startup", "seconds to ready (median)", False),
        Row("server_cores", "resources", "server CPU cores busy (median)", False, 2, False),
        Row("foreign_cores", "noise", "other processes' CPU cores (median)", False, 2, False),
        Row("failed_requests", "all", "failed requests", False, 0, False),
        Row("runs_kept", "all", "server runs summarised", True, 0, False),
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
    ]
    return rows


def _decode_rows(concurrency: Sequence[int]) -> list[Row]:
    rows = [
        Row("single.decode_tok_s", "single stream", "decode tok/s (median)", True),
        Row("single.decode_tok_s_best", "single stream", "decode tok/s (best)", True),
        Row("single.ttft_ms", "single stream", "TTFT ms (median)", False, 0),
    ]
    for level in concurrency:
        name = f"concurrency {level}"
        rows += [
            Row(f"c{level}.aggregate_tok_s", name, "aggregate tok/s", True),
            Row(f"c{level}.stream_decode_tok_s", name, "per-stream decode tok/s p50", True),
            Row(f"c{level}.ttft_p50_ms", name, "TTFT ms p50", False, 0),
            Row(f"c{level}.ttft_p95_ms", name, "TTFT ms p95", False, 0),
        ]
    return rows


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def summarize(
    runs: Sequence[ServerRun], concurrency: Sequence[int], turns: int = 5
) -> dict[str, float]:
    """One server's runs (all rounds and workloads) reduced to the table's numbers.

    Per-request numbers (decode rate, TTFT) are pooled over rounds; aggregate throughput is one
    number per round, so its median is over rounds.
    """
    single = [r for run in runs for r in run.single if r.ok]
    summary: dict[str, float] = {
        "ready_s": median(_finite([run.ready_s for run in runs])),
        "single.decode_tok_s": median(_finite([r.decode_tok_s for r in single])),
        "single.decode_tok_s_best": max(
            _finite([r.decode_tok_s for r in single]), default=math.nan
        ),
        "single.ttft_ms": median(_finite([r.ttft * 1000 for r in single])),
    }
    for level in concurrency:
        results = [res for run in runs for res in run.levels if res.concurrency == level]
        requests = [r for res in results for r in res.requests if r.ok]
        ttfts = _finite([r.ttft * 1000 for r in requests])
        summary[f"c{level}.aggregate_tok_s"] = median(_finite([r.aggregate_tok_s for r in results]))
        summary[f"c{level}.stream_decode_tok_s"] = median(
            _finite([r.decode_tok_s for r in requests])
        )
        summary[f"c{level}.ttft_p50_ms"] = percentile(ttfts, 50)
        summary[f"c{level}.ttft_p95_ms"] = percentile(ttfts, 95)
    for workload in (MULTITURN, INTERLEAVED):
        chat = [t for run in runs if run.workload == workload for t in run.turns]
        summary |= summarize_turns(workload, chat, turns)
    every = [r for run in runs for r in run.all_requests()]
    summary["failed_requests"] = float(sum(not r.ok for r in every))
    summary["requests"] = float(len(every))
    summary["usage_mismatches"] = float(
        sum(r.usage_tokens is not None and r.usage_tokens != r.tokens for r in every if r.ok)
    )
    for key in ("server_cores", "foreign_cores"):
        summary[key] = median(_finite([run.cpu.get(key, math.nan) for run in runs]))
    summary["failed_starts"] = float(sum(run.error is not None for run in runs))
    return summary


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
    summaries: dict[str, dict[str, float]],
    servers: Sequence[str],
    concurrency: Sequence[int],
    workloads: Sequence[str] = (DECODE,),
    turns: int = 5,
) -> str:
    ratios = ratio_columns(servers)
    header = ["workload", "metric", *servers, *(f"{a} / {b}" for a, b in ratios)]
    lines = [_md_row(header), _md_row(["---"] * 2 + ["---:"] * (len(header) - 2))]
    for row in rows_for(concurrency, workloads, turns):
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


def is_quiet(run: ServerRun, threshold: float) -> bool:
    """A run that completed while other processes used under ``threshold`` cores on average."""
    return run.error is None and run.cpu.get("foreign_cores", math.inf) < threshold


def select_runs(
    runs: Sequence[ServerRun], server: str, threshold: float
) -> tuple[list[ServerRun], list[str]]:
    """A server's runs to summarise, and one note per run left out or kept despite noise.

    Its quiet runs when there are any: a run during someone else's compile measures the
    compile. Otherwise its least noisy run (completed ones first), flagged, so that a busy
    machine still gives a (suspect) answer.
    """
    mine = [r for r in runs if r.server == server]
    kept = [r for r in mine if is_quiet(r, threshold)]
    if not kept and mine:
        least_noisy = min(mine, key=lambda r: (r.error is not None, _foreign(r)))
        kept = [least_noisy]
    kept_ids = {id(r) for r in kept}
    notes = [
        f"{_label(r)}: kept though {_why_not_quiet(r)} (no quiet run)"
        if id(r) in kept_ids
        else f"{_label(r)}: left out, {_why_not_quiet(r)}"
        for r in mine
        if not is_quiet(r, threshold)
    ]
    return kept, notes


def _foreign(run: ServerRun) -> float:
    return run.cpu.get("foreign_cores", math.inf)


def _label(run: ServerRun) -> str:
    return f"{run.server} {run.workload} run {run.round + 1}"


def _why_not_quiet(run: ServerRun) -> str:
    if run.error is not None:
        return f"failed ({run.error.splitlines()[0]})"
    return f"others used {_foreign(run):.2f} cores"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def machine_info(model_path: Path) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "mem_total_kib": _meminfo_total(),
        "loadavg_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "llama_cpp_python": _version("llama_cpp_python"),
        "llmserve": _version("llmserve"),
        "git_commit": _git_commit(),
        "model_path": str(model_path),
        "model_bytes": model_path.stat().st_size if model_path.exists() else None,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
