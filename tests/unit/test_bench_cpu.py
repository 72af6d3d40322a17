"""perf/cpu.py: what counts as the benchmark's own CPU and what as other processes' noise."""

from __future__ import annotations

import os
import subprocess
import sys

from perf import cpu


def test_a_load_generator_run_as_a_child_counts_as_the_client_not_as_noise() -> None:
    """wrk runs as a child process: its CPU is the client's, or every wrk run looks noisy."""
    start = cpu.sample(os.getpid())
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    end = cpu.sample(os.getpid())
    assert end.client - start.client >= 0.25
