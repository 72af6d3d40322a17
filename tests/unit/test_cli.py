"""The llmserve command: one-line errors with the right exit status, config printing, serve."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import types
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from litestar import Litestar, get

from llmserve.cli import main
from llmserve.config import Settings
from llmserve.errors import ModelLoadError

LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(name="isolated", autouse=True)
def fixture_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No ambient LLM_ENGINE_* variables or ./config.toml; logging restored afterwards."""
    for name in list(os.environ):
        if name.startswith("LLM_ENGINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    saved = {name: logging.getLogger(name) for name in LOGGERS}
    state = {
        name: (logger.level, list(logger.handlers), logger.propagate)
        for name, logger in saved.items()
    }
    yield tmp_path
    for name, (level, handlers, propagate) in state.items():
        saved[name].setLevel(level)
        saved[name].handlers[:] = handlers
        saved[name].propagate = propagate


@pytest.fixture(name="model_file")
def fixture_model_file(isolated: Path) -> Path:
    """A file standing in for a GGUF: the fake apps below never read it."""
    path = isolated / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


@pytest.fixture(name="free_port")
def fixture_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(name="fake_app")
def fixture_fake_app(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Stands in for llmserve.api.app; tests set its ``startup`` to what the lifespan does."""
    module = types.ModuleType("llmserve.api.app")

    async def startup() -> None:
        return None

    module.startup = startup  # type: ignore[attr-defined]

    def create_app(settings: Settings, engine: object = None, **_: object) -> Litestar:
        @asynccontextmanager
        async def lifespan(_app: Litestar) -> AsyncIterator[None]:
            await module.startup()  # type: ignore[attr-defined]
            yield

        @get("/ping", sync_to_thread=False)
        def ping() -> str:
            return "pong"

        return Litestar([ping], lifespan=[lifespan], logging_config=None)

    module.create_app = create_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llmserve.api.app", module)
    return module


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`llmserve` alone shows the usage and the commands."""
    assert main([]) == 0
    assert "serve" in capsys.readouterr().out


def test_bad_env_value_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid LLM_ENGINE_PORT ends with one error line naming it, status 2."""
    monkeypatch.setenv("LLM_ENGINE_PORT", "abc")
    assert main(["serve"]) == 2
    assert stderr_lines(capsys) == [
        'llmserve: error: invalid config: LLM_ENGINE_PORT="abc": not an integer'
    ]


def test_bad_config_file_is_one_line_and_exit_2(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A syntax error in config.toml is one line, no traceback."""
    (isolated / "config.toml").write_text("[server\n")
    assert main(["serve"]) == 2
    (line,) = stderr_lines(capsys)
    assert line.startswith("llmserve: error: invalid config: config.toml: TOML syntax error")


def test_missing_config_flag_file_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """--config naming a missing file is a configuration error."""
    assert main(["config", "--config", "nope.toml"]) == 2
    assert stderr_lines(capsys) == [
        "llmserve: error: invalid config: config file not found: nope.toml (from --config)"
    ]


def test_config_command_masks_api_key(capsys: pytest.CaptureFixture[str]) -> None:
    """`llmserve config` shows that a key is set without showing it."""
    assert main(["config", "--api-key", "sk-secret"]) == 0
    out = capsys.readouterr().out
    assert "sk-secret" not in out
    assert 'api_key = "***"' in out


def test_config_command_json_masks_api_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON form masks the key too and reflects the env."""
    monkeypatch.setenv("LLM_ENGINE_API_KEY", "sk-secret")
    monkeypatch.setenv("LLM_ENGINE_PARALLEL", "2")
    assert main(["config", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["server"]["api_key"], data["model"]["parallel"]) == ("***", 2)


def test_default_max_tokens_flag_reaches_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """`--default-max-tokens 256` sets [model] default_max_tokens."""
    assert main(["config", "--json", "--default-max-tokens", "256"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["default_max_tokens"] == 256


def test_port_in_use_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A port another socket listens on fails at once, before any model is loaded."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--host", "127.0.0.1", "--port", str(port)]) == 1
    assert stderr_lines(capsys) == [
        f"llmserve: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_missing_model_file_is_exit_2(free_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    """A model path that does not exist is a configuration error on one line."""
    args = ["serve", "--port", str(free_port), "--model-path", "missing.gguf"]
    assert main(args) == 2
    (line,) = stderr_lines(capsys)
    assert line.startswith("llmserve: error: model file not found:")


def test_startup_failure_is_one_line_and_exit_1(
    fake_app: types.ModuleType,
    model_file: Path,
    free_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model that fails to load in the app's lifespan ends with its message, status 1."""

    async def startup() -> None:
        raise ModelLoadError("cannot load tiny.gguf: not a GGUF file")

    fake_app.startup = startup  # type: ignore[attr-defined]
    args = ["serve", "--port", str(free_port), "--model-path", str(model_file)]
    assert main([*args, "--log-level", "critical"]) == 1
    assert stderr_lines(capsys) == ["llmserve: error: cannot load tiny.gguf: not a GGUF file"]


def test_startup_failure_logs_no_traceback(
    fake_app: types.ModuleType,
    model_file: Path,
    free_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Known startup errors are logged as a message, not as Litestar's traceback."""

    async def startup() -> None:
        raise ModelLoadError("cannot load tiny.gguf: not a GGUF file")

    fake_app.startup = startup  # type: ignore[attr-defined]
    assert main(["serve", "--port", str(free_port), "--model-path", str(model_file)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "llmserve: error: cannot load tiny.gguf: not a GGUF file"


def test_unexpected_startup_error_names_its_type(
    fake_app: types.ModuleType,
    model_file: Path,
    free_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bug in startup still ends with one line, naming the exception type."""

    async def startup() -> None:
        raise RuntimeError("boom")

    fake_app.startup = startup  # type: ignore[attr-defined]
    args = ["serve", "--port", str(free_port), "--model-path", str(model_file)]
    assert main([*args, "--log-level", "critical"]) == 1
    assert stderr_lines(capsys) == ["llmserve: error: startup failed: RuntimeError: boom"]


def test_serve_runs_until_interrupted(
    fake_app: types.ModuleType,
    model_file: Path,
    free_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A started server logs its URL as JSON and stops quietly on Ctrl+C."""

    async def startup() -> None:
        signal.raise_signal(signal.SIGINT)  # uvicorn's handler: shut down once started

    fake_app.startup = startup  # type: ignore[attr-defined]
    args = ["serve", "--host", "127.0.0.1", "--port", str(free_port)]
    assert main([*args, "--model-path", str(model_file)]) == 130
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert {"message": f"serving on http://127.0.0.1:{free_port}"}.items() <= next(
        entry for entry in entries if entry["message"].startswith("serving on")
    ).items()


def test_huge_cache_budget_is_refused_at_start_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    tiny_gguf: Path,
    free_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """LLM_ENGINE_CACHE_SIZE_MB=99999999 (95 TiB): one error line naming the keys, exit 2."""
    monkeypatch.setenv("LLM_ENGINE_CACHE_SIZE_MB", "99999999")
    args = ["serve", "--port", str(free_port), "--model-path", str(tiny_gguf)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(
        "llmserve: error: Resource error: Insufficient memory: the configuration needs ~95.37 TiB"
    )
    assert "[cache] max_size_mb 95.37 TiB" in line
    assert "lower [cache] max_size_mb, [model] parallel, max_sequence_length or replicas" in line


def test_memory_check_off_starts_with_a_warning(
    fake_app: types.ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    tiny_gguf: Path,
    free_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """LLM_ENGINE_MEMORY_CHECK=false: the same configuration starts, the refusal only logged."""

    async def startup() -> None:
        signal.raise_signal(signal.SIGINT)

    fake_app.startup = startup  # type: ignore[attr-defined]
    monkeypatch.setenv("LLM_ENGINE_CACHE_SIZE_MB", "99999999")
    monkeypatch.setenv("LLM_ENGINE_MEMORY_CHECK", "false")
    args = ["serve", "--port", str(free_port), "--model-path", str(tiny_gguf)]
    assert main(args) == 130
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    warning = next(entry for entry in entries if "Insufficient memory" in entry["message"])
    assert warning["level"] == "WARNING"


def test_bad_replicas_or_devices_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--replicas 0 and devices that do not match the replicas end with one line, status 2."""
    assert main(["serve", "--replicas", "0"]) == 2
    assert stderr_lines(capsys) == [
        "llmserve: error: invalid config: --replicas 0: must be at least 1"
    ]
    assert main(["config", "--device", "gpu", "--replicas", "2", "--devices", "1"]) == 2
    assert stderr_lines(capsys) == [
        "llmserve: error: invalid config: --devices 1: has 1 GPU index for replicas = 2; "
        "give one GPU index per replica"
    ]
