"""Two `llmserve serve` processes on one shared prefix cache folder (``[cache] disk_shared``):
a chat's next turn continues from the KV another process computed."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from llmserve.engine.kv_folder import REFRESH_S
from tests.support.process import running_server

SYSTEM = " ".join(f"Rule {i}: answer briefly about subject {i}." for i in range(12))


def configure(folder: Path, shared: Path) -> Path:
    """A process's own working folder, whose config.toml points at the shared KV folder."""
    folder.mkdir()
    folder.joinpath("config.toml").write_text(
        f'[cache]\ndisk_dir = "{shared}"\ndisk_size_mb = 64\ndisk_shared = true\n'
    )
    return folder


def turn(base_url: str, messages: list[dict[str, str]], question: str) -> int:
    """One chat turn (history re-sent, answer appended); returns its cached_tokens."""
    messages.append({"role": "user", "content": question})
    body = {"model": "tiny", "messages": messages, "max_tokens": 12, "temperature": 0}
    reply = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    messages.append({"role": "assistant", "content": answer["choices"][0]["message"]["content"]})
    return int(answer["usage"]["prompt_tokens_details"]["cached_tokens"])


def wait_for_files(folder: Path, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(list(folder.glob("*.kv"))) < count:
        assert time.monotonic() < deadline, f"fewer than {count} entries reached {folder}"
        time.sleep(0.05)


def test_chat_started_on_process_a_continues_cached_on_process_b(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    """Turns 1-2 go to A, turn 3 to B: B restores A's written-through KV (cached_tokens > 0),
    written through by A (whose 1 GiB RAM tier evicts nothing) and found by B's refresh."""
    shared = tmp_path / "kv"
    with (
        running_server(tiny_gguf, configure(tmp_path / "a", shared)) as a,
        running_server(tiny_gguf, configure(tmp_path / "b", shared)) as b,
    ):
        messages = [{"role": "system", "content": SYSTEM}]
        assert turn(a.base_url, messages, "Name a river.") == 0
        assert turn(a.base_url, messages, "How long is it?") > 0  # A's own live slot
        wait_for_files(shared, 2)
        time.sleep(REFRESH_S)  # B lists the folder again at its next lookup
        cached = turn(b.base_url, messages, "Where does it end?")
        assert cached > 0, b.log()
        assert "Traceback" not in a.log() + b.log()
