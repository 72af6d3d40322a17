"""Fixtures of the integration suite: the tiny model served for the OpenAI-surface tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.tinyserver import client_for, tiny_server


@pytest.fixture(name="tiny_url", scope="module")
def fixture_tiny_url(tiny_gguf: Path) -> Iterator[str]:
    """The tiny model served as ``tiny`` (4 slots, 1024-token sequences), one per module."""
    with tiny_server(tiny_gguf) as base_url:
        yield base_url


@pytest.fixture(name="tiny_client")
def fixture_tiny_client(tiny_url: str) -> Iterator[openai.OpenAI]:
    """The official client for ``tiny_url``."""
    with client_for(tiny_url) as client:
        yield client
