"""The soak's measurements and its pass/fail verdicts, as pure functions over numbers.

Kept apart from the run so that each verdict can be tested on sample numbers in milliseconds,
and so that the thresholds are read in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from perf.rss import parse_status, read_status

MIB = 1 << 20

# Metric names (llmserve/ops/metrics.py).
RUNNING = "llm_engine_requests_running"
WAITING = "llm_engine_requests_waiting"
CACHE_BYTES = "llm_engine_cache_bytes"
CACHE_EVICTIONS = "llm_engine_cache_evictions_total"
CACHE_HITS = "llm_engine_cache_hits_total"
CACHE_MISSES = "llm_engine_cache_misses_total"


# --- RSS ---------------------------------------------------------------------------------


def parse_vm_rss(status_text: str) -> int | None:
    """Resident set size in bytes from the text of /proc/<pid>/status (None: no VmRSS line,
    as for a zombie). The parsing is perf/rss.py's, shared with the benchmark."""
    kib = parse_status(status_text).get("VmRSS")
    return None if kib is None else kib * 1024


def read_rss(pid: int) -> int | None:
    kib = read_status(pid).get("VmRSS")
    return None if kib is None else kib * 1024


def slope_per_minute(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per minute; 0 with under 2 samples."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return cov / var * 60.0


@dataclass(frozen=True)
class RssSummary:
    baseline: int  # bytes, after warm-up
    peak: int  # bytes, highest sample from the baseline on
    end: int  # bytes, idle after the clients stopped
    slope_last_half_mib_min: float  # MiB per minute over the last half of the load

    @property
    def growth(self) -> int:
        return self.end - self.baseline

    @property
    def growth_pct(self) -> float:
        return 100.0 * self.growth / self.baseline if self.baseline else 0.0

    def to_json(self) -> dict[str, float]:
        return {
            **asdict(self),
            "growth": self.growth,
            "growth_pct": round(self.growth_pct, 2),
            "baseline_mib": round(self.baseline / MIB, 1),
            "peak_mib": round(self.peak / MIB, 1),
            "end_mib": round(self.end / MIB, 1),
        }


def summarize_rss(
    samples: Sequence[tuple[float, int]], baseline_at: float, load_end: float, end: int
) -> RssSummary:
    """RSS numbers from (seconds, bytes) samples: the baseline is the median of the samples of
    the 5 s before ``baseline_at`` (one sample is noisy under load), the slope is over the last
    half of [baseline_at, load_end]."""
    before = sorted(v for t, v in samples if baseline_at - 5.0 <= t <= baseline_at)
    if not before:
        before = sorted(v for t, v in samples if t <= baseline_at) or [end]
        before = before[-1:]
    baseline = before[len(before) // 2]
    after = [v for t, v in samples if t >= baseline_at]
    middle = (baseline_at + load_end) / 2
    last_half = [(t, v / MIB) for t, v in samples if middle <= t <= load_end]
    return RssSummary(
        baseline=baseline,
        peak=max([*after, end]),
        end=end,
        slope_last_half_mib_min=round(slope_per_minute(last_half), 3),
    )


# --- /metrics ----------------------------------------------------------------------------

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition -> {sample name: [(labels, value)]}."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def metric_sum(samples: Samples, name: str, **labels: str) -> float | None:
    """The sum of ``name``'s samples whose labels include ``labels``; None when absent."""
    values = [
        value
        for sample_labels, value in samples.get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


@dataclass(frozen=True)
class CacheNumbers:
    """Prefix-cache counters from one scrape."""

    hits: float
    misses: float
    evictions_ram: float
    evictions_disk: float
    bytes_ram: float
    bytes_disk: float

    @classmethod
    def from_samples(cls, samples: Samples) -> CacheNumbers:
        def get(name: str, **labels: str) -> float:
            return metric_sum(samples, name, **labels) or 0.0

        return cls(
            hits=get(CACHE_HITS),
            misses=get(CACHE_MISSES),
            evictions_ram=get(CACHE_EVICTIONS, tier="ram"),
            evictions_disk=get(CACHE_EVICTIONS, tier="disk"),
            bytes_ram=get(CACHE_BYTES, tier="ram"),
            bytes_disk=get(CACHE_BYTES, tier="disk"),
        )

    def since(self, start: CacheNumbers) -> dict[str, float]:
        """Counter increases from ``start``, and the hit rate of the prompts in between."""
        hits, misses = self.hits - start.hits, self.misses - start.misses
        return {
            "hits": hits,
            "misses": misses,
            "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
            "evictions_ram": self.evictions_ram - start.evictions_ram,
            "evictions_disk": self.evictions_disk - start.evictions_disk,
        }


# --- disk tier folder --------------------------------------------------------------------


def folder_usage(folder: Path) -> tuple[int, int]:
    """(bytes, files) of the regular files under ``folder``."""
    total = files = 0
    for path in folder.rglob("*"):
        if path.is_file():
            total += path.stat().st_size
            files += 1
    return total, files


def disk_file_slack(max_tokens: int) -> int:
    """Bytes a cache file holds beyond the state the budget counts: magic, a JSON header
    (under 1 KiB) and the token ids (4 bytes each)."""
    return 1024 + 4 * max_tokens


# --- server log --------------------------------------------------------------------------


def log_problems(lines: Sequence[str]) -> list[str]:
    """Lines of the server's log that report an error: level ERROR/CRITICAL or a traceback."""
    found = []
    for line in lines:
        level = ""
        if line.startswith("{"):
            try:
                level = str(json.loads(line).get("level", ""))
            except ValueError:
                level = ""
        if level in ("ERROR", "CRITICAL") or "Traceback (most recent call last)" in line:
            found.append(line[:500])
    return found


# --- verdicts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def check_no_5xx(statuses: Mapping[int, int]) -> Verdict:
    bad = {s: c for s, c in statuses.items() if s >= 500}
    return Verdict("no 5xx", not bad, f"{sum(bad.values())} answers >= 500 {dict(bad)}")


def check_outcomes(outcomes: Mapping[str, int], expected: frozenset[str]) -> Verdict:
    """Every request ended in an outcome the soak expects (envelopes checked, answers valid)."""
    bad = {o: c for o, c in outcomes.items() if o not in expected and c}
    detail = "all requests ended as expected" if not bad else f"unexpected outcomes {bad}"
    return Verdict("outcomes", not bad, detail)


def check_idle(running: float | None, waiting: float | None, settle_s: float) -> Verdict:
    ok = running == 0 and waiting == 0
    return Verdict(
        "no stuck slot",
        ok,
        f"running={running} waiting={waiting} ({settle_s:.1f}s after the clients stopped)",
    )


def check_after_request(status: int | None, detail: str) -> Verdict:
    return Verdict("served afterwards", status == 200, f"HTTP {status} {detail}".strip())


def check_rss(rss: RssSummary, max_growth_pct: float, max_growth_mib: float) -> Verdict:
    """End RSS within max(pct of baseline, MiB) of the post-warm-up baseline."""
    bound = max(rss.baseline * max_growth_pct / 100.0, max_growth_mib * MIB)
    return Verdict(
        "RSS growth bounded",
        rss.growth <= bound,
        f"baseline {rss.baseline / MIB:.1f} MiB, peak {rss.peak / MIB:.1f}, "
        f"end {rss.end / MIB:.1f} ({rss.growth / MIB:+.1f} MiB, {rss.growth_pct:+.1f}%; bound "
        f"{bound / MIB:.1f} MiB); last-half slope {rss.slope_last_half_mib_min:+.2f} MiB/min",
    )


def check_cache_budget(tier: str, peak_bytes: float, budget_bytes: int) -> Verdict:
    return Verdict(
        f"cache {tier} within budget",
        peak_bytes <= budget_bytes,
        f"peak {peak_bytes / MIB:.1f} MiB of {budget_bytes / MIB:.0f} MiB",
    )


def check_disk_folder(used: int, files: int, budget: int, slack_per_file: int) -> Verdict:
    bound = budget + files * slack_per_file
    return Verdict(
        "disk folder within budget",
        used <= bound,
        f"{used / MIB:.1f} MiB in {files} files (budget {budget / MIB:.0f} MiB + headers)",
    )


def check_exercised(what: str, count: float) -> Verdict:
    """The soak really exercised ``what`` (a run without it proves nothing about it)."""
    return Verdict(f"exercised {what}", count > 0, f"{count:g}")


def check_log(problems: Sequence[str]) -> Verdict:
    first = f"; first: {problems[0][:200]}" if problems else ""
    return Verdict("server log clean", not problems, f"{len(problems)} error lines{first}")
