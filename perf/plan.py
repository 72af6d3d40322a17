"""The benchmark's command line and the plan it turns into (what to run, how often, how long)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perf.mixed import MixedShape
from perf.prefill import PREFILL_MAX_TOKENS
from perf.servers import BUILDERS, WORKLOADS

DEFAULT_SERVERS = ["llmserve", "llmserve_nocache", "llama_cpp_server", "llama_server"]
DEFAULT_CONCURRENCY = [1, 2, 4, 8, 16]
# A full run of every workload on the four default servers: see perf/README.md for the budget.
FULL_TIME_LIMIT_S = 2700.0
QUICK_TIME_LIMIT_S = 900.0
# Long prompts are sized by a words-per-token estimate; leave room for it to be a little off.
PROMPT_LENGTH_MARGIN = 1.1


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
    parallel: int  # sequence slots of the batched servers on decode, prefill and mixed
    chat_parallel: int  # sequence slots of the batched servers on the chat workloads
    time_limit: float
    ready_timeout: float
    request_timeout: float
    quiet_wait: float
    quiet_threshold: float
    retries: int
    prefill_lengths: list[int] = field(default_factory=lambda: [1000, 3000])
    prefill_reps: int = 3  # requests of each length per run
    wrk_seconds: float = 10.0  # each wrk run of the overhead workload
    mixed: MixedShape = field(
        default_factory=lambda: MixedShape(short=4, long=3, long_tokens=2000, max_seconds=90.0)
    )


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"need positive integers: {text}")
    return values


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    """A comma-separated list of names, each one of ``known``, in ``known``'s order."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}(s) {', '.join(unknown) or '(none)'}; known: {', '.join(known)}"
        )
    return [n for n in known if n in names]


def _server_list(text: str) -> list[str]:
    # In the order given: it is the first round's order.
    order = [part.strip() for part in text.split(",")]
    return sorted(_names(text, list(BUILDERS), "server"), key=order.index)


def _workload_list(text: str) -> list[str]:
    return _names(text, WORKLOADS, "workload")  # always the same order


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    add = parser.add_argument
    add(
        "--servers",
        type=_server_list,
        default=DEFAULT_SERVERS,
        help=f"comma-separated, from: {', '.join(BUILDERS)} (default: all)",
    )
    add(
        "--workloads",
        type=_workload_list,
        default=list(WORKLOADS),
        help=f"comma-separated, from: {', '.join(WORKLOADS)} (default: all)",
    )
    add("--model-path", type=Path, help="GGUF file (default: the demo model)")
    add("--threads", type=int, default=2)
    add("--ctx", type=int, default=4096, help="context per sequence")
    add("--parallel", type=int, default=16, help="sequence slots (batched servers)")
    add("--max-tokens", type=int, default=128)
    add("--concurrency", type=_int_list, default=DEFAULT_CONCURRENCY)
    add("--conversations", type=int, help="sequential multi-turn chats (default 2, quick 1)")
    add("--interleaved", type=int, default=4, help="conversations taking turns (interleaved)")
    add("--turns", type=int, default=5, help="turns per conversation")
    add("--answer-tokens", type=int, default=32, help="max_tokens of chat answers")
    add(
        "--chat-parallel",
        type=int,
        default=2,
        help="sequence slots on the chat workloads (fewer than --interleaved conversations)",
    )
    add("--prefill-tokens", type=_int_list, default=[1000, 3000], help="long prompt lengths")
    add("--prefill-reps", type=int, help="requests per prompt length (default 3, quick 1)")
    add("--mixed-short", type=int, default=4, help="short streams decoding in the mixed load")
    add("--mixed-long", type=int, help="long prompts in the mixed load (default 3, quick 2)")
    add("--mixed-long-tokens", type=int, default=2000, help="long prompt length (mixed load)")
    add("--mixed-seconds", type=float, default=90.0, help="mixed load's time bound")
    add("--wrk-seconds", type=float, help="each wrk run of overhead (default 10, quick 5)")
    add("--rounds", type=int, help="quiet runs wanted per server (default 2, quick 1)")
    add("--single-reps", type=int, help="single-stream requests per round")
    add("--per-client", type=int, help="requests each concurrent client sends")
    add(
        "--time-limit",
        type=float,
        help=f"overall seconds (default {FULL_TIME_LIMIT_S:.0f}, quick {QUICK_TIME_LIMIT_S:.0f})",
    )
    add("--ready-timeout", type=float, default=180.0)
    add("--request-timeout", type=float, default=180.0)
    add("--quiet-wait", type=float, default=30.0, help="seconds to wait for a quiet machine")
    add("--quiet-threshold", type=float, default=0.3, help="CPU cores others may use when quiet")
    add("--retries", type=int, help="extra rounds for runs that failed or were noisy (default 2)")
    add("--quick", action="store_true", help="smoke run: fewer repetitions")
    add("--llama-server-bin", type=Path, help="llama.cpp's llama-server (default: build it)")
    add("--no-ceiling", action="store_true", help="skip the memory-bandwidth measurement")
    add("--out", type=Path, help="JSON results path (default perf/results/...)")
    add("--plots-dir", type=Path, help="also write the PNG plots here (e.g. docs/perf)")
    return parser


def parse_args(argv: Sequence[str] | None, description: str = "") -> argparse.Namespace:
    parser = build_parser(description)
    args = parser.parse_args(argv)
    longest = max([*args.prefill_tokens, args.mixed_long_tokens])
    if longest * PROMPT_LENGTH_MARGIN + PREFILL_MAX_TOKENS > args.ctx:
        parser.error(f"prompts of ~{longest} tokens do not fit --ctx {args.ctx} per sequence")
    if max(args.concurrency) > args.parallel:
        # Not an error: a peer may queue; but the batched servers then measure queueing.
        print(f"note: concurrency {max(args.concurrency)} > --parallel {args.parallel} slots")
    return args


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
        time_limit=pick(args.time_limit, FULL_TIME_LIMIT_S, QUICK_TIME_LIMIT_S),
        ready_timeout=args.ready_timeout,
        request_timeout=args.request_timeout,
        quiet_wait=args.quiet_wait,
        quiet_threshold=args.quiet_threshold,
        retries=pick(args.retries, 2, 1),
        prefill_lengths=args.prefill_tokens,
        prefill_reps=pick(args.prefill_reps, 3, 1),
        wrk_seconds=pick(args.wrk_seconds, 10.0, 5.0),
        mixed=MixedShape(
            short=args.mixed_short,
            long=pick(args.mixed_long, 3, 2),
            long_tokens=args.mixed_long_tokens,
            max_seconds=args.mixed_seconds,
        ),
    )
