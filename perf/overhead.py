"""The fixed per-request cost (issue 19): cheap routes and 1-token completions under ``wrk``.

A load generator in Python cannot produce thousands of requests per second, so this workload
drives ``wrk`` (Debian's package, installed here when missing). Each cheap route (``/health``,
``/ping``, ``/v1/models``, ``/metrics``) gets ``CHEAP_CONNECTIONS`` connections, then
non-streamed ``/v1/completions`` with ``max_tokens`` 1 get ``COMPLETION_CONNECTIONS``. wrk shares
the machine's cores with the server: on a 2-core box the numbers are the pair's, not the
server's alone.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from perf.stats import median

CHEAP_ROUTES = ("/health", "/ping", "/v1/models", "/metrics")
CHEAP_CONNECTIONS = 32
COMPLETION_CONNECTIONS = 8
WRK_THREADS = 2
# Discarded 1-token completions before the measured run, on every server alike: a fresh server's
# first requests (its first decode, the first burst of 8 arriving at once) are its cold start,
# not the per-request cost, and in an 8 s run they alone would set the p99.
COMPLETION_WARMUP_S = 2.0
COMPLETION_PROMPT = "Hello"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_DURATION = re.compile(r"^\s*([0-9.]+)(us|ms|s|m)\s*$")


# wrk's default 2 s timeout counts a completion queued behind a busy 2-core box as a socket error.
WRK_TIMEOUT = "10s"
# Summary keys (perf.summary, perf.table) of each measured request, in table order.
KEYS = {
    "GET /health": "health",
    "GET /ping": "ping",
    "GET /v1/models": "models",
    "GET /metrics": "metrics",
    "POST /v1/completions (1 token)": "completion",
}


class WrkUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reported."""

    name: str  # e.g. "GET /health"
    connections: int
    requests: int
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    non_2xx: int = 0
    socket_errors: int = 0  # connect + read + write + timeout

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.non_2xx == 0 and self.socket_errors == 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def duration_ms(text: str) -> float:
    """A wrk duration ("812.00us", "1.23ms", "2.00s", "1.50m") in milliseconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str, name: str, connections: int) -> WrkResult:
    """The numbers of ``wrk --latency`` output; a run without a Requests/sec line is an error."""
    rate = re.search(r"^Requests/sec:\s*([0-9.]+)", output, re.MULTILINE)
    if rate is None:
        raise ValueError(f"no Requests/sec in wrk output: {output[-300:]!r}")
    total = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    percentiles = dict(re.findall(r"^\s*(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        name=name,
        connections=connections,
        requests=int(total.group(1)) if total else 0,
        requests_per_s=float(rate.group(1)),
        p50_ms=duration_ms(percentiles["50"]) if "50" in percentiles else None,
        p99_ms=duration_ms(percentiles["99"]) if "99" in percentiles else None,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def ensure_wrk(log: Callable[[str], None]) -> str:
    """The path of ``wrk``, installed from Debian's packages when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk not found: installing it with apt-get")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WrkUnavailable(f"cannot install wrk ({' '.join(command)}): {exc}") from exc
        if done.returncode != 0:
            raise WrkUnavailable(
                f"cannot install wrk: {' '.join(command)} exited {done.returncode}: "
                f"{done.stderr.strip()[-300:]} (install it yourself: apt-get install wrk)"
            )
    found = shutil.which("wrk")
    if not found:
        raise WrkUnavailable("apt-get installed wrk but it is not on PATH")
    return found


def completion_script(model: str, extra_body: dict[str, Any]) -> str:
    """The wrk Lua script of a non-streamed 1-token completion."""
    body = {
        "model": model,
        "prompt": COMPLETION_PROMPT,
        "max_tokens": 1,
        "temperature": 0,
        **extra_body,
    }
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
    )


def run_wrk(
    wrk: str, url: str, name: str, connections: int, seconds: float, script: Path | None = None
) -> WrkResult:
    command = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"--timeout={WRK_TIMEOUT}",
        *(["-s", str(script)] if script else []),
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(done.stdout, name, connections)


def run_overhead(
    wrk: str,
    base_url: str,
    model: str,
    extra_body: dict[str, Any],
    seconds: float,
    log: Callable[[str], None],
) -> list[WrkResult]:
    """Every cheap route the server has at 32 connections, then 1-token completions at 8."""
    results = []
    for route in CHEAP_ROUTES:
        if not route_exists(base_url + route):
            # llama-server has no /ping: a column of 404s would read as a failure of the server.
            log(f"  GET {route}: not served (404), skipped")
            continue
        result = run_wrk(wrk, base_url + route, f"GET {route}", CHEAP_CONNECTIONS, seconds)
        results.append(result)
        log(f"  {_brief(result)}")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "completion.lua"
        script.write_text(completion_script(model, extra_body))
        url = base_url + "/v1/completions"
        run_wrk(wrk, url, "warm-up", COMPLETION_CONNECTIONS, COMPLETION_WARMUP_S, script)
        result = run_wrk(
            wrk,
            url,
            "POST /v1/completions (1 token)",
            COMPLETION_CONNECTIONS,
            seconds,
            script,
        )
    results.append(result)
    log(f"  {_brief(result)}")
    return results


def route_exists(url: str) -> bool:
    """Whether a GET of ``url`` is anything but a 404."""
    try:
        with urllib.request.urlopen(url, timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code != 404
    except OSError:
        return True  # unreachable: let wrk's socket errors say so


def summarize_overhead(runs: Sequence[Sequence[WrkResult]]) -> dict[str, float]:
    """Per measured request: the median over runs of requests/s and of p99 ms (NaN if none)."""
    summary: dict[str, float] = {}
    for name, key in KEYS.items():
        mine = [r for results in runs for r in results if r.name == name and r.ok]
        summary[f"overhead.{key}.requests_per_s"] = median([r.requests_per_s for r in mine])
        summary[f"overhead.{key}.p99_ms"] = median([r.p99_ms for r in mine if r.p99_ms is not None])
    return summary


def _brief(result: WrkResult) -> str:
    p99 = f"{result.p99_ms:.1f} ms" if result.p99_ms is not None else "-"
    bad = "" if result.ok else f" ({result.non_2xx} non-2xx, {result.socket_errors} socket errors)"
    return f"{result.name}: {result.requests_per_s:.0f} requests/s, p99 {p99}{bad}"
