"""`llmserve pull` and `llmserve models list|show|rm` through the command line's main()."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from llmserve.cli import main
from tests.support.fake_hub import FakeHub
from tests.support.tinymodel import build_tiny_gguf


@pytest.fixture(name="models_dir", autouse=True)
def fixture_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty store named by LLM_ENGINE_MODELS_DIR; no other LLM_ENGINE_* or config.toml."""
    for name in list(os.environ):
        if name.startswith("LLM_ENGINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "models"
    monkeypatch.setenv("LLM_ENGINE_MODELS_DIR", str(store))
    return store


@pytest.fixture(name="stocked")
def fixture_stocked(models_dir: Path, tiny_gguf: Path) -> Path:
    """The store holding the tiny model twice: once plain, once with a chat template."""
    plain = models_dir / "acme" / "tiny-GGUF" / "tiny-F32.gguf"
    plain.parent.mkdir(parents=True)
    shutil.copyfile(tiny_gguf, plain)
    build_tiny_gguf(models_dir / "chatty.gguf", chat_template="{{ messages }}")
    return models_dir


def test_models_list_shows_one_row_per_model_from_gguf_metadata(
    stocked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Name, size, architecture, quantization, context and chat template, read from headers."""
    assert main(["models", "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "SIZE", "ARCH", "QUANT", "CONTEXT", "CHAT", "TEMPLATE"]
    assert rows[0].split() == ["acme/tiny-GGUF/tiny-F32", "1.0", "MB", "llama", "F32", "2048", "no"]
    assert rows[1].split() == ["chatty", "1.0", "MB", "llama", "F32", "2048", "yes"]


def test_models_alone_lists(stocked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`llmserve models` is `llmserve models list`."""
    assert main(["models"]) == 0
    assert "acme/tiny-GGUF/tiny-F32" in capsys.readouterr().out


def test_models_list_json(stocked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives the same facts as data, with the size in bytes."""
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["acme/tiny-GGUF/tiny-F32", "chatty"]
    assert rows[0]["size"] == (stocked / "acme" / "tiny-GGUF" / "tiny-F32.gguf").stat().st_size
    assert rows[1]["chat_template_chars"] == len("{{ messages }}")


def test_models_list_of_an_empty_store_says_how_to_pull(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No models: one line naming the store and the pull command."""
    assert main(["models", "list"]) == 0
    assert capsys.readouterr().out == (
        f"no models in {models_dir}; pull one with: llmserve pull REPO_ID\n"
    )


def test_models_list_marks_a_file_that_is_not_gguf(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken file in the store is listed as such instead of failing the listing."""
    models_dir.mkdir()
    (models_dir / "broken.gguf").write_bytes(b"not a model")
    assert main(["models", "list"]) == 0
    assert "invalid GGUF" in capsys.readouterr().out


def test_models_dir_flag_before_the_action_is_kept(
    stocked: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`models --models-dir D list` reads D (the subcommand's default does not reset it)."""
    (tmp_path / "elsewhere").mkdir()
    assert main(["models", "--models-dir", str(tmp_path / "elsewhere"), "list"]) == 0
    assert capsys.readouterr().out.startswith("no models in")


def test_models_show_prints_the_summary_and_the_metadata(
    stocked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show names the file and prints every metadata key, arrays summarised."""
    assert main(["models", "show", "tiny-F32"]) == 0
    out = capsys.readouterr().out
    assert f"path:           {stocked / 'acme' / 'tiny-GGUF' / 'tiny-F32.gguf'}" in out
    assert "architecture:   llama" in out
    assert "chat template:  no" in out
    assert 'general.name = "llmserve tiny test model"' in out
    assert "tokenizer.ggml.tokens = [" in out


def test_models_show_json_summarises_arrays(
    stocked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show --json carries the metadata, an array as its element type and length."""
    assert main(["models", "show", "chatty", "--json"]) == 0
    details = json.loads(capsys.readouterr().out)
    assert details["metadata"]["tokenizer.chat_template"] == "{{ messages }}"
    assert details["metadata"]["tokenizer.ggml.tokens"]["array_of"] == "string"


def test_models_show_of_an_unknown_name_is_one_line(
    stocked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown name fails with exit status 1 and one line, no traceback."""
    assert main(["models", "show", "nothing"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llmserve: error: no model 'nothing' in the model store")
    assert err.count("\n") == 1


def test_models_rm_deletes_the_model(stocked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rm removes the file and says what it freed; the model is no longer listed."""
    assert main(["models", "rm", "acme/tiny-GGUF/tiny-F32"]) == 0
    assert capsys.readouterr().out == "removed acme/tiny-GGUF/tiny-F32 (1.0 MB)\n"
    assert not (stocked / "acme").exists()
    assert main(["models", "list", "--json"]) == 0
    assert [row["name"] for row in json.loads(capsys.readouterr().out)] == ["chatty"]


def test_pull_prints_the_name_the_path_and_how_to_serve_it(
    fake_hub: FakeHub, models_dir: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A successful pull ends with the model's name, file and a serve command that names it."""
    fake_hub.add_repo("acme/tiny-GGUF", {"tiny-F32.gguf": tiny_gguf.read_bytes()})
    assert main(["pull", "acme/tiny-GGUF"]) == 0
    path = models_dir / "acme" / "tiny-GGUF" / "tiny-F32.gguf"
    assert capsys.readouterr().out.splitlines() == [
        "pulled acme/tiny-GGUF/tiny-F32 (1.0 MB)",
        f"  path: {path}",
        "  serve it: llmserve serve --model-path acme/tiny-GGUF/tiny-F32",
    ]
    assert main(["models", "list"]) == 0
    assert "acme/tiny-GGUF/tiny-F32" in capsys.readouterr().out


def test_pull_accepts_the_pattern_after_a_colon(
    fake_hub: FakeHub, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pull REPO:PATTERN` is `pull REPO --file PATTERN`."""
    fake_hub.add_repo("acme/q-GGUF", {"q-Q4_K_M.gguf": b"GGUF4", "q-Q8_0.gguf": b"GGUF8"})
    assert main(["pull", "acme/q-GGUF:Q8_0"]) == 0
    assert (models_dir / "acme" / "q-GGUF" / "q-Q8_0.gguf").read_bytes() == b"GGUF8"


def test_pull_of_a_missing_repo_is_one_line_and_exit_1(
    fake_hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Hub 404 ends as `llmserve: error: ...` on one line, without a traceback."""
    assert main(["pull", "acme/nothing"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llmserve: error: repository not found on the Hub: acme/nothing")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_pull_with_pattern_twice_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """REPO:PATTERN together with --file is refused before any request (exit 2)."""
    assert main(["pull", "acme/q-GGUF:Q8_0", "--file", "Q4_K_M"]) == 2
    assert "give the pattern once" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("template_name", "family"),
    [
        ("Qwen3-Coder.jinja", "qwen3_coder"),
        ("deepseek-ai-DeepSeek-V3.2.jinja", "deepseek_dsml"),
        ("LFM2.5-8B-A1B.jinja", "lfm2"),
        ("fireworks-ai-llama-3-firefunction-v2.jinja", "firefunction"),
    ],
)
def test_models_show_prints_the_recognised_tool_call_family(
    models_dir: Path, capsys: pytest.CaptureFixture[str], template_name: str, family: str
) -> None:
    """show reads the chat template from the GGUF header and names its tool-call family."""
    template = (Path(__file__).parents[1] / "data/templates" / template_name).read_text()
    models_dir.mkdir(parents=True, exist_ok=True)
    build_tiny_gguf(models_dir / "coder.gguf", chat_template=template)
    assert main(["models", "show", "coder"]) == 0
    assert f"tool calls:     {family}" in capsys.readouterr().out
    assert main(["models", "show", "coder", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tool_format"] == family
