"""Pure statistics helpers for the benchmark: no I/O, no clocks."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks.

    Same definition as numpy's default ("linear"), so small samples give the familiar numbers:
    the 50th of [1, 2, 3, 4] is 2.5. NaN for an empty sample rather than an exception, because a
    workload cut short by the time limit is reported, not fatal.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN where either is missing or the denominator is zero."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def decode_rate(tokens: int, t_first: float, t_last: float) -> float:
    """Tokens per second between the first and the last token: (tokens - 1) / elapsed.

    The first token is excluded because its time is the prompt's (TTFT), not decoding's.
    """
    elapsed = t_last - t_first
    if tokens < 2 or elapsed <= 0:
        return math.nan
    return (tokens - 1) / elapsed


def gaps(times: Sequence[float]) -> list[float]:
    """The intervals between consecutive arrival times: a stream's inter-token latencies.

    ``times`` are the arrivals of a stream's text chunks (one per token); the first one's wait
    is TTFT, not an inter-token gap, so n arrivals give n - 1 gaps.
    """
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def rate(count: float, seconds: float) -> float:
    """count / seconds, NaN for an empty or negative interval (a phase that never ran)."""
    if seconds <= 0 or math.isnan(seconds):
        return math.nan
    return count / seconds


def finite(values: Iterable[float]) -> list[float]:
    """The values that are numbers: a failed request's NaN must not reach a percentile."""
    return [v for v in values if not math.isnan(v)]
