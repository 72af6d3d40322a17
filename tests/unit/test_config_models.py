"""[[models]] in config.toml: several models, their keys, and the errors that name them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmserve.config import (
    ServedModelSettings,
    Settings,
    load_settings,
    served_models,
    settings_to_toml,
)
from llmserve.errors import ConfigError
from llmserve.models.resolve import resolve_model_paths

TWO_MODELS = """\
[server]
max_loaded_models = 1
keep_alive = 300

[[models]]
name = "qwen"
aliases = ["gpt-4o-mini", "small"]
model_path = "Qwen/Qwen2.5-0.5B-Instruct-GGUF:q4_k_m"
parallel = 2
preload = true

[[models]]
name = "gemma"
model_path = "/models/gemma.gguf"
max_sequence_length = 2048
keep_alive = -1
"""


@pytest.fixture(name="write_toml")
def fixture_write_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)  # no ./config.toml picked up by accident

    def write(text: str) -> Path:
        (tmp_path / "config.toml").write_text(text, encoding="utf-8")
        return Path("config.toml")

    return write


def load(config: Path, env: dict[str, str] | None = None, **flags: Any) -> Settings:
    return load_settings(config, env or {}, flags)


def error_of(config: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(config, env)
    return caught.value.message


def test_models_entries_load_with_their_own_keys(write_toml: Any) -> None:
    """Each [[models]] entry takes [model]'s keys plus aliases, preload and keep_alive."""
    settings = load(write_toml(TWO_MODELS))
    qwen, gemma = settings.models
    assert (qwen.name, qwen.aliases, qwen.parallel, qwen.preload) == (
        "qwen",
        ("gpt-4o-mini", "small"),
        2,
        True,
    )
    assert (gemma.name, gemma.max_sequence_length, gemma.preload, gemma.keep_alive) == (
        "gemma",
        2048,
        False,
        -1,
    )
    assert (settings.server.max_loaded_models, settings.server.keep_alive) == (1, 300)
    assert served_models(settings) == settings.models


def test_one_model_section_is_one_preloaded_model(write_toml: Any) -> None:
    """Without [[models]], [model] is served as one model loaded at start."""
    settings = load(write_toml('[model]\nname = "solo"\nparallel = 3\n'))
    assert settings.models == ()
    (only,) = served_models(settings)
    assert (only.name, only.parallel, only.preload, only.aliases) == ("solo", 3, True, ())


def test_model_and_models_together_are_refused(write_toml: Any) -> None:
    """A config with both [model] and [[models]] is one error naming [model]."""
    message = error_of(write_toml("[model]\nparallel = 2\n\n" + TWO_MODELS))
    assert message == (
        "invalid config: [model] (config.toml): cannot be used together with [[models]]; "
        "move its keys into the [[models]] entries"
    )


def test_bad_entry_value_names_the_entry_and_key(write_toml: Any) -> None:
    """[model]'s validation applies to each entry, and the error says which."""
    text = TWO_MODELS.replace("max_sequence_length = 2048", "max_sequence_length = 8")
    assert error_of(write_toml(text)) == (
        "invalid config: [[models]] #2 max_sequence_length = 8 (config.toml): must be at least 16"
    )


def test_unknown_entry_key_is_refused(write_toml: Any) -> None:
    """A typo inside an entry is an error, not silently ignored."""
    message = error_of(write_toml(TWO_MODELS.replace("parallel = 2", "paralel = 2")))
    assert message.startswith("invalid config: [[models]] #1 paralel (config.toml): unknown key")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('model_path = "a.gguf"', "[[models]] #1: name is required"),
        ('name = "a"', "[[models]] #1 (a): model_path is required"),
        ('name = "a"\nmodel_path = "a.gguf"\naliases = "b"', "must be an array of strings"),
        ('name = "a"\nmodel_path = "a.gguf"\naliases = [""]', "must not contain an empty name"),
        ('name = "a"\nmodel_path = "a.gguf"\nkeep_alive = -2', "must be at least -1"),
    ],
)
def test_invalid_entry_is_one_clear_error(write_toml: Any, entry: str, expected: str) -> None:
    """Missing names and paths, and bad aliases or keep_alive, are named."""
    message = error_of(write_toml(f"[[models]]\n{entry}\n"))
    assert expected in message
    assert "\n" not in message


def test_a_name_shared_by_two_models_is_refused(write_toml: Any) -> None:
    """A name or alias routes to exactly one model."""
    text = TWO_MODELS.replace('"small"]', '"gemma"]')
    assert "the name 'gemma' is used by both 'qwen' and 'gemma'" in error_of(write_toml(text))


def test_more_preloads_than_max_loaded_models_is_refused(write_toml: Any) -> None:
    """Eager models must all fit in memory at once."""
    text = TWO_MODELS.replace("keep_alive = -1", "keep_alive = -1\npreload = true")
    assert "2 models have preload = true, more than [server] max_loaded_models = 1" in error_of(
        write_toml(text)
    )


def test_models_must_be_an_array_of_tables(write_toml: Any) -> None:
    """models = ... that is not [[models]] is refused."""
    assert "must be an array of tables [[models]]" in error_of(write_toml("models = 3\n"))


def test_env_model_keys_apply_to_every_entry(write_toml: Any) -> None:
    """LLM_ENGINE_DEVICE and friends set that key on every [[models]] entry (env beats file)."""
    settings = load(write_toml(TWO_MODELS), {"LLM_ENGINE_DEVICE": "gpu"}, parallel="8")
    assert [(m.device, m.parallel) for m in settings.models] == [("gpu", 8), ("gpu", 8)]


def test_env_model_path_with_models_entries_is_refused(write_toml: Any) -> None:
    """One model path for several models makes no sense: the error says where to set it."""
    message = error_of(write_toml(TWO_MODELS), {"LLM_ENGINE_MODEL_PATH": "x.gguf"})
    assert message == (
        'invalid config: LLM_ENGINE_MODEL_PATH="x.gguf": cannot be used with [[models]] '
        "(config.toml); set model_path in each [[models]] entry"
    )


def test_server_keep_alive_and_max_loaded_models_from_env() -> None:
    """The two server-wide keys have LLM_ENGINE_* variables."""
    env = {"LLM_ENGINE_KEEP_ALIVE": "60", "LLM_ENGINE_MAX_LOADED_MODELS": "2"}
    server = load_settings(None, env, {}).server
    assert (server.keep_alive, server.max_loaded_models) == (60, 2)


def test_models_settings_dump_loads_back(write_toml: Any) -> None:
    """settings_to_toml writes [[models]] (and no [model]) that load to the same settings."""
    settings = load(write_toml(TWO_MODELS))
    dumped = settings_to_toml(settings)
    assert "[[models]]" in dumped
    assert "\n[model]\n" not in dumped
    assert load(write_toml(dumped)) == settings


def test_models_built_in_code_are_validated() -> None:
    """The cross-entry checks also guard Settings constructed directly."""
    entry = ServedModelSettings(name="a", model_path="a.gguf")
    with pytest.raises(ValueError, match="used by both"):
        Settings(models=(entry, ServedModelSettings(name="b", model_path="b", aliases=("a",))))


def test_shipped_example_models_entries_are_valid(write_toml: Any) -> None:
    """The commented [[models]] example of conf/config.toml loads once uncommented."""
    text = (Path(__file__).parents[2] / "conf" / "config.toml").read_text(encoding="utf-8")
    block = text[text.index("# [[models]]") :].split("\n\n", 1)[0]
    example = "\n".join(line.removeprefix("#").removeprefix(" ") for line in block.splitlines())
    names = [m.name for m in load(write_toml(example)).models]
    assert names == ["qwen2.5-0.5b", "gemma-3-270m"]


def test_every_models_path_is_resolved_before_serving(write_toml: Any, tmp_path: Path) -> None:
    """resolve_model_paths checks each entry's model_path: a missing one fails, named."""
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    text = '[[models]]\nname = "a"\nmodel_path = "a.gguf"\n\n'
    settings = load(write_toml(text + '[[models]]\nname = "b"\nmodel_path = "a.gguf"\n'))
    assert [m.model_path for m in resolve_model_paths(settings).models] == ["a.gguf", "a.gguf"]
    missing = load(write_toml(text + '[[models]]\nname = "b"\nmodel_path = "b.gguf"\n'))
    with pytest.raises(ConfigError, match=r"model file not found: .*b\.gguf"):
        resolve_model_paths(missing)


def test_draft_model_paths_are_resolved_before_serving(write_toml: Any, tmp_path: Path) -> None:
    """With speculative = "draft", draft_model_path is resolved as model_path is: a missing
    file fails, named; in the other modes it is left alone (never loaded)."""
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "small.gguf").write_bytes(b"GGUF")
    entry = '[[models]]\nname = "a"\nmodel_path = "a.gguf"\n'
    drafting = load(write_toml(entry + 'speculative = "draft"\ndraft_model_path = "small.gguf"\n'))
    assert [m.draft_model_path for m in resolve_model_paths(drafting).models] == ["small.gguf"]
    missing = load(write_toml(entry + 'speculative = "draft"\ndraft_model_path = "gone.gguf"\n'))
    with pytest.raises(ConfigError, match=r"model file not found: .*gone\.gguf"):
        resolve_model_paths(missing)
    unused = load(write_toml(entry + 'speculative = "ngram"\ndraft_model_path = "gone.gguf"\n'))
    assert [m.draft_model_path for m in resolve_model_paths(unused).models] == ["gone.gguf"]


def test_models_entries_take_their_own_default_max_tokens(write_toml: Any) -> None:
    """Each [[models]] entry may set default_max_tokens; the env one applies to all."""
    path = write_toml(
        '[[models]]\nname = "a"\nmodel_path = "a.gguf"\ndefault_max_tokens = 100\n'
        '[[models]]\nname = "b"\nmodel_path = "b.gguf"\n'
    )
    assert [m.default_max_tokens for m in load(path).models] == [100, None]
    env = {"LLM_ENGINE_DEFAULT_MAX_TOKENS": "7"}
    assert [m.default_max_tokens for m in load(path, env).models] == [7, 7]
