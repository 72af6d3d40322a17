"""How much memory this process may use: the machine's RAM, or its container's limit if lower.

A container (Docker, Kubernetes) limits memory with its cgroup, not with the RAM the kernel
reports, and the kernel's OOM killer acts on the cgroup limit. Both are read from files under
``root`` (``/`` in production, a temporary folder in tests):

- RAM: ``MemTotal`` in ``proc/meminfo`` (os.sysconf where there is no /proc, e.g. macOS);
- cgroup v2: ``memory.max`` of this process's cgroup (``0::<path>`` in ``proc/self/cgroup``) and
  of each cgroup above it, under ``sys/fs/cgroup``;
- cgroup v1: ``memory.limit_in_bytes`` the same way under ``sys/fs/cgroup/memory``.

The lowest of them is the limit. "max" (v2) and v1's near-2**63 "unlimited" are no limit. A
container sees its own cgroup as ``/`` and the files at the mount's root, which the walk up
reaches too.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from attrs import frozen

ROOT = Path("/")


@frozen
class MemoryLimit:
    """A memory limit in bytes, and where it was read (to name it in a message)."""

    bytes: int
    source: str


def read_memory_limit(root: Path = ROOT) -> MemoryLimit | None:
    """The lowest of the machine's RAM and the cgroup limits above this process; None if unknown."""
    found = [limit for limit in (_mem_total(root), *_cgroup_limits(root)) if limit is not None]
    return min(found, key=lambda limit: limit.bytes, default=None)


def _mem_total(root: Path) -> MemoryLimit | None:
    text = _read(root / "proc/meminfo")
    if text is None:
        if root != ROOT:
            return None
        try:  # no /proc (macOS): the physical memory as the C library reports it
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
        return MemoryLimit(total, "the machine's RAM") if total > 0 else None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == "MemTotal":
            parts = value.split()
            if parts and parts[0].isdigit():
                unit = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
                return MemoryLimit(int(parts[0]) * unit, "the machine's RAM (MemTotal)")
    return None


def _cgroup_limits(root: Path) -> list[MemoryLimit | None]:
    text = _read(root / "proc/self/cgroup") or ""
    limits: list[MemoryLimit | None] = []
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        number, controllers, path = fields
        if number == "0" and controllers == "":
            mount, name, version = root / "sys/fs/cgroup", "memory.max", "cgroup v2"
        elif "memory" in controllers.split(","):
            mount = root / "sys/fs/cgroup/memory"
            name, version = "memory.limit_in_bytes", "cgroup v1"
        else:
            continue
        limits += [_limit_file(folder / name, root, version) for folder in _upwards(mount, path)]
    return limits


def _upwards(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder under ``mount`` and every folder above it, up to the mount."""
    parts = [part for part in PurePosixPath(path).parts if part not in ("/", "..", ".")]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _limit_file(path: Path, root: Path, version: str) -> MemoryLimit | None:
    text = (_read(path) or "").strip()
    if not text.isdigit():
        return None  # absent, or "max": no limit here
    value = int(text)
    if value >= 1 << 62:  # cgroup v1 writes "unlimited" as a page-rounded 2**63 - 1
        return None
    shown = "/" + str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    return MemoryLimit(value, f"the container's limit ({version} {shown})")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
