"""llama.cpp's own ``llama-server``, built from the llama.cpp sources in the llama-cpp-python sdist.

The peer must run the same llama.cpp as llmserve, so it is built from the sdist of the installed
llama-cpp-python version (``vendor/llama.cpp``), with the same defaults llama-cpp-python builds
with (Release, native CPU), and cached under ``perf/.cache/`` keyed by version and flags: the
first ``make bench`` spends ~10 minutes on 2 cores, later ones none.

    python perf/llama_server.py          # build (or find) it and print its path
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

CACHE_ROOT = Path(__file__).resolve().parent / ".cache"
DISTRIBUTION = "llama-cpp-python"

# Only the server: no tests, examples or web UI. LLAMA_USE_PREBUILT_UI would download the UI from
# the Hugging Face Hub at build time, which a machine limited to the package registries cannot
# reach; OpenSSL is for fetching models over HTTPS, which the benchmark never does. A static
# build keeps the cached binary self-contained (no rpath into a build folder).
CMAKE_FLAGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)


NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
AMX_PROBE = Path(__file__).resolve().parent.parent / ".ci" / "amx_probe.c"


class BuildError(RuntimeError):
    pass


def amx_works(probe: Path = AMX_PROBE) -> bool:
    """Whether one AMX tile instruction runs here (.ci/amx_probe.c; the Makefile asks the same).

    Some virtual machines list AMX and fault on it; a native build then crashes in its first
    llama_decode, as llmserve's own llama.cpp would.
    """
    with tempfile.TemporaryDirectory() as folder:
        binary = Path(folder) / "probe"
        built = subprocess.run(
            ["cc", "-O1", "-mamx-tile", "-o", str(binary), str(probe)],
            capture_output=True,
            check=False,
        )
        if built.returncode != 0:
            return False
        return subprocess.run([str(binary)], capture_output=True, check=False).returncode == 0


def build_flags() -> tuple[str, ...]:
    """CMAKE_FLAGS, built without AMX where AMX does not work (as the Makefile builds llmserve's
    llama.cpp: both sides of the comparison run the same kernels)."""
    if amx_works():
        return CMAKE_FLAGS
    return (*CMAKE_FLAGS, f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}")


def cache_dir(llama_cpp_version: str, flags: Sequence[str], root: Path = CACHE_ROOT) -> Path:
    """One folder per (version, flags): changing either builds afresh beside the old one."""
    digest = hashlib.sha256("\0".join(flags).encode()).hexdigest()[:10]
    return root / f"llama-server-{llama_cpp_version}-{digest}"


def configure_command(source: Path, build: Path, flags: Sequence[str]) -> list[str]:
    return ["cmake", "-S", str(source), "-B", str(build), *flags]


def build_command(build: Path, jobs: int) -> list[str]:
    return ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)]


def ensure_llama_server(
    log: Callable[[str], None], root: Path = CACHE_ROOT, flags: Sequence[str] = CMAKE_FLAGS
) -> Path:
    """The cached binary's path, building it first if it is missing."""
    llama_cpp_version = version(DISTRIBUTION)
    home = cache_dir(llama_cpp_version, flags, root)
    binary = home / "bin" / "llama-server"
    if binary.is_file():
        return binary
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise BuildError(f"building llama-server needs {tool} (apt-get install cmake g++)")
    home.mkdir(parents=True, exist_ok=True)
    source = _unpacked_sdist(llama_cpp_version, home, log)
    build = home / "build"
    build_log = home / "build.log"
    jobs = len(os.sched_getaffinity(0))
    log(f"building llama-server {llama_cpp_version} (~10 min on 2 cores; log: {build_log})")
    with build_log.open("w") as out:
        for command in (configure_command(source, build, flags), build_command(build, jobs)):
            out.write("$ " + " ".join(command) + "\n")
            out.flush()
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                raise BuildError(f"{command[0]} failed ({done.returncode}):\n{_tail(build_log)}")
    built = build / "bin" / "llama-server"
    if not built.is_file():
        raise BuildError(f"the build finished without {built}:\n{_tail(build_log)}")
    # Moved into place last: a cut-short build leaves no binary that looks finished.
    binary.parent.mkdir(exist_ok=True)
    shutil.copy2(built, binary.with_suffix(".tmp"))
    binary.with_suffix(".tmp").rename(binary)
    log(f"llama-server built: {binary}")
    return binary


def _unpacked_sdist(llama_cpp_version: str, home: Path, log: Callable[[str], None]) -> Path:
    """``vendor/llama.cpp`` of the sdist, downloaded with pip (so pip's index settings apply)."""
    source = home / "src" / f"llama_cpp_python-{llama_cpp_version}" / "vendor" / "llama.cpp"
    if (source / "CMakeLists.txt").is_file():
        return source
    sdists = home / "sdist"
    archive = sdists / f"llama_cpp_python-{llama_cpp_version}.tar.gz"
    if not archive.is_file():
        log(f"downloading the {DISTRIBUTION} {llama_cpp_version} sdist")
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--no-binary", ":all:", "--dest", str(sdists),
            f"{DISTRIBUTION}=={llama_cpp_version}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not archive.is_file():
            raise BuildError(f"pip download failed: {done.stderr.strip()[-2000:]}")
    with tarfile.open(archive) as tar:
        # The "data" filter refuses absolute paths, links out of the folder and device files.
        tar.extractall(home / "src", filter="data")
    if not (source / "CMakeLists.txt").is_file():
        raise BuildError(f"{archive.name} has no vendor/llama.cpp/CMakeLists.txt")
    return source


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main() -> int:
    try:
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        print(ensure_llama_server(log, flags=build_flags()))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
