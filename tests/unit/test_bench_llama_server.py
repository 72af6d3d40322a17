"""perf/llama_server.py: the cached llama-server build, driven with a stand-in cmake."""

from __future__ import annotations

import io
import stat
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest

from perf import llama_server
from perf.llama_server import BuildError, cache_dir, ensure_llama_server

VERSION = version("llama-cpp-python")

# Writes bin/llama-server into the -B folder on `--build`, as the real build does.
FAKE_CMAKE = """#!/bin/sh
echo "$@" >> "$CALLS"
if [ "$1" = "--build" ]; then
  [ -n "$FAIL" ] && { echo "compiler exploded"; exit 2; }
  mkdir -p "$2/bin" && printf '#!/bin/sh\\n' > "$2/bin/llama-server"
fi
"""


def _sdist(folder: Path, cmake_lists: bool = True) -> None:
    """A stand-in sdist where pip download would leave it."""
    folder.mkdir(parents=True)
    with tarfile.open(folder / f"llama_cpp_python-{VERSION}.tar.gz", "w:gz") as tar:
        name = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
        name += "CMakeLists.txt" if cmake_lists else "README.md"
        data = b"project(llama.cpp)\n"
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def fake_cmake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir()
    cmake = tools / "cmake"
    cmake.write_text(FAKE_CMAKE)
    cmake.chmod(cmake.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CALLS", str(calls))
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    return calls


def test_build_configures_then_builds_only_the_server_target_and_caches_the_binary(
    tmp_path: Path, fake_cmake: Path
) -> None:
    root = tmp_path / "cache"
    _sdist(cache_dir(VERSION, llama_server.CMAKE_FLAGS, root) / "sdist")
    binary = ensure_llama_server(lambda _line: None, root=root)
    assert binary.is_file()
    configure, build = fake_cmake.read_text().splitlines()
    assert configure.startswith("-S ")
    assert "vendor/llama.cpp" in configure
    assert "-DLLAMA_USE_PREBUILT_UI=OFF" in configure  # no download from the Hub at build time
    assert build.split()[:4] == [
        "--build",
        str(binary.parent.parent / "build"),
        "--target",
        "llama-server",
    ]


def test_a_cached_binary_is_used_without_building(tmp_path: Path, fake_cmake: Path) -> None:
    root = tmp_path / "cache"
    _sdist(cache_dir(VERSION, llama_server.CMAKE_FLAGS, root) / "sdist")
    first = ensure_llama_server(lambda _line: None, root=root)
    fake_cmake.unlink()
    assert ensure_llama_server(lambda _line: None, root=root) == first
    assert not fake_cmake.exists()


def test_other_flags_build_into_another_folder() -> None:
    assert cache_dir(VERSION, ["-DA=1"]) != cache_dir(VERSION, ["-DA=2"])


def test_a_failed_build_says_why_and_leaves_no_binary(
    tmp_path: Path, fake_cmake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL", "1")
    root = tmp_path / "cache"
    home = cache_dir(VERSION, llama_server.CMAKE_FLAGS, root)
    _sdist(home / "sdist")
    with pytest.raises(BuildError, match="compiler exploded"):
        ensure_llama_server(lambda _line: None, root=root)
    assert not (home / "bin" / "llama-server").exists()


def test_an_sdist_without_llama_cpp_sources_is_refused(tmp_path: Path, fake_cmake: Path) -> None:
    root = tmp_path / "cache"
    _sdist(cache_dir(VERSION, llama_server.CMAKE_FLAGS, root) / "sdist", cmake_lists=False)
    with pytest.raises(BuildError, match=r"no vendor/llama\.cpp"):
        ensure_llama_server(lambda _line: None, root=root)


def test_llama_server_is_built_without_amx_where_amx_faults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the AMX probe fails, the peer is built with -mno-amx-* as llmserve's llama.cpp is."""
    monkeypatch.setattr(llama_server, "amx_works", lambda: False)
    flags = llama_server.build_flags()
    assert flags[: len(llama_server.CMAKE_FLAGS)] == llama_server.CMAKE_FLAGS
    assert f"-DCMAKE_C_FLAGS={llama_server.NO_AMX}" in flags
    monkeypatch.setattr(llama_server, "amx_works", lambda: True)
    assert llama_server.build_flags() == llama_server.CMAKE_FLAGS
