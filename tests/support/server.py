"""Run any ASGI app (a Litestar app from create_app) under a real uvicorn on a free port.

::

    with serve_app(create_app(settings, engine=FakeEngine())) as base_url:
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")

The server runs in a daemon thread with its own event loop; ``serve_app`` yields once
``/readyz`` answers 200 (the model loads in the background after the lifespan started; pass
``wait_ready=False`` to look at the loading server), and leaving the block shuts it down
gracefully (lifespan shutdown included). The socket is bound before uvicorn starts, so there
is no port race.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

HOST = "127.0.0.1"


def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll until ``condition`` holds (a server works concurrently with the test); False if it
    never did within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (prefer serve_app, which holds its socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _bound_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


@contextmanager
def serve_app(
    app: Any,
    *,
    host: str = HOST,
    port: int = 0,
    startup_timeout_s: float = 60.0,
    shutdown_timeout_s: float = 30.0,
    wait_ready: bool = True,
) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields the base URL, e.g. ``http://127.0.0.1:PORT``."""
    sock = _bound_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,  # leave logging to the test run (and to llmserve.ops.logs)
        access_log=False,
        timeout_graceful_shutdown=int(shutdown_timeout_s),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server exited during startup (see the log for why)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not start within {startup_timeout_s} s")
            time.sleep(0.01)
        base_url = f"http://{host}:{bound_port}"
        if wait_ready:
            _wait_ready(base_url, deadline)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(shutdown_timeout_s + 5)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the server did not shut down in time")


def _wait_ready(base_url: str, deadline: float) -> None:
    while (status := httpx.get(f"{base_url}/readyz").json()["status"]) != "ready":
        if status == "failed":
            raise RuntimeError("the model failed to load (see the log for why)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server was not ready in time (status {status!r})")
        time.sleep(0.01)
