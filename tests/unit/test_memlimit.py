"""The memory limit: the machine's RAM, or the cgroup's (v2 or v1) when it is lower."""

from __future__ import annotations

from pathlib import Path

from llmserve.ops.memlimit import read_memory_limit

GiB = 1 << 30


def machine(root: Path, *, ram_gib: int = 24, cgroup: str = "0::/\n") -> Path:
    """A fake root with /proc/meminfo and /proc/self/cgroup."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/meminfo").write_text(
        f"MemTotal:       {ram_gib * GiB // 1024} kB\nMemFree:        1024 kB\n"
    )
    (root / "proc/self/cgroup").write_text(cgroup)
    return root


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_machine_ram_is_the_limit_without_a_cgroup_limit(tmp_path: Path) -> None:
    """No memory.max anywhere: MemTotal is the limit, named as the machine's RAM."""
    limit = read_memory_limit(machine(tmp_path))
    assert limit is not None
    assert limit.bytes == 24 * GiB
    assert "MemTotal" in limit.source


def test_cgroup_v2_memory_max_below_ram_is_the_limit(tmp_path: Path) -> None:
    """A container's memory.max of 2 GiB wins over 24 GiB of RAM, and is named with its file."""
    root = machine(tmp_path, cgroup="0::/app.slice/llm.scope\n")
    write(root / "sys/fs/cgroup/app.slice/llm.scope/memory.max", f"{2 * GiB}\n")
    limit = read_memory_limit(root)
    assert limit is not None
    assert limit.bytes == 2 * GiB
    assert "cgroup v2 /sys/fs/cgroup/app.slice/llm.scope/memory.max" in limit.source


def test_cgroup_v2_max_is_no_limit(tmp_path: Path) -> None:
    """memory.max = "max" leaves the machine's RAM as the limit."""
    root = machine(tmp_path)
    write(root / "sys/fs/cgroup/memory.max", "max\n")
    limit = read_memory_limit(root)
    assert limit is not None
    assert limit.bytes == 24 * GiB


def test_a_parent_cgroups_limit_applies_too(tmp_path: Path) -> None:
    """The lowest memory.max on the way up to the mount's root is the limit."""
    root = machine(tmp_path, cgroup="0::/parent/child\n")
    write(root / "sys/fs/cgroup/parent/child/memory.max", "max\n")
    write(root / "sys/fs/cgroup/parent/memory.max", f"{3 * GiB}\n")
    limit = read_memory_limit(root)
    assert limit is not None
    assert limit.bytes == 3 * GiB


def test_cgroup_v1_limit_in_bytes_is_read(tmp_path: Path) -> None:
    """cgroup v1's memory.limit_in_bytes of the memory controller's cgroup is the limit."""
    root = machine(tmp_path, cgroup="5:cpu,cpuacct:/\n4:memory:/docker/abc\n0::/\n")
    write(root / "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", f"{GiB}\n")
    limit = read_memory_limit(root)
    assert limit is not None
    assert limit.bytes == GiB
    assert "cgroup v1" in limit.source


def test_cgroup_v1_unlimited_is_no_limit(tmp_path: Path) -> None:
    """v1 writes "unlimited" as 2**63 rounded down to a page: that is no limit."""
    root = machine(tmp_path, cgroup="4:memory:/\n")
    write(root / "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
    limit = read_memory_limit(root)
    assert limit is not None
    assert limit.bytes == 24 * GiB


def test_container_sees_its_limit_at_the_mount_root(tmp_path: Path) -> None:
    """A cgroup path that is not mounted (a host path, seen from a container) falls back to
    the mount's root, where the container's own limit is."""
    root = machine(tmp_path, cgroup="4:memory:/kubepods/pod1/abc\n")
    write(root / "sys/fs/cgroup/memory/memory.limit_in_bytes", f"{4 * GiB}\n")
    limit = read_memory_limit(root)
    assert limit is not None
    assert limit.bytes == 4 * GiB


def test_nothing_readable_is_an_unknown_limit(tmp_path: Path) -> None:
    """Without /proc under the root there is no limit to check against."""
    assert read_memory_limit(tmp_path) is None


def test_this_machine_has_a_limit() -> None:
    """On the machine running the tests (Linux), some limit is found and it is positive."""
    limit = read_memory_limit()
    assert limit is not None
    assert limit.bytes > 0
