"""Choosing a model's tool-call family: recognised from its template, or configured."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from llmserve import config
from llmserve.config import load_settings
from llmserve.errors import ConfigError
from llmserve.prompt.chat import ChatTemplate
from llmserve.prompt.toolformats import NAMES

TEMPLATES = Path(__file__).parents[1] / "data" / "templates"


def test_config_accepts_exactly_the_registered_families() -> None:
    """[model] tool_format's allowed names are the registry's families."""
    assert tuple(sorted(typing.get_args(config.ToolFormat))) == NAMES


def test_tool_format_comes_from_toml_env_and_flag(tmp_path: Path) -> None:
    """Like every key: config.toml < LLM_ENGINE_TOOL_FORMAT < --tool-format."""
    toml = tmp_path / "config.toml"
    toml.write_text('[model]\ntool_format = "glm"\n')
    assert load_settings(toml, {}, {}).model.tool_format == "glm"
    env = {"LLM_ENGINE_TOOL_FORMAT": "kimi"}
    assert load_settings(toml, env, {}).model.tool_format == "kimi"
    assert load_settings(toml, env, {"tool_format": "phi"}).model.tool_format == "phi"


def test_an_unknown_tool_format_is_refused_naming_the_key(tmp_path: Path) -> None:
    """A name that is no family is a one-line config error naming the key and the choices."""
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"LLM_ENGINE_TOOL_FORMAT": "hermes2"}, {})
    assert "LLM_ENGINE_TOOL_FORMAT" in caught.value.message
    assert "qwen3_coder" in caught.value.message


def test_each_models_entry_may_set_its_tool_format(tmp_path: Path) -> None:
    """[[models]] entries take tool_format too."""
    toml = tmp_path / "config.toml"
    toml.write_text(
        '[[models]]\nname = "a"\nmodel_path = "a.gguf"\ntool_format = "mistral"\n'
        '[[models]]\nname = "b"\nmodel_path = "b.gguf"\n'
    )
    a, b = load_settings(toml, {}, {}).models
    assert (a.tool_format, b.tool_format) == ("mistral", None)


def test_the_template_names_its_family_unless_configured() -> None:
    """A ChatTemplate recognises its family; a configured tool_format wins."""
    text = (TEMPLATES / "openai-gpt-oss-120b.jinja").read_text()
    common = {"override": None, "architecture": "x", "bos_token": "", "eos_token": ""}
    assert ChatTemplate(gguf_template=text, **common).tool_format == "harmony"
    configured = ChatTemplate(gguf_template=text, tool_format="hermes", **common)
    assert configured.tool_format == "hermes"
