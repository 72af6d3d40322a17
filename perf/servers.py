"""The servers under comparison: how to start each one, and a process that always stops.

Each server is a ``ServerSpec`` built by a function in ``BUILDERS``; adding a peer is one more
function. The command lines live here and nowhere else, so adjusting a CLI is a one-place edit.
A server is started afresh for every workload (``WORKLOADS``), so a builder may set options for
one workload only, and ``WORKLOADS_OF`` limits a server that only makes sense for some (llmserve
without its cache says nothing new about decoding).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx


@dataclass(frozen=True)
class ServerConfig:
    """What every server gets alike: same GGUF, same threads, same context per sequence."""

    model_path: Path
    threads: int
    ctx_per_sequence: int
    parallel: int  # sequence slots of the batched servers (bench.py sets it per workload)
    python: str = sys.executable
    llama_server_bin: Path | None = None


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Added to every request body, e.g. to switch a peer's non-OpenAI defaults off.
    extra_body: dict[str, Any] = field(default_factory=dict)


class ServerStartError(RuntimeError):
    pass


def _flags(flags: dict[str, object]) -> list[str]:
    """{"--port": 8080} -> ["--port", "8080"]; a None value is a bare switch."""
    args: list[str] = []
    for flag, value in flags.items():
        args += [flag] if value is None else [flag, str(value)]
    return args


DECODE = "decode"
PREFILL = "prefill"
MULTITURN = "multiturn"
INTERLEAVED = "interleaved"
MIXED = "mixed"
OVERHEAD = "overhead"  # cheap routes and 1-token completions under wrk (perf/overhead.py)
WORKLOADS = (DECODE, PREFILL, MULTITURN, INTERLEAVED, MIXED, OVERHEAD)
CHAT = frozenset({MULTITURN, INTERLEAVED})


def llmserve_spec(config: ServerConfig, port: int, workload: str) -> ServerSpec:
    flags = {
        "--host": "127.0.0.1",
        "--port": port,
        "--model-path": config.model_path,
        "--parallel": config.parallel,
    }
    return ServerSpec(
        name="llmserve",
        command=[config.python, "-m", "llmserve", "serve", *_flags(flags)],
        env={
            "LLM_ENGINE_N_THREADS": str(config.threads),
            "LLM_ENGINE_MAX_SEQUENCE_LENGTH": str(config.ctx_per_sequence),
        },
    )


SpecBuilder = Callable[[ServerConfig, int, str], ServerSpec]


def _llmserve_with(name: str, env: dict[str, str]) -> SpecBuilder:
    """A spec builder of llmserve under another name, with ``env`` added to its own."""

    def build(config: ServerConfig, port: int, workload: str) -> ServerSpec:
        spec = llmserve_spec(config, port, workload)
        return ServerSpec(
            name=name, command=spec.command, env={**spec.env, **env}, extra_body=spec.extra_body
        )

    return build


# llmserve with its prefix cache off: what the cache is worth on the chat workloads.
llmserve_nocache_spec = _llmserve_with("llmserve_nocache", {"LLM_ENGINE_CACHE_ENABLED": "false"})
# llmserve with one unified KV buffer instead of a stream per slot: the KV layout trade-off.
llmserve_kv_unified_spec = _llmserve_with("llmserve_kv_unified", {"LLM_ENGINE_KV_UNIFIED": "true"})


def llama_cpp_server_spec(config: ServerConfig, port: int, workload: str) -> ServerSpec:
    # llama_cpp.server serves one request at a time, so its one context is one sequence's.
    # logits_all defaults to True there, which allocates n_ctx x n_vocab floats (4 GiB for the
    # demo model) and copies every prompt token's logits: off, to measure the peer at its best.
    flags = {
        "--model": config.model_path,
        "--host": "127.0.0.1",
        "--port": port,
        "--n_threads": config.threads,
        "--n_threads_batch": config.threads,
        "--n_ctx": config.ctx_per_sequence,
        "--interrupt_requests": False,
        "--logits_all": False,
        "--verbose": False,
    }
    if workload in CHAT:
        # Its prompt cache (LlamaRAMCache, 2 GiB by default) keeps the context state of earlier
        # requests, keyed by prompt + answer tokens. Only for the chat workloads: with distinct
        # prompts it only adds a state copy per request. Its chat format stays the default
        # (llama-2): the "gemma" one drops the system message, i.e. most of the prompt.
        flags |= {"--cache": True, "--cache_type": "ram"}
    return ServerSpec(
        name="llama_cpp_server",
        command=[config.python, "-m", "llama_cpp.server", *_flags(flags)],
        # Its completions default to repeat_penalty 1.1; OpenAI's (and llmserve's) to none.
        extra_body={"repeat_penalty": 1.0},
    )


def llama_server_spec(config: ServerConfig, port: int, workload: str) -> ServerSpec:
    if config.llama_server_bin is None:
        raise ServerStartError("llama_server needs --llama-server-bin PATH (or a cached build)")
    # llama-server splits --ctx-size among its --parallel slots (one KV stream per slot when
    # the slot count is given), so each sequence gets ctx_per_sequence like llmserve's.
    # Its defaults are kept where they are its best: prompt cache on, with a host-memory cache
    # of slots' prompts (--cache-ram, 8 GiB) that serves a conversation coming back to another
    # slot, and context checkpoints for sliding-window models. --no-webui: nothing to serve.
    flags: dict[str, object] = {
        "--model": config.model_path,
        "--host": "127.0.0.1",
        "--port": port,
        "--threads": config.threads,
        "--threads-batch": config.threads,
        "--ctx-size": config.ctx_per_sequence * config.parallel,
        "--parallel": config.parallel,
        "--cont-batching": None,
        "--no-webui": None,
        "--metrics": None,  # /metrics is off by default in llama-server
    }
    template = chat_template_file(config.model_path)
    if template is not None:
        flags["--chat-template-file"] = template
    return ServerSpec(
        name="llama_server",
        command=[str(config.llama_server_bin), *_flags(flags)],
        extra_body={"repeat_penalty": 1.0},
    )


def chat_template_file(model_path: Path) -> Path | None:
    """llmserve's built-in template for a GGUF without one, as a file for llama-server.

    Without it llama-server falls back to ChatML while llmserve uses the architecture's own
    (Gemma's for the demo model): the two would be sent different prompts. None when the GGUF
    has a template (both then use it) or cannot be read.
    """
    from llmserve.errors import ModelLoadError
    from llmserve.models.ggufmeta import read_metadata
    from llmserve.prompt.chat import builtin_template  # the subject's own choice, not a copy

    try:
        metadata = read_metadata(model_path)
    except (ModelLoadError, OSError):  # an unreadable model fails at the server's start instead
        return None
    if metadata.chat_template is not None:
        return None
    name, source = builtin_template(metadata.architecture or "")
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"llmserve-bench-{name.replace(':', '-')}-{digest}.jinja"
    if not path.is_file():
        path.write_text(source)
    return path


BUILDERS: dict[str, SpecBuilder] = {
    "llmserve": llmserve_spec,
    "llmserve_nocache": llmserve_nocache_spec,
    "llmserve_kv_unified": llmserve_kv_unified_spec,
    "llama_cpp_server": llama_cpp_server_spec,
    "llama_server": llama_server_spec,
}

# Servers that run only some workloads; the others run all of them.
WORKLOADS_OF: dict[str, frozenset[str]] = {
    "llmserve_nocache": CHAT,
    # It serves one request at a time and has none of the probe routes: nothing to compare.
    "llama_cpp_server": frozenset(WORKLOADS) - {OVERHEAD},
}


def serves(server: str, workload: str) -> bool:
    return workload in WORKLOADS_OF.get(server, frozenset(WORKLOADS))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server subprocess in its own process group, stopped on exit whatever happened.

    SIGTERM first (uvicorn shuts down cleanly on it), SIGKILL to the whole group after
    ``stop_timeout`` seconds, so that no child outlives the benchmark.
    """

    def __init__(self, spec: ServerSpec, port: int, log_path: Path, stop_timeout: float = 15.0):
        self.spec = spec
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.spec.command,
                env={**os.environ, **self.spec.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc.pid

    def wait_ready(self, timeout: float) -> float:
        """Poll GET /v1/models until it answers 200; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                self._raise_if_exited()
                try:
                    if client.get("/v1/models").status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise ServerStartError(
            f"{self.spec.name} not ready after {timeout:.0f}s\n{self.log_tail()}"
        )

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            proc.wait(timeout=self.stop_timeout)
        finally:
            # Children left behind in the group (workers, reloaders) go too.
            self._signal_group(signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _raise_if_exited(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServerStartError(
                f"{self.spec.name} exited with status {self._proc.returncode}\n{self.log_tail()}"
            )

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)


@contextlib.contextmanager
def all_serving(
    servers: Sequence[tuple[ServerSpec, int]], log_name: str, ready_timeout_s: float = 300.0
) -> Iterator[None]:
    """Start every (spec, port) at once, logging to ``$TMPDIR/<log_name>-<name>.log``, and
    wait until each serves; on exit, whatever happened, every one started is stopped."""
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    with contextlib.ExitStack() as stack:
        processes = [
            stack.enter_context(ServerProcess(spec, port, logs / f"{log_name}-{spec.name}.log"))
            for spec, port in servers
        ]
        for process in processes:
            process.wait_ready(ready_timeout_s)
        yield
