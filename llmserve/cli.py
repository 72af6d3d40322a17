"""The ``llmserve`` command: ``serve``, ``config``, ``pull`` and ``models`` (llmserve.models.cli).

Every failure a user can cause (bad config, missing model, port in use) ends as one line
``llmserve: error: <message>`` on stderr, exit status 2 for configuration and 1 otherwise,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import attrs

from llmserve.config import Settings, load_settings, settings_to_dict, settings_to_toml
from llmserve.errors import ConfigError, InsufficientMemory, LLMServeError
from llmserve.models.budget import check_memory
from llmserve.models.cli import add_commands as add_model_commands
from llmserve.models.resolve import resolve_model_paths
from llmserve.ops.logs import configure_logging
from llmserve.prompt.toolformats import recognise

logger = logging.getLogger("llmserve.cli")

EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
# uvicorn's own wait for open responses once it stops: after a SIGTERM drain (bounded by
# [server] graceful_shutdown_s), or at once after Ctrl+C.
CLOSE_TIMEOUT_S = 5
# The settings flags (besides --config): names of llmserve.config.OPTIONS.
SETTING_FLAGS = (
    "host",
    "port",
    "model_path",
    "api_key",
    "device",
    "parallel",
    "replicas",
    "devices",
    "max_sequence_length",
    "kv_unified",
    "speculative",
    "draft_max",
    "draft_min",
    "ngram_size",
    "ngram_shared",
    "draft_model_path",
    "default_max_tokens",
    "tool_format",
    "models_dir",
    "log_level",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except (ConfigError, InsufficientMemory) as exc:  # both fixed by changing the config
        return _fail(exc.message, EXIT_CONFIG)
    except LLMServeError as exc:
        return _fail(exc.message, EXIT_FAILURE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    settings_flags = argparse.ArgumentParser(add_help=False)
    group = settings_flags.add_argument_group(
        "settings", "override config.toml and LLM_ENGINE_* variables"
    )
    group.add_argument("--config", type=Path, help="config.toml to read ($LLM_ENGINE_CONFIG)")
    group.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    group.add_argument("--port", help="port to listen on (default 8080)")
    group.add_argument(
        "--model-path",
        help="GGUF file, model name in the store, or REPO_ID[:PATTERN] (default: the demo model)",
    )
    group.add_argument("--api-key", help="require this bearer key (prefer $LLM_ENGINE_API_KEY)")
    group.add_argument("--device", help="cpu, gpu or cuda")
    group.add_argument("--parallel", help="sequences decoded together (default 4)")
    group.add_argument(
        "--replicas", help="llama contexts on the one loaded model, each with its own slots"
    )
    group.add_argument("--devices", help="one GPU index per replica, comma-separated (0,1)")
    group.add_argument("--max-sequence-length", help="context tokens of one sequence")
    group.add_argument(
        "--kv-unified", help="true: one KV buffer for all sequences; false: one each"
    )
    group.add_argument(
        "--speculative",
        help="off, ngram (draft tokens from the context) or draft (with --draft-model-path)",
    )
    group.add_argument("--draft-max", help="most tokens drafted a step (default 8)")
    group.add_argument("--draft-min", help="fewest tokens worth drafting (default 2)")
    group.add_argument("--ngram-size", help="tokens an n-gram draft matches on (default 3)")
    group.add_argument(
        "--ngram-shared", help="true: n-gram drafts also from other sequences' output"
    )
    group.add_argument(
        "--draft-model-path",
        help="the smaller GGUF (same vocabulary) that drafts for speculative = draft",
    )
    group.add_argument(
        "--default-max-tokens",
        help="completion tokens of a request that sets no max_tokens (default: up to the context)",
    )
    group.add_argument(
        "--tool-format", help="tool-call family (default: recognised from the chat template)"
    )
    group.add_argument("--models-dir", help="the model store (default ~/.cache/llmserve/models)")
    group.add_argument("--log-level", help="debug, info, warning, error or critical")

    parser = argparse.ArgumentParser(
        prog="llmserve", description="OpenAI-compatible inference server for GGUF models."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", parents=[settings_flags], help="run the HTTP server")
    serve.set_defaults(run=_serve)
    show = commands.add_parser(
        "config", parents=[settings_flags], help="print the effective settings"
    )
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(run=_show_config)
    add_model_commands(commands, tool_format_of=lambda template: recognise(template).name)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    # Flags stay text here: load_settings parses them like env values, so a bad flag is
    # reported in the same one-line form as a bad variable, naming the flag.
    flags = {name: getattr(args, name) for name in SETTING_FLAGS}
    return load_settings(args.config, os.environ, flags)


def _show_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.json:
        print(json.dumps(settings_to_dict(settings), indent=2))
    else:
        print(settings_to_toml(settings), end="")
    return 0


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.logging.level)
    # Bind before loading anything: a taken port fails in milliseconds, not after the model
    # has loaded, and no other process can take it while the model loads.
    listener = _bind(settings.server.host, settings.server.port)
    try:
        resolved = resolve_model_paths(settings)
        # Before anything loads: a configuration that cannot fit stops here, in one line,
        # rather than at the OOM killer once the caches have grown.
        check_memory(resolved)
        return _run_server(resolved, listener)
    finally:
        listener.close()


def _run_server(settings: Settings, listener: socket.socket) -> int:
    import prometheus_client
    import uvicorn

    from llmserve.api.app import create_app
    from llmserve.api.lifecycle import Lifecycle
    from llmserve.api.server import DrainingServer, choose_event_loop

    # Process-wide switch, so it belongs to the process entry point: the *_created series
    # double every counter's output and no dashboard of ours reads them.
    prometheus_client.disable_created_metrics()

    host, port = settings.server.host, settings.server.port
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    lifecycle = Lifecycle()
    watch = _StartupWatch(create_app(settings, lifecycle=lifecycle), url)
    io = choose_event_loop()
    if not io.fast:
        logger.warning(
            "uvloop or httptools is not installed: serving with %s and %s, "
            "an order of magnitude fewer requests per second",
            io.loop,
            io.http,
            extra={"loop": io.loop, "http": io.http},
        )
    config = uvicorn.Config(
        watch,
        host=settings.server.host,
        port=settings.server.port,
        loop=io.loop,
        http=io.http,
        interface="asgi3",
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=CLOSE_TIMEOUT_S,
    )
    server = DrainingServer(config, lifecycle, grace_s=settings.server.graceful_shutdown_s)
    try:
        server.run(sockets=[listener])
    except SystemExit:
        # uvicorn exits this way when the app's startup fails.
        if watch.error is None:
            raise LLMServeError("server failed to start; see the log above") from None
    # The lifespan failed (watch.error), or the model load after it (lifecycle.error).
    error = watch.error if watch.error is not None else lifecycle.error
    if error is not None:
        if isinstance(error, LLMServeError):
            raise error
        raise LLMServeError(f"startup failed: {type(error).__name__}: {error}") from error
    return 0


@attrs.define
class _StartupWatch:
    """Wraps the ASGI app to keep the exception that failed its lifespan startup.

    uvicorn only logs a failed startup (Litestar sends the whole traceback as the message) and
    exits; this keeps the exception so the CLI can end with one line naming it. It also logs
    the moment the server answers (the model loads after that, in the background), which
    uvicorn does not when it is handed a socket.
    """

    app: ASGIApp
    url: str
    error: BaseException | None = None
    started: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.started = True
                logger.info("serving on %s", self.url, extra={"url": self.url})
            if message["type"] == "lifespan.startup.failed":
                message = {"type": message["type"], "message": ""}  # logged below, once
            await send(message)

        try:
            await self.app(scope, receive, quiet_send)
        except BaseException as exc:
            if not self.started:
                self.error = error = _cause(exc)
                if isinstance(error, LLMServeError):
                    logger.error("startup failed: %s", error.message)
                else:
                    logger.error("startup failed", exc_info=error)
            raise


def _cause(exc: BaseException) -> BaseException:
    """The exception that failed startup; Litestar's lifespan wraps it in an ExceptionGroup."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    causes = [_cause(inner) for inner in exc.exceptions]
    return next((cause for cause in causes if isinstance(cause, LLMServeError)), causes[0])


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, the way uvicorn binds one itself."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        reason = exc.strerror or str(exc)
        raise LLMServeError(f"cannot listen on {host}:{port}: {reason}") from exc
    return listener


def _fail(message: str, status: int) -> int:
    print(f"llmserve: error: {message}", file=sys.stderr)
    return status
