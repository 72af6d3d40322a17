"""CPU accounting around a run, to tell how much of the machine others were using meanwhile.

The benchmark machine is shared; a run during someone else's compile is slower for reasons that
are not the server's. ``foreign_cores`` is the average number of cores busy with anything other
than the server under test and the benchmark client: near 0 means a quiet run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")


@dataclass(frozen=True)
class CpuSample:
    wall: float
    machine_busy: float  # seconds of CPU used by everything, all cores
    server: float  # seconds of CPU used by the server's process tree
    # seconds of CPU used by the load generator: this process and the children it has waited
    # for (wrk, run to its end inside the run: else its work counts as others' noise)
    client: float


def _tree_cpu(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return 0.0


def sample(server_pid: int) -> CpuSample:
    machine = psutil.cpu_times()
    # guest time is already inside user on Linux; steal is the hypervisor's other tenants.
    busy = sum(getattr(machine, name, 0.0) for name in _BUSY_FIELDS)
    own = os.times()
    return CpuSample(
        wall=time.monotonic(),
        machine_busy=busy,
        server=_tree_cpu(server_pid),
        client=own.user + own.system + own.children_user + own.children_system,
    )


def usage(start: CpuSample, end: CpuSample) -> dict[str, float]:
    """Average cores used by the server, the client and everything else between two samples."""
    wall = end.wall - start.wall
    if wall <= 0:
        return {}
    server = (end.server - start.server) / wall
    client = (end.client - start.client) / wall
    machine = (end.machine_busy - start.machine_busy) / wall
    return {
        "wall_s": wall,
        "server_cores": server,
        "client_cores": client,
        "foreign_cores": max(0.0, machine - server - client),
    }


def machine_load(window: float = 1.0) -> float:
    """Average cores busy machine-wide over ``window`` seconds (this process included)."""
    start = psutil.cpu_times()
    time.sleep(window)
    end = psutil.cpu_times()
    busy = sum(getattr(end, n, 0.0) - getattr(start, n, 0.0) for n in _BUSY_FIELDS)
    return busy / window


def wait_for_quiet(max_wait: float, threshold: float) -> float:
    """Wait (at most ``max_wait`` s) until under ``threshold`` cores are busy; returns the load.

    Called between servers, when nothing of ours runs, so the load is other people's.
    """
    deadline = time.monotonic() + max_wait
    load = machine_load()
    while load >= threshold and time.monotonic() < deadline:
        load = machine_load()
    return load
