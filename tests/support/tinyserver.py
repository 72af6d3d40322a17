"""A real server on the tiny GGUF and an openai client for it, for the OpenAI-surface tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai

from llmserve.api.app import create_app
from llmserve.config import ModelSettings, ServerSettings, Settings
from tests.support.server import serve_app

KEY = "sk-tiny"
MODEL = "tiny"


@contextmanager
def tiny_server(
    path: Path,
    *,
    parallel: int = 4,
    max_sequence_length: int = 1024,
    default_max_tokens: int | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
    **model: Any,
) -> Iterator[str]:
    """Serve the model at ``path`` as ``tiny`` behind API key ``KEY``; yields the base URL.

    ``model``: more ``[model]`` settings (speculative decoding, ...)."""
    settings = Settings(
        server=ServerSettings(api_key=KEY),
        model=ModelSettings(
            model_path=str(path),
            name=MODEL,
            parallel=parallel,
            max_sequence_length=max_sequence_length,
            default_max_tokens=default_max_tokens,
            chat_template_kwargs=chat_template_kwargs or {},
            **model,
        ),
    )
    with serve_app(create_app(settings)) as base_url:
        yield base_url


@contextmanager
def client_for(base_url: str) -> Iterator[openai.OpenAI]:
    """The official client, pointed at ``base_url``/v1 with the key, never retrying."""
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0) as client:
        yield client
