"""One server start for one workload: start it, warm it up, drive the workload, measure, stop."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from perf import cpu
from perf.conversations import Conversation, conversation_seeds
from perf.longprompts import TokenCounter, long_prompt, prompt_seed
from perf.mixed import MixedResult, run_mixed
from perf.multiturn import run_interleaved, run_sequential, take_turn
from perf.overhead import WrkUnavailable, ensure_wrk, run_overhead
from perf.plan import Plan
from perf.prefill import PREFILL_MAX_TOKENS, run_prefill
from perf.prompts import PromptPool
from perf.rss import PeakRss
from perf.runs import ServerRun
from perf.servers import (
    BUILDERS,
    CHAT,
    DECODE,
    INTERLEAVED,
    MIXED,
    MULTITURN,
    OVERHEAD,
    PREFILL,
    ServerConfig,
    ServerProcess,
    ServerStartError,
    free_port,
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

WARMUP_TOKENS = 8
# The long-prompt workloads' first long prompt pays one-off buffer growth: a throw-away one first.
WARMUP_PROMPT_TOKENS = 500


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def run_server(
    run: ServerRun,
    config: ServerConfig,
    plan: Plan,
    deadline: Deadline,
    logs: Path,
    counter: TokenCounter,
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
            log(f"{title(run)} ready in {run.ready_s:.1f}s on port {port}")
            cpu_start = cpu.sample(server.pid)
            # Read before the server stops: VmHWM dies with the process.
            with PeakRss(server.pid) as rss:
                try:
                    asyncio.run(run_workload(server, plan, deadline, run, counter))
                finally:
                    run.cpu = cpu.usage(cpu_start, cpu.sample(server.pid))
            run.peak_rss_kib = rss.peak_kib or None
            if run.error:
                run.error += "\n" + server.log_tail()
    except (ServerStartError, httpx.HTTPError, OSError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        run.error = "interrupted"
        raise
    if run.error:
        log(f"{title(run)} failed: {run.error}")


def title(run: ServerRun) -> str:
    return f"{run.server} {run.workload} (round {run.round + 1})"


async def run_workload(
    server: ServerProcess, plan: Plan, deadline: Deadline, run: ServerRun, counter: TokenCounter
) -> None:
    """Warm the server up, then run ``run.workload`` on it."""
    connections = max(*plan.concurrency, plan.mixed.short + 1) + 4
    limits = httpx.Limits(max_connections=connections)
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
        if run.workload == OVERHEAD:
            await run_fixed_costs(target, server.spec.extra_body, plan, run)
        elif run.workload == DECODE:
            await run_decode(client, target, prompts, plan, deadline, run)
        elif run.workload in (PREFILL, MIXED):
            await run_long(client, target, prompts, plan, deadline, run, counter)
        else:
            chat_target = replace(target, max_tokens=plan.answer_tokens)
            await run_chat(client, chat_target, plan, deadline, run)


async def run_fixed_costs(
    target: Target, extra_body: dict[str, Any], plan: Plan, run: ServerRun
) -> None:
    """The cheap routes and 1-token completions under wrk (perf/overhead.py)."""
    try:
        wrk = await asyncio.to_thread(ensure_wrk, log)
    except WrkUnavailable as exc:
        run.error = str(exc)
        return
    start = time.monotonic()
    run.overhead = await asyncio.to_thread(
        run_overhead, wrk, target.base_url, target.model, extra_body, plan.wrk_seconds, log
    )
    run.walls["overhead"] = time.monotonic() - start
    failed = [r.name for r in run.overhead if not r.ok]
    if failed:
        run.error = f"wrk saw errors on: {', '.join(failed)}"


async def run_decode(
    client: httpx.AsyncClient,
    target: Target,
    prompts: PromptPool,
    plan: Plan,
    deadline: Deadline,
    run: ServerRun,
) -> None:
    start = time.monotonic()
    await run_single(client, target, prompts, plan.single_reps, deadline, run.single)
    run.walls["single"] = time.monotonic() - start
    log(f"  single stream: {_brief_single(run)}")
    for level in plan.concurrency:
        if deadline.expired:
            break
        result = await run_concurrent(client, target, prompts, level, plan.per_client, deadline)
        run.levels.append(result)
        log(
            f"  concurrency {level}: {result.aggregate_tok_s:.1f} tok/s aggregate, "
            f"{result.requests_per_s:.2f} requests/s"
        )


async def run_long(
    client: httpx.AsyncClient,
    target: Target,
    prompts: PromptPool,
    plan: Plan,
    deadline: Deadline,
    run: ServerRun,
    counter: TokenCounter,
) -> None:
    """The prefill or the mixed workload, after one throw-away long prompt."""
    warmup_prompt = long_prompt(prompt_seed(run.workload, run.round, 99), WARMUP_PROMPT_TOKENS)
    warmup = await stream_completion(client, target, warmup_prompt, deadline, PREFILL_MAX_TOKENS)
    if not warmup.ok:
        run.error = f"long-prompt warm-up failed: {warmup.error}"
        return
    if run.workload == PREFILL:
        start = time.monotonic()
        await run_prefill(
            client,
            target,
            counter,
            plan.prefill_lengths,
            plan.prefill_reps,
            run.round,
            deadline,
            run.prefill,
        )
        run.walls["prefill"] = time.monotonic() - start
        rates = ", ".join(f"{p.length}: {p.prefill_tok_s:.0f}" for p in run.prefill)
        log(f"  prefill tok/s by length: {rates}")
    else:
        run.mixed = MixedResult()
        await run_mixed(client, target, prompts, plan.mixed, run.round, deadline, run.mixed)
        short = [r for r in run.mixed.short if r.ok]
        log(
            f"  mixed: {len(short)} short streams, {len(run.mixed.long)} long prompts "
            f"in {run.mixed.wall_s:.1f}s"
        )


async def run_chat(
    client: httpx.AsyncClient, target: Target, plan: Plan, deadline: Deadline, run: ServerRun
) -> None:
    # One chat turn of a conversation of its own first: the chat path's first request (template
    # compile, first long prompt) must not land in the measured turn 1's TTFT.
    warmup = await take_turn(client, target, Conversation(seed=-1 - run.round), deadline)
    if not warmup.request.ok:
        run.error = f"chat warm-up failed: {warmup.request.error}"
        return
    start = time.monotonic()
    if run.workload == MULTITURN:
        seeds = conversation_seeds(run.round, MULTITURN, plan.conversations)
        await run_sequential(client, target, seeds, plan.turns, deadline, run.turns)
    else:
        seeds = conversation_seeds(run.round, INTERLEAVED, plan.interleaved)
        await run_interleaved(client, target, seeds, plan.turns, deadline, run.turns)
    run.walls["turns"] = time.monotonic() - start
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
