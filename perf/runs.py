"""What one start of one server for one workload measured: the raw record of a run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from perf.mixed import MixedResult
from perf.multiturn import TurnResult
from perf.overhead import WrkResult
from perf.prefill import PrefillResult
from perf.servers import DECODE
from perf.workloads import ConcurrencyResult, RequestResult


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
    prefill: list[PrefillResult] = field(default_factory=list)
    mixed: MixedResult | None = None
    overhead: list[WrkResult] = field(default_factory=list)  # perf/overhead.py, one per route
    # Wall seconds of the one-request-at-a-time phases ("single", "turns", "prefill"), for
    # requests/s; concurrency levels and the mixed load carry their own.
    walls: dict[str, float] = field(default_factory=dict)
    peak_rss_kib: int | None = None  # perf.rss.PeakRss over the run; None: not measured
    cpu: dict[str, float] = field(default_factory=dict)  # perf.cpu.usage over the workloads

    def all_requests(self) -> list[RequestResult]:
        return [
            *self.single,
            *(r for level in self.levels for r in level.requests),
            *(t.request for t in self.turns),
            *(p.request for p in self.prefill),
            *(self.mixed.requests if self.mixed else []),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "round": self.round,
            "workload": self.workload,
            "ready_s": self.ready_s,
            "load_before": self.load_before,
            "error": self.error,
            "peak_rss_kib": self.peak_rss_kib,
            "walls": self.walls,
            "single": [r.to_json() for r in self.single],
            "concurrency": [level.to_json() for level in self.levels],
            "turns": [t.to_json() for t in self.turns],
            "prefill": [p.to_json() for p in self.prefill],
            "mixed": self.mixed.to_json() if self.mixed else None,
            "overhead": [r.to_json() for r in self.overhead],
            "cpu": self.cpu,
        }


def is_quiet(run: ServerRun, threshold: float) -> bool:
    """A run that completed while other processes used under ``threshold`` cores on average."""
    return run.error is None and run.cpu.get("foreign_cores", math.inf) < threshold


def select_runs(
    runs: list[ServerRun], server: str, threshold: float
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
