"""Settings: a frozen attrs tree loaded from config.toml, then LLM_ENGINE_* env, then CLI flags.

``load_settings`` merges the layers key by key, lowest first, remembering where each value came
from, so that every invalid value is reported as one line naming its key and its source::

    invalid config: [server] port = 70000 (config.toml): must be between 1 and 65535
    invalid config: LLM_ENGINE_PORT="abc": not an integer
    invalid config: --parallel 0: must be at least 1
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import platformdirs
from attrs import field, frozen

from llmserve.errors import ConfigError

Device = Literal["cpu", "gpu", "cuda"]
EvictionPolicy = Literal["lru", "lfu", "fifo"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
Speculative = Literal["off", "ngram", "draft"]
# The tool-call families of prompt/toolformats (kept equal to its registry by a test; config
# sits below the prompt layer and cannot ask it).
ToolFormat = Literal[
    "command_r",
    "deepseek",
    "deepseek_dsml",
    "firefunction",
    "functionary",
    "glm",
    "granite",
    "harmony",
    "hermes",
    "kimi",
    "lfm2",
    "llama3",
    "mistral",
    "phi",
    "qwen3",
    "qwen3_coder",
]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


# Validators raise ValueError with the bare reason; the loader prefixes key and source. They
# also guard Settings built in code (tests, the engine), not only loaded ones.
def _between(low: int, high: int) -> Validator:
    def check(_instance: Any, _attribute: attrs.Attribute[Any], value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")

    return check


def _at_least(low: int) -> Validator:
    def check(_instance: Any, _attribute: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and value < low:
            raise ValueError(f"must be at least {low}")

    return check


def _one_of(choices: Any) -> Validator:
    allowed = typing.get_args(choices)

    def check(_instance: Any, _attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")

    return check


def _not_empty(_instance: Any, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value.strip():
        raise ValueError("must not be empty")


def _no_empty_items(_instance: Any, _attribute: attrs.Attribute[Any], value: tuple[str]) -> None:
    if any(not item.strip() for item in value):
        raise ValueError("must not contain an empty string")


# Variables every chat template render gets from the server itself (``prompt.chat``) and the
# sandbox's own globals: a [model] chat_template_kwargs key (or a request's) may not replace
# them. Here, below the prompt layer, so that config can check its key and prompt use it.
SERVER_TEMPLATE_VARIABLES = frozenset(
    {
        "messages",
        "tools",
        "add_generation_prompt",
        "bos_token",
        "eos_token",
        "strftime_now",
        "raise_exception",
        "range",
        "dict",
        "lipsum",
        "cycler",
        "joiner",
        "namespace",
    }
)


def json_value_problem(value: object, where: str) -> str | None:
    """Why ``value`` is not JSON data a config file can hold too (strings, finite numbers,
    booleans, arrays, objects with string keys; TOML has no null), or None if it is."""
    if value is None:
        return f"{where} is null (TOML has none; leave the key out)"
    if isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else f"{where} is not finite"
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = json_value_problem(item, f"{where}[{i}]")
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has a key that is not a string"
            problem = json_value_problem(item, f"{where}.{key}")
            if problem is not None:
                return problem
        return None
    return f"{where} is a {type(value).__name__}, not a JSON value"


def _template_kwargs(
    _instance: Any, _attribute: attrs.Attribute[Any], value: dict[str, Any]
) -> None:
    for key, item in value.items():
        if key in SERVER_TEMPLATE_VARIABLES:
            raise ValueError(f"{key!r} is set by the server and cannot be given here")
        problem = json_value_problem(item, key)
        if problem is not None:
            raise ValueError(problem)


def _gpu_indices(_instance: Any, _attribute: attrs.Attribute[Any], value: tuple[int]) -> None:
    if any(index < 0 for index in value):
        raise ValueError("GPU indices must be at least 0")


def placement_problem(device: str, replicas: int, devices: tuple[int, ...]) -> str | None:
    """Why ``devices`` cannot place ``replicas`` contexts on ``device``; None when it can.

    ``devices`` is optional; given, it names one GPU per replica.
    """
    if not devices:
        return None
    if device == "cpu":
        return 'GPU indices need device = "gpu" or "cuda" (device is "cpu")'
    if len(devices) != replicas:
        count = f"{len(devices)} GPU {'index' if len(devices) == 1 else 'indices'}"
        return f"has {count} for replicas = {replicas}; give one GPU index per replica"
    return None


@frozen
class ServerSettings:
    host: str = field(default="127.0.0.1", validator=_not_empty)
    port: int = field(default=8080, validator=_between(1, 65535))
    api_key: str | None = field(default=None, validator=_not_empty, repr=False)  # never logged
    # More accepted keys (one per client, to revoke one alone), and a file of one key a line,
    # read once at start, so that keys need not sit in config.toml or the environment.
    api_keys: tuple[str, ...] = field(default=(), validator=_no_empty_items, repr=False)
    api_key_file: str | None = field(default=None, validator=_not_empty)
    # Browser origins allowed to call the API (e.g. "https://app.example.com", or "*");
    # empty: no CORS headers at all, so browsers refuse cross-origin calls.
    cors_origins: tuple[str, ...] = field(default=(), validator=_no_empty_items)
    metrics_enabled: bool = True  # false: /metrics is a 404
    metrics_require_key: bool = False  # true: /metrics wants an API key too (when keys are set)
    max_concurrent_requests: int = field(default=100, validator=_at_least(1))
    max_body_mb: int = field(default=10, validator=_at_least(1))  # larger bodies: 413
    rate_limit_rpm: int | None = field(default=None, validator=_at_least(1))  # None: no limit
    graceful_shutdown_s: int = field(default=30, validator=_at_least(0))  # SIGTERM drain bound
    # Several models ([[models]]): how many may be in memory at once (None: all of them), and
    # how long a model may sit idle before it is unloaded (None or -1: never; 0: at once).
    max_loaded_models: int | None = field(default=None, validator=_at_least(1))
    keep_alive: int | None = field(default=None, validator=_at_least(-1))
    # Refuse to start (and to load one more model) when the configuration's estimated memory
    # exceeds the machine's or the container's limit; false: only warn (the estimate is
    # conservative: mapped weights are reclaimable, and GPU memory is not checked).
    memory_check: bool = True


@frozen
class ModelSettings:
    name: str | None = field(default=None, validator=_not_empty)  # default: the file's stem
    model_path: str | None = field(default=None, validator=_not_empty)  # default: demo model
    device: Device = field(default="cpu", validator=_one_of(Device))
    max_sequence_length: int = field(default=4096, validator=_at_least(16))  # one slot's context
    n_gpu_layers: int | None = field(default=None, validator=_at_least(-1))  # None: 0 cpu, all gpu
    parallel: int = field(default=4, validator=_at_least(1))  # sequence slots of the worker
    n_threads: int | None = field(default=None, validator=_at_least(1))  # None: every core
    # Llama contexts on the one loaded model, each with its own worker thread, `parallel`
    # slots and KV; on CPU they divide n_threads among them.
    replicas: int = field(default=1, validator=_at_least(1))
    # One GPU index per replica (split mode none); empty: llama.cpp's default placement.
    devices: tuple[int, ...] = field(default=(), converter=tuple, validator=_gpu_indices)
    n_batch: int = field(default=512, validator=_at_least(1))  # tokens per llama_decode step
    # Prompt tokens per step while other sequences are generating (their inter-token latency).
    prefill_chunk: int = field(default=256, validator=_at_least(1))
    # One KV stream per slot (false, as llama-server): attention scans only the sequence's own
    # cells. true: one buffer for all slots, whose attention spans every slot's cells (idle
    # slots' kept prefixes included) but whose steps never split (README: the trade-off).
    kv_unified: bool = False
    # Speculative decoding: "ngram" drafts tokens from the sequence's own prompt and output,
    # "draft" with the smaller model draft_model_path (same vocabulary); either way they are
    # verified in the shared decode step, so the output is the model's own. "off": none.
    speculative: Speculative = field(default="off", validator=_one_of(Speculative))
    draft_max: int = field(default=8, validator=_between(1, 64))  # drafted tokens a step
    draft_min: int = field(default=2, validator=_at_least(1))  # shorter drafts are not tried
    ngram_size: int = field(default=3, validator=_between(1, 16))  # tokens matched to draft
    # "ngram": one bounded n-gram table for all sequences of the model, fed by their output,
    # consulted when a sequence's own tokens have no match.
    ngram_shared: bool = False
    # The draft GGUF of speculative = "draft" (a path, a store name or REPO_ID[:PATTERN], as
    # model_path); unused by the other modes.
    draft_model_path: str | None = field(default=None, validator=_not_empty)
    chat_template: str | None = field(default=None, validator=_not_empty)  # overrides the GGUF's
    # Completion tokens of a request that sets no max_tokens (OpenAI's default is "until the
    # end"); None: up to the context, as OpenAI. A base model may otherwise write thousands.
    default_max_tokens: int | None = field(default=None, validator=_at_least(1))
    # How the model writes tool calls; None: recognised from the chat template.
    tool_format: ToolFormat | None = field(
        default=None, validator=attrs.validators.optional(_one_of(ToolFormat))
    )
    # Extra variables of every chat template render (e.g. {enable_thinking = false} for Qwen3);
    # a request's chat_template_kwargs and reasoning switches override them key by key.
    chat_template_kwargs: dict[str, Any] = field(
        factory=dict, validator=_template_kwargs, hash=False
    )

    def __attrs_post_init__(self) -> None:
        # Across fields: the loader reports this with the key's source first (_check_placement);
        # this guards settings built in code.
        problem = placement_problem(self.device, self.replicas, self.devices)
        if problem is not None:
            raise ValueError(f"devices {problem}")


def _names(_instance: Any, _attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if any(not name.strip() for name in value):
        raise ValueError("must not contain an empty name")


@frozen
class ServedModelSettings(ModelSettings):
    """One ``[[models]]`` entry: a ``[model]`` table, plus how it is named, loaded and unloaded.

    A single ``[model]`` is served as one of these with ``preload = true``.
    """

    aliases: tuple[str, ...] = field(default=(), validator=_names)  # more names that route here
    preload: bool = False  # load at start (readiness waits for it); else on first use
    keep_alive: int | None = field(default=None, validator=_at_least(-1))  # None: [server]'s


def _draft_model_given(_instance: Settings, _attribute: Any, value: ModelSettings) -> None:
    _check_draft_model(value, "[model]")


def _check_draft_model(model: ModelSettings, table: str) -> None:
    """speculative = "draft" drafts with draft_model_path, so it must name one."""
    if model.speculative == "draft" and model.draft_model_path is None:
        raise ValueError(
            f'{table} speculative = "draft" needs draft_model_path (LLM_ENGINE_DRAFT_MODEL_PATH, '
            "--draft-model-path): the GGUF of a smaller model with the same vocabulary"
        )


def _distinct_models(instance: Settings, _attribute: Any, value: tuple[Any, ...]) -> None:
    """Every name and alias routes to one model; preloaded models fit max_loaded_models."""
    seen: dict[str, str] = {}
    for number, entry in enumerate(value, 1):
        if entry.name is None:
            raise ValueError(f"[[models]] #{number}: name is required")
        if entry.model_path is None:
            raise ValueError(f"[[models]] #{number} ({entry.name}): model_path is required")
        _check_draft_model(entry, f"[[models]] #{number} ({entry.name})")
        for name in (entry.name, *entry.aliases):
            if name in seen and seen[name] != entry.name:
                raise ValueError(
                    f"[[models]]: the name {name!r} is used by both {seen[name]!r} and "
                    f"{entry.name!r}"
                )
            seen[name] = entry.name
    bound = instance.server.max_loaded_models
    preloaded = sum(1 for entry in value if entry.preload)
    if bound is not None and preloaded > bound:
        raise ValueError(
            f"[[models]]: {preloaded} models have preload = true, more than "
            f"[server] max_loaded_models = {bound}"
        )


@frozen
class CacheSettings:
    enabled: bool = True
    max_size_mb: int = field(default=1024, validator=_at_least(0))
    eviction_policy: EvictionPolicy = field(default="lru", validator=_one_of(EvictionPolicy))
    disk_dir: str | None = field(default=None, validator=_not_empty)  # None: no disk tier
    disk_size_mb: int = field(default=4096, validator=_at_least(0))
    disk_eviction_policy: EvictionPolicy | None = field(
        default=None, validator=attrs.validators.optional(_one_of(EvictionPolicy))
    )  # None: the RAM tier's policy
    # true: disk_dir is a folder shared by several processes serving the same model file and KV
    # layout (written through, refreshed from the others' files, budget = the whole folder's)
    disk_shared: bool = False
    # false: every request computes its prompt from scratch unless it sends cache_prompt
    cache_prompt: bool = True


def _default_models_dir() -> str:
    # Computed when Settings is built, not at import: it follows $XDG_CACHE_HOME and $HOME.
    return str(platformdirs.user_cache_path("llmserve") / "models")


@frozen
class StoreSettings:
    models_dir: str = field(factory=_default_models_dir, validator=_not_empty)  # pulled models


@frozen
class ResponsesSettings:
    """Stored Responses-API responses (``previous_response_id``, ``GET /v1/responses/{id}``)."""

    max_entries: int = field(default=1000, validator=_at_least(0))  # 0: nothing is stored
    max_mb: int = field(default=64, validator=_at_least(0))  # their JSON, in MiB
    disk_path: str | None = field(default=None, validator=_not_empty)  # None: memory only


@frozen
class LoggingSettings:
    level: LogLevel = field(default="info", validator=_one_of(LogLevel))


@frozen
class Settings:
    server: ServerSettings = field(factory=ServerSettings)
    model: ModelSettings = field(factory=ModelSettings, validator=_draft_model_given)
    cache: CacheSettings = field(factory=CacheSettings)
    store: StoreSettings = field(factory=StoreSettings)
    responses: ResponsesSettings = field(factory=ResponsesSettings)
    logging: LoggingSettings = field(factory=LoggingSettings)
    # [[models]]: several models; empty: the one [model].
    models: tuple[ServedModelSettings, ...] = field(default=(), validator=_distinct_models)


def served_models(settings: Settings) -> tuple[ServedModelSettings, ...]:
    """The models to serve: the ``[[models]]`` entries, else ``[model]``, loaded at start."""
    if settings.models:
        return settings.models
    return (ServedModelSettings(**attrs.asdict(settings.model), preload=True),)


SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "model": ModelSettings,
    "cache": CacheSettings,
    "store": StoreSettings,
    "responses": ResponsesSettings,
    "logging": LoggingSettings,
}

# One name per option: the env var is LLM_ENGINE_<NAME>, the flag --<name> (dashes), and the
# ``flags`` mapping given to load_settings is keyed by the name itself. The env names are the
# seed README's public contract.
OPTIONS: dict[str, tuple[str, str]] = {
    "host": ("server", "host"),
    "port": ("server", "port"),
    "api_key": ("server", "api_key"),
    "api_keys": ("server", "api_keys"),
    "api_key_file": ("server", "api_key_file"),
    "cors_origins": ("server", "cors_origins"),
    "metrics_enabled": ("server", "metrics_enabled"),
    "metrics_require_key": ("server", "metrics_require_key"),
    "max_concurrent_requests": ("server", "max_concurrent_requests"),
    "max_body_mb": ("server", "max_body_mb"),
    "rate_limit_rpm": ("server", "rate_limit_rpm"),
    "graceful_shutdown_s": ("server", "graceful_shutdown_s"),
    "max_loaded_models": ("server", "max_loaded_models"),
    "keep_alive": ("server", "keep_alive"),
    "memory_check": ("server", "memory_check"),
    "model_path": ("model", "model_path"),
    "model_name": ("model", "name"),
    "device": ("model", "device"),
    "max_sequence_length": ("model", "max_sequence_length"),
    "n_gpu_layers": ("model", "n_gpu_layers"),
    "parallel": ("model", "parallel"),
    "n_threads": ("model", "n_threads"),
    "replicas": ("model", "replicas"),
    "devices": ("model", "devices"),
    "n_batch": ("model", "n_batch"),
    "prefill_chunk": ("model", "prefill_chunk"),
    "kv_unified": ("model", "kv_unified"),
    "speculative": ("model", "speculative"),
    "draft_max": ("model", "draft_max"),
    "draft_min": ("model", "draft_min"),
    "ngram_size": ("model", "ngram_size"),
    "ngram_shared": ("model", "ngram_shared"),
    "draft_model_path": ("model", "draft_model_path"),
    "default_max_tokens": ("model", "default_max_tokens"),
    "tool_format": ("model", "tool_format"),
    "chat_template_kwargs": ("model", "chat_template_kwargs"),
    "cache_enabled": ("cache", "enabled"),
    "cache_size_mb": ("cache", "max_size_mb"),
    "cache_eviction_policy": ("cache", "eviction_policy"),
    "cache_disk_dir": ("cache", "disk_dir"),
    "cache_disk_size_mb": ("cache", "disk_size_mb"),
    "cache_disk_eviction_policy": ("cache", "disk_eviction_policy"),
    "cache_disk_shared": ("cache", "disk_shared"),
    "cache_prompt": ("cache", "cache_prompt"),
    "models_dir": ("store", "models_dir"),
    "responses_max_entries": ("responses", "max_entries"),
    "responses_max_mb": ("responses", "max_mb"),
    "responses_disk_path": ("responses", "disk_path"),
    "log_level": ("logging", "level"),
}

MODELS_KEY = "models"  # the [[models]] array of tables
ENV_PREFIX = "LLM_ENGINE_"
CONFIG_ENV = "LLM_ENGINE_CONFIG"
DEFAULT_CONFIG = Path("config.toml")
SECRET_KEYS = frozenset({("server", "api_key"), ("server", "api_keys")})

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical"}


@frozen
class _Source:
    """Where one value came from, to name it in an error."""

    kind: Literal["toml", "env", "flag"]
    origin: str  # the TOML file, the env var name or the flag
    table: str | None = None  # how a TOML value's table is named, when not [section]

    def describe(self, section: str, key: str, value: object) -> str:
        shown = "***" if (section, key) in SECRET_KEYS else value
        if self.kind == "toml":
            table = self.table or f"[{section}]"
            return f"{table} {key} = {_toml_value(shown)} ({self.origin})"
        if self.kind == "env":
            return f"{self.origin}={json.dumps(str(shown))}"
        text = str(shown)
        bare = text and text.isprintable() and " " not in text  # else quoted, on one line
        return f"{self.origin} {text if bare else json.dumps(text)}"


def load_settings(
    config_path: Path | None, environ: Mapping[str, str], flags: Mapping[str, Any]
) -> Settings:
    """Defaults < config.toml < LLM_ENGINE_* env < flags; raises ConfigError naming the key.

    ``config_path`` falls back to $LLM_ENGINE_CONFIG, then to ./config.toml when that exists.
    ``flags`` is keyed by the names of OPTIONS; a None value means the flag was not given.
    """
    values: dict[tuple[str, str], tuple[object, _Source]] = {}
    entries: list[dict[str, tuple[object, _Source]]] = []  # [[models]]
    chosen = _config_file(config_path, environ)
    if chosen is not None:
        values, entries = _read_toml(*chosen)
    for name, (section, key) in OPTIONS.items():
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[section, key] = (environ[env_name], _Source("env", env_name))
    for name, value in flags.items():
        if name not in OPTIONS:
            raise TypeError(f"unknown settings flag {name!r}")
        if value is not None:
            values[OPTIONS[name]] = (value, _Source("flag", "--" + name.replace("_", "-")))

    origin = str(chosen[0]) if chosen is not None else "settings"
    sections: dict[str, dict[str, object]] = {name: {} for name in SECTIONS}
    for (section, key), (raw, source) in values.items():
        sections[section][key] = _checked(SECTIONS[section], section, key, raw, source)
    models: list[ServedModelSettings] = []
    if not entries:
        _check_placement(sections["model"], {k: values["model", k] for k in sections["model"]})
    else:
        # With [[models]], an LLM_ENGINE_* variable or flag of a [model] key applies to every
        # entry (it still wins over the file), except the two that name one model.
        overrides = sections["model"]
        for key in ("name", "model_path"):
            if key in overrides:
                raw, source = values["model", key]
                raise ConfigError(
                    f"invalid config: {source.describe('model', key, raw)}: cannot be used with "
                    f"[[models]] ({origin}); set {key} in "
                    "each [[models]] entry"
                )
        for entry in entries:
            checked = {
                key: _checked(ServedModelSettings, "models", key, raw, source)
                for key, (raw, source) in entry.items()
            }
            raws = {**entry, **{key: values["model", key] for key in overrides}}
            _check_placement({**checked, **overrides}, raws)
            models.append(ServedModelSettings(**{**checked, **overrides}))
        sections["model"] = {}  # went into the entries; [model] itself is unused
    parts = {name: cls(**sections[name]) for name, cls in SECTIONS.items()}
    try:
        return Settings(**parts, models=tuple(models))
    except ValueError as exc:  # across [[models]] entries: names, preload
        raise ConfigError(f"invalid config: {exc} ({origin})") from None


def _checked(cls: type[Any], section: str, key: str, raw: object, source: _Source) -> object:
    """``raw`` coerced to ``cls``'s field ``key`` and validated; ConfigError names the key."""
    attribute = attrs.fields_dict(cls)[key]
    try:
        value = _coerce(raw, _field_type(cls, key), textual=source.kind != "toml")
        if attribute.validator is not None:
            attribute.validator(None, attribute, value)
    except ValueError as exc:
        described = source.describe(section, key, raw)
        raise ConfigError(f"invalid config: {described}: {exc}") from None
    return value


def _check_placement(
    checked: Mapping[str, object], raw: Mapping[str, tuple[object, _Source]]
) -> None:
    """One model's ``devices`` against its ``replicas`` and ``device``; ConfigError names the
    ``devices`` key and where it was set."""
    problem = placement_problem(
        typing.cast(str, checked.get("device", "cpu")),
        typing.cast(int, checked.get("replicas", 1)),
        typing.cast(tuple[int, ...], checked.get("devices", ())),
    )
    if problem is not None:
        value, source = raw["devices"]
        section = "model" if source.table is None else "models"
        described = source.describe(section, "devices", value)
        raise ConfigError(f"invalid config: {described}: {problem}")


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    """The settings as plain data, secrets masked: safe to print or log."""
    data = attrs.asdict(settings)
    for section, key in SECRET_KEYS:
        if data[section][key]:
            data[section][key] = "***"
    return data


def settings_to_toml(settings: Settings) -> str:
    """The settings as a config.toml (secrets masked); unset keys are commented out."""
    lines = ["# effective settings: defaults < config.toml < LLM_ENGINE_* env < flags"]
    data = settings_to_dict(settings)
    entries = data.pop(MODELS_KEY)
    if entries:
        del data["model"]  # a config has [model] or [[models]], never both
    tables = [(f"[{section}]", values) for section, values in data.items()]
    tables += [(f"[[{MODELS_KEY}]]", entry) for entry in entries]
    for header, values in tables:
        lines += ["", header]
        for key, value in values.items():
            lines.append(f"# {key} =" if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _config_file(config_path: Path | None, environ: Mapping[str, str]) -> tuple[Path, str] | None:
    """The config file to read and how it was chosen, or None."""
    if config_path is not None:
        return Path(config_path), "--config"
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]), CONFIG_ENV
    return (DEFAULT_CONFIG, "the working directory") if DEFAULT_CONFIG.is_file() else None


Entry = dict[str, tuple[object, _Source]]


def _read_toml(
    path: Path, origin: str
) -> tuple[dict[tuple[str, str], tuple[object, _Source]], list[Entry]]:
    """The file's [section] values, and its [[models]] entries."""
    where = f"{path} (from {origin})"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"invalid config: config file not found: {where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"invalid config: cannot read config file {where}: {reason}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid config: {path}: TOML syntax error: {exc}") from None

    source = _Source("toml", str(path))
    values: dict[tuple[str, str], tuple[object, _Source]] = {}
    entries = _read_entries(document.pop(MODELS_KEY, None), path)
    if entries and "model" in document:
        raise ConfigError(
            f"invalid config: [model] ({path}): cannot be used together with [[models]]; "
            "move its keys into the [[models]] entries"
        )
    expected = ", ".join([*(f"[{name}]" for name in SECTIONS), f"[[{MODELS_KEY}]]"])
    for section, table in document.items():
        if section in SECTIONS and not isinstance(table, dict):
            raise ConfigError(f"invalid config: {section} ({path}): must be a table [{section}]")
        if section not in SECTIONS and isinstance(table, dict | list):
            raise ConfigError(
                f"invalid config: [{section}] ({path}): unknown section; expected one of {expected}"
            )
        if section not in SECTIONS:
            raise ConfigError(
                f"invalid config: {section} ({path}): unknown top-level key; "
                f"keys belong in a section: {expected}"
            )
        known = attrs.fields_dict(SECTIONS[section])
        for key, value in table.items():
            if key not in known:
                raise ConfigError(
                    f"invalid config: [{section}] {key} ({path}): unknown key; "
                    f"expected one of {', '.join(known)}"
                )
            values[section, key] = (value, source)
    return values, entries


def _read_entries(tables: object, path: Path) -> list[Entry]:
    """The ``[[models]]`` entries, each key with its source; unknown keys are errors."""
    if tables is None:
        return []
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(
            f"invalid config: {MODELS_KEY} ({path}): must be an array of tables [[{MODELS_KEY}]]"
        )
    if not tables:
        raise ConfigError(f"invalid config: {MODELS_KEY} ({path}): must have at least one entry")
    known = attrs.fields_dict(ServedModelSettings)
    entries: list[Entry] = []
    for number, table in enumerate(tables, 1):
        source = _Source("toml", str(path), table=f"[[{MODELS_KEY}]] #{number}")
        for key in table:
            if key not in known:
                raise ConfigError(
                    f"invalid config: [[{MODELS_KEY}]] #{number} {key} ({path}): unknown key; "
                    f"expected one of {', '.join(known)}"
                )
        entries.append({key: (value, source) for key, value in table.items()})
    return entries


def _field_type(cls: type[Any], key: str) -> Any:
    return typing.get_type_hints(cls)[key]


def _coerce(raw: object, annotation: Any, *, textual: bool) -> object:
    """``raw`` as ``annotation``; env and flag text is parsed, TOML values must be typed."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        if textual and raw == "":
            return None  # LLM_ENGINE_API_KEY= unsets it, as an absent variable would
        (annotation,) = (arg for arg in args if arg is not type(None))
    if typing.get_origin(annotation) is Literal:
        if not isinstance(raw, str):
            raise ValueError("must be a string")
        text = raw.strip().lower()
        return _LEVEL_ALIASES.get(text, text) if annotation == LogLevel else text
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        if textual and isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError("not a boolean (use true/false, 1/0 or yes/no)")
    if annotation is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if textual and isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                pass
        raise ValueError("not an integer")
    if annotation is str:
        if isinstance(raw, str):
            return raw
        raise ValueError("must be a string")
    if typing.get_origin(annotation) is dict:  # dict[str, Any]: a TOML table or JSON object
        if textual and isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise ValueError("not a JSON object") from None
        if not isinstance(raw, dict):
            raise ValueError("must be a table (a JSON object in the environment)")
        return raw
    if typing.get_origin(annotation) is tuple:  # tuple[str | int, ...]: a TOML array
        (item_type, _) = typing.get_args(annotation)
        kind = "strings" if item_type is str else "integers"
        if isinstance(raw, list):
            try:
                return tuple(_coerce(item, item_type, textual=False) for item in raw)
            except ValueError:
                raise ValueError(f"must be an array of {kind}") from None
        if textual and isinstance(raw, str):  # env and flags: comma-separated
            items = (item.strip() for item in raw.split(","))
            try:
                return tuple(_coerce(item, item_type, textual=True) for item in items if item)
            except ValueError:
                raise ValueError(f"must be a comma-separated list of {kind}") from None
        raise ValueError(f"must be an array of {kind}")
    raise TypeError(f"no loader for settings type {annotation!r}")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):  # an inline table; keys quoted, as any string may be one
        items = (f"{json.dumps(key)} = {_toml_value(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    return str(value)
