"""Peak resident memory of a server's process tree while the benchmark drives it.

Two lower bounds of the true peak, the larger reported: the largest sum of ``VmRSS`` over the
process and its children seen by a background sampler (catches a tree of processes, misses
spikes between samples), and the root process's own ``VmHWM`` (the kernel's exact high-water
mark of that one process, read before it is stopped). For a single-process server, which all
compared servers are, the second is exact.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import psutil

_FIELDS = ("VmRSS", "VmHWM")


def parse_status(text: str) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` in KiB from the text of ``/proc/<pid>/status``.

    A kernel thread or a zombie has no such lines: the result then lacks them.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in _FIELDS:
            parts = rest.split()
            # Always "kB" in practice; a line in another shape is skipped, not guessed at.
            if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                values[name] = int(parts[0])
    return values


def read_status(pid: int) -> dict[str, int]:
    """The memory fields of a live process; empty when it is gone or unreadable."""
    try:
        return parse_status(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return {}


def tree_pids(pid: int) -> list[int]:
    """The process and its descendants (llama.cpp servers have none; a worker pool would)."""
    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.Error:
        return [pid]


def tree_rss_kib(pid: int) -> int:
    return sum(read_status(p).get("VmRSS", 0) for p in tree_pids(pid))


class PeakRss:
    """Samples a process tree's resident memory in a thread until the ``with`` block ends.

    ``peak_kib`` is the larger of the highest sampled tree sum and the root's ``VmHWM``; it must
    be read after the block and before the server is stopped (the block's exit reads VmHWM).
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.sampled_kib = 0
        self.hwm_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sampled_kib = max(self.sampled_kib, tree_rss_kib(self.pid))
        self.hwm_kib = read_status(self.pid).get("VmHWM", 0)

    @property
    def peak_kib(self) -> int:
        return max(self.sampled_kib, self.hwm_kib)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.sampled_kib = max(self.sampled_kib, tree_rss_kib(self.pid))
