"""No configured model name and no request makes the server read or write outside its model
store and cache folders: the file accesses of a real server are checked while path-like names
are served. Python's audit hooks see each open, rename, remove, mkdir and listing made from
Python (the prefix cache's files among them); llama.cpp's own C-level open of a model file is
not seen, and needs no check: it opens the configured ``model_path``, which no request names."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmserve.api.app import create_app
from llmserve.config import CacheSettings, ServedModelSettings, Settings
from tests.support.server import serve_app

# Audit hooks cannot be removed: one hook for the session, recording only while a test asks.
_FILE_EVENTS = frozenset(
    {"open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.listdir", "os.scandir"}
)
_seen: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _seen is None or event not in _FILE_EVENTS:
        return
    for arg in args[:2] if event == "os.rename" else args[:1]:
        if isinstance(arg, (str, bytes, os.PathLike)):
            _seen.append(os.path.normpath(os.path.abspath(os.fsdecode(arg))))


sys.addaudithook(_audit)


@pytest.fixture(name="file_accesses")
def fixture_file_accesses() -> Iterator[list[str]]:
    """The normalized paths of every file access in this process while the test runs."""
    global _seen
    _seen = []
    try:
        yield _seen
    finally:
        _seen = None


PATH_LIKE_NAMES = ("..", "../escaped", "a/../../b", "/etc/x")


def test_path_like_model_names_and_requests_stay_in_the_cache_and_model_folders(
    tiny_gguf: Path, tmp_path: Path, file_accesses: list[str]
) -> None:
    """[[models]] named .., ../escaped, a/../../b and /etc/x, each with a disk cache that
    spills, and requests naming ../x or /etc/passwd: files are touched only inside the model
    folder and the cache folder, and unknown names are 404 model_not_found."""
    models, cache = tmp_path / "srv" / "models", tmp_path / "srv" / "cache"
    models.mkdir(parents=True)
    entries = []
    for i, name in enumerate(PATH_LIKE_NAMES):
        path = models / f"m{i}.gguf"
        shutil.copyfile(tiny_gguf, path)
        entries.append(ServedModelSettings(name=name, model_path=str(path), parallel=1))
    settings = Settings(
        models=tuple(entries),
        cache=CacheSettings(max_size_mb=1, disk_dir=str(cache), disk_size_mb=64),
    )
    file_accesses.clear()  # the test's own setup above is not the server's doing
    with serve_app(create_app(settings)) as base_url, httpx.Client(base_url=base_url) as http:
        for done, name in enumerate(PATH_LIKE_NAMES):
            for i in range(40):  # until this model's RAM tier has spilled to its folder
                body = {"model": name, "prompt": f"{i} " + "once upon a time " * 60}
                reply = http.post("/v1/completions", json={**body, "max_tokens": 2}, timeout=60)
                assert reply.status_code == 200, reply.text
                assert reply.json()["model"] == name
                if len({p.parent for p in cache.rglob("*.kv")}) > done:
                    break
        for name in ("../x", "../../etc/passwd", "/etc/passwd", "m0.gguf", str(models / "m0")):
            body = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
            refused = http.post("/v1/chat/completions", json=body, timeout=60)
            assert refused.status_code == 404, refused.text
            assert refused.json()["error"]["code"] == "model_not_found"
    accesses = list(file_accesses)  # the server's, and the test's own inside the two folders
    spilled = {p.parent for p in cache.rglob("*.kv")}
    assert len(spilled) == len(PATH_LIKE_NAMES), "a model's disk tier was not exercised"
    assert all(folder.parent == cache for folder in spilled), spilled
    mine = [p for p in accesses if Path(p).is_relative_to(tmp_path)]
    assert mine, "no file access was seen"
    outside = [
        p for p in mine if not (Path(p).is_relative_to(models) or Path(p).is_relative_to(cache))
    ]
    assert not outside, outside
    assert sorted(os.listdir(tmp_path / "srv")) == ["cache", "models"]
