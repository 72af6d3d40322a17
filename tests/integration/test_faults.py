"""Faults around a running server on the tiny model: the ground moves, requests still work."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.tinyserver import MODEL, client_for, tiny_server


def test_model_file_vanishing_after_load_does_not_stop_serving(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    """Deleting the GGUF under a loaded server (an upgrade, a cleanup) breaks no request."""
    path = tmp_path / "vanishing.gguf"
    shutil.copyfile(tiny_gguf, path)
    with tiny_server(path) as base_url, client_for(base_url) as client:
        path.unlink()
        for _ in range(3):
            reply = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
            assert reply.usage is not None
            assert reply.usage.completion_tokens == 4
