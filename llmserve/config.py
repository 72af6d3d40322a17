"""Settings: a frozen attrs tree loaded from config.toml, then LLM_ENGINE_* env, then CLI flags."""

from __future__ import annotations

from typing import Literal

from attrs import field, frozen

Device = Literal["cpu", "gpu", "cuda"]
EvictionPolicy = Literal["lru", "lfu", "fifo"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


@frozen
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    max_concurrent_requests: int = 100


@frozen
class ModelSettings:
    name: str | None = None  # served model id; default: the file's stem
    model_path: str | None = None  # default: the demo model, when its package is installed
    device: Device = "cpu"
    max_sequence_length: int = 4096  # context of one sequence (slot)
    n_gpu_layers: int | None = None  # None: 0 on cpu, all on gpu/cuda
    parallel: int = 4  # sequence slots of the worker
    n_threads: int | None = None  # None: llama.cpp's default
    n_batch: int = 512  # tokens per llama_decode step, shared by all slots
    chat_template: str | None = None  # Jinja2 text overriding the GGUF's template


@frozen
class CacheSettings:
    enabled: bool = True
    max_size_mb: int = 1024
    eviction_policy: EvictionPolicy = "lru"


@frozen
class LoggingSettings:
    level: LogLevel = "info"


@frozen
class Settings:
    server: ServerSettings = field(factory=ServerSettings)
    model: ModelSettings = field(factory=ModelSettings)
    cache: CacheSettings = field(factory=CacheSettings)
    logging: LoggingSettings = field(factory=LoggingSettings)
