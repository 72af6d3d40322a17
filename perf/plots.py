"""PNG plots of a run's summaries, one line per server: throughput and TTFT against concurrency,
and TTFT per chat turn. Drawn from the same summary numbers as the table, so they never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a benchmark machine; before pyplot loads

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from perf.servers import INTERLEAVED, MULTITURN

Summaries = dict[str, dict[str, float]]
# File stems of the plots; bench.py prefixes them ("bench-<time>-", "latest-").
THROUGHPUT = "tokens-per-s"
TTFT_CONCURRENCY = "ttft-concurrency"
TTFT_TURNS = "ttft-per-turn"
# The plots against concurrency: (summary metric, y label, title), and a log y axis where a
# serial server's queueing spans decades.
CONCURRENCY_PLOTS: dict[str, tuple[tuple[str, str, str], bool]] = {
    THROUGHPUT: (
        ("aggregate_tok_s", "aggregate tokens/s", "Decode throughput (streamed /v1/completions)"),
        False,
    ),
    TTFT_CONCURRENCY: (
        ("ttft_p50_ms", "TTFT p50 (ms, log scale)", "Time to first token under concurrency"),
        True,
    ),
}


def _series(summary: dict[str, float], keys: Sequence[str]) -> list[float]:
    return [summary.get(key, math.nan) for key in keys]


def _has_data(values: Sequence[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def _lines(
    ax: Axes, xs: Sequence[int], summaries: Summaries, servers: Sequence[str], keys: list[str]
) -> bool:
    """One line per server that has any of ``keys``; whether anything was drawn."""
    drawn = False
    for index, server in enumerate(servers):
        values = _series(summaries.get(server, {}), keys)
        if _has_data(values):
            # A server keeps its colour in every plot, whichever others have data there.
            ax.plot(xs, values, marker="o", label=server, color=f"C{index}")
            drawn = True
    return drawn


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _concurrency_plot(
    summaries: Summaries,
    servers: Sequence[str],
    concurrency: Sequence[int],
    labels: tuple[str, str, str],
    path: Path,
    *,
    log_y: bool,
) -> Path | None:
    """``c<level>.<metric>`` against concurrency; None (no file) when no server has it.

    ``labels`` is (metric, y label, title).
    """
    metric, ylabel, title = labels
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    keys = [f"c{level}.{metric}" for level in concurrency]
    if not _lines(ax, list(concurrency), summaries, servers, keys):
        plt.close(fig)
        return None
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(concurrency), [str(c) for c in concurrency])
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def ttft_turns_plot(
    summaries: Summaries, servers: Sequence[str], turns: int, path: Path
) -> Path | None:
    """Median TTFT of each chat turn: sequential and interleaved side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.2), sharey=True)
    numbers = list(range(1, turns + 1))
    drawn = False
    for ax, workload, name in zip(
        axes, (MULTITURN, INTERLEAVED), ("multi-turn chat", "interleaved chat"), strict=True
    ):
        keys = [f"{workload}.ttft_turn{n}_ms" for n in numbers]
        if _lines(ax, numbers, summaries, servers, keys):
            drawn = True
            ax.legend()
        ax.set_title(name)
        ax.set_xlabel("turn")
        ax.set_xticks(numbers)
        ax.grid(True, alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    axes[0].set_ylabel("TTFT median (ms, log scale)")
    axes[0].set_yscale("log")
    return _save(fig, path)


def write_plots(
    summaries: Summaries,
    servers: Sequence[str],
    concurrency: Sequence[int],
    turns: int,
    directory: Path,
    prefix: str = "",
) -> list[Path]:
    """Every plot that has data, as ``directory/<prefix><name>.png``; the paths written."""
    plots: list[tuple[str, Callable[[Path], Path | None]]] = [
        (name, partial(_concurrency_plot, summaries, servers, concurrency, labels, log_y=log_y))
        for name, (labels, log_y) in CONCURRENCY_PLOTS.items()
    ]
    plots.append((TTFT_TURNS, partial(ttft_turns_plot, summaries, servers, turns)))
    written = [draw(directory / f"{prefix}{name}.png") for name, draw in plots]
    return [path for path in written if path is not None]
