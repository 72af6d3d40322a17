"""A loopback stand-in for the Hugging Face Hub, for the real ``huggingface_hub`` client code.

It serves, in the Hub's shapes, what ``llmserve.models.hub`` makes huggingface_hub 2.4.0 call:

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (``HfApi.model_info``):
  the commit, and with ``?blobs=true`` each file's size, git blob id and LFS sha256.
- ``HEAD|GET /{repo}/resolve/{rev}/{path}`` (``get_hf_file_metadata``): an LFS file answers 302
  to the "CDN" with ``X-Linked-Etag`` (its sha256) and ``X-Linked-Size``; any other file is
  served as it is, with its git blob id as the ``ETag``. ``X-Repo-Commit`` on both.
- ``HEAD|GET /cdn/{repo}/{path}`` (``http_get``): the bytes, with ``Range`` support.

Errors carry ``X-Error-Code`` as the Hub's do (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``, ``GatedRepo``), since that header is what huggingface_hub classifies by. The
CDN is addressed as ``http://localhost:PORT``, another origin than ``http://127.0.0.1:PORT``, so
the client drops the Authorization header there, as it must for the real CDN.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from attrs import define, field, frozen

HOST = "127.0.0.1"
CDN_HOST = "localhost"
LFS_SUFFIXES = (".gguf", ".bin", ".safetensors")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@define
class FakeRepo:
    """A repository the test fills: its files, and how the Hub treats them."""

    repo_id: str
    files: dict[str, bytes]
    commit: str
    private: bool = False
    gated: bool = False
    tokens: frozenset[str] = frozenset()  # tokens with access to a private or gated repo
    # What the Hub publishes as a file's sha256 where it is not the true one (a corrupt blob).
    published_sha256: dict[str, str] = field(factory=dict)

    def is_lfs(self, path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)

    def sha256(self, path: str) -> str:
        return self.published_sha256.get(path) or hashlib.sha256(self.files[path]).hexdigest()

    def sibling(self, path: str, *, blobs: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"rfilename": path}
        if blobs:
            data = self.files[path]
            entry.update(size=len(data), blobId=git_blob_id(data))
            if self.is_lfs(path):
                entry["lfs"] = {"sha256": self.sha256(path), "size": len(data), "pointerSize": 134}
        return entry


@frozen
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


@define
class FakeHub:
    """The fake Hub's state: its repositories, the requests it saw, the failures to inject."""

    repos: dict[str, FakeRepo] = field(factory=dict)
    seen: list[SeenRequest] = field(factory=list)
    # repo path -> bytes sent before the connection drops, on the next CDN GET of that file only
    drops: dict[str, int] = field(factory=dict)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def add_repo(self, repo_id: str, files: dict[str, bytes], **options: Any) -> FakeRepo:
        commit = hashlib.sha1(repo_id.encode(), usedforsecurity=False).hexdigest()
        repo = FakeRepo(repo_id, dict(files), commit, **options)
        self.repos[repo_id] = repo
        return repo

    def drop_once(self, path: str, after_bytes: int) -> None:
        """The next download of ``path`` breaks off after ``after_bytes`` bytes."""
        self.drops[path] = after_bytes

    def downloads(self, path: str) -> list[SeenRequest]:
        """The CDN GETs of a repository file, in order."""
        return [
            r
            for r in self.seen
            if r.method == "GET" and (m := _CDN.match(r.path)) is not None and m["path"] == path
        ]


@contextmanager
def run_fake_hub() -> Iterator[FakeHub]:
    """A FakeHub serving on a free loopback port for the duration of the block."""
    hub = FakeHub()
    server = ThreadingHTTPServer((HOST, 0), _handler(hub))
    server.daemon_threads = True
    hub.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-hub", daemon=True
    )
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


_MODEL_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<path>.+)$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet test output

        def do_HEAD(self) -> None:
            self._route()

        def do_GET(self) -> None:
            self._route()

        def _route(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            headers = {name.lower(): value for name, value in self.headers.items()}
            hub.seen.append(SeenRequest(self.command, path, headers))
            if match := _MODEL_INFO.match(path):
                blobs = parse_qs(url.query).get("blobs", [""])[0].lower() == "true"
                self._model_info(match["repo"], match["rev"] or "main", blobs=blobs)
            elif match := _RESOLVE.match(path):
                self._resolve(match["repo"], match["rev"], match["path"])
            elif match := _CDN.match(path):
                self._cdn(hub.repos[match["repo"]], match["path"])
            else:
                self._reply(404, error="RepoNotFound")

        def _repo(self, repo_id: str, rev: str) -> FakeRepo | None:
            """The repo when this request may see it at ``rev``; else the error is sent."""
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and not self._authorized(repo)):
                # The Hub answers 401 for a private repo, so as not to reveal that it exists.
                self._reply(401 if self._token() is None else 404, error="RepoNotFound")
                return None
            if rev not in ("main", repo.commit):
                self._reply(404, error="RevisionNotFound")
                return None
            return repo

        def _model_info(self, repo_id: str, rev: str, *, blobs: bool) -> None:
            repo = self._repo(repo_id, rev)
            if repo is None:
                return
            info = {
                "_id": repo.commit[:24],
                "id": repo_id,
                "sha": repo.commit,
                "private": repo.private,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "tags": ["gguf"],
                "siblings": [repo.sibling(path, blobs=blobs) for path in repo.files],
            }
            self._reply(200, body=json.dumps(info).encode(), content_type="application/json")

        def _resolve(self, repo_id: str, rev: str, path: str) -> None:
            repo = self._repo(repo_id, rev)
            if repo is None:
                return
            commit = {"X-Repo-Commit": repo.commit}
            if repo.gated and not self._authorized(repo):
                status = 401 if self._token() is None else 403
                self._reply(status, error="GatedRepo", headers=commit)
                return
            if path not in repo.files:
                self._reply(404, error="EntryNotFound", headers=commit)
                return
            data = repo.files[path]
            if not repo.is_lfs(path):
                self._reply(200, body=data, headers={**commit, "ETag": f'"{git_blob_id(data)}"'})
                return
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{repo.sha256(path)}"
            location = f"http://{CDN_HOST}:{hub.port}/cdn/{repo_id}/{path}"
            self._reply(
                302,
                headers={
                    **commit,
                    "Location": location,
                    "ETag": f'"{git_blob_id(pointer.encode())}"',
                    "X-Linked-Etag": f'"{repo.sha256(path)}"',
                    "X-Linked-Size": str(len(data)),
                },
            )

        def _cdn(self, repo: FakeRepo, path: str) -> None:
            data = repo.files[path]
            start, status, extra = 0, 200, {"Accept-Ranges": "bytes"}
            if match := _RANGE.match(self.headers.get("Range", "")):
                start = int(match["start"])
                if start >= len(data):
                    self._reply(416, headers={"Content-Range": f"bytes */{len(data)}"})
                    return
                status = 206
                extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            cut = hub.drops.pop(path, None) if self.command == "GET" else None
            if cut is None:
                self._reply(status, body=body, headers=extra)
                return
            # Announce the whole body, send part of it, and hang up: a dropped connection.
            self._head(status, len(body), extra, "application/octet-stream")
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True

        def _token(self) -> str | None:
            value = self.headers.get("Authorization", "")
            return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None

        def _authorized(self, repo: FakeRepo) -> bool:
            return self._token() in repo.tokens

        def _reply(
            self,
            status: int,
            *,
            body: bytes = b"",
            error: str | None = None,
            headers: dict[str, str] | None = None,
            content_type: str = "application/octet-stream",
        ) -> None:
            extra = dict(headers or {})
            if error is not None:
                extra["X-Error-Code"] = error
                body = json.dumps({"error": error}).encode()
                content_type = "application/json"
            self._head(status, len(body), extra, content_type)
            if self.command != "HEAD":
                self.wfile.write(body)

        def _head(self, status: int, length: int, extra: dict[str, str], kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(length))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()

    return Handler
