"""A short soak on the tiny model: concurrent clients with random parameters, streams cut off
midway and bad requests mixed in, for a few seconds. Afterwards no 5xx was seen, nothing is
left running, and the next request is served normally."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.support.server import eventually
from tests.support.tinyserver import KEY, MODEL, tiny_server

CLIENTS = 8
SOAK_S = 4.0


def _one_request(client: httpx.Client, rng: random.Random) -> int:
    """One random request; returns its status (a cut-off stream counts as 200)."""
    body: dict[str, object] = {
        "model": MODEL,
        "max_tokens": rng.randint(1, 24),
        "temperature": rng.choice([0.0, 0.7, 1.5]),
        "top_p": rng.choice([0.5, 1.0]),
        "seed": rng.randint(0, 1000),
        "n": rng.choice([1, 1, 2]),
    }
    kind = rng.random()
    if kind < 0.15:
        body["temperature"] = -1  # a bad request among the good ones
    if rng.random() < 0.5:
        path, body["messages"] = "/v1/chat/completions", [{"role": "user", "content": "hello"}]
    else:
        path, body["prompt"] = "/v1/completions", "the model server"
    if kind > 0.6:
        body["stream"] = True
        with client.stream("POST", path, json=body) as response:
            for i, _ in enumerate(response.iter_lines()):
                if kind > 0.8 and i >= 2:
                    break  # the client goes away midway
            return response.status_code
    return client.post(path, json=body).status_code


def test_short_soak_leaves_the_server_clean(tiny_gguf: Path) -> None:
    """Seconds of mixed load with disconnects: no 5xx, running back to 0, next request fine."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    with tiny_server(tiny_gguf, parallel=4) as base_url:
        deadline = time.monotonic() + SOAK_S

        def client_loop(seed: int) -> None:
            rng = random.Random(seed)
            headers = {"Authorization": f"Bearer {KEY}"}
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
                while time.monotonic() < deadline:
                    status = _one_request(client, rng)
                    with lock:
                        statuses[status] += 1

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        def idle() -> bool:
            metrics = httpx.get(f"{base_url}/metrics").text
            running = re.findall(r"^llm_engine_requests_running\{[^}]*\} (\S+)$", metrics, re.M)
            return bool(running) and all(float(value) == 0 for value in running)

        assert eventually(idle, timeout_s=30)
        after = httpx.post(
            f"{base_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
            timeout=60,
        )
    assert not [status for status in statuses if status >= 500], statuses
    assert statuses[200] > CLIENTS, statuses
    assert statuses[400] > 0, statuses
    assert after.status_code == 200
