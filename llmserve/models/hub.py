"""Pull GGUF models from the Hugging Face Hub into the model store, and resolve model references.

``hf_hub_download`` is not used for the transfer: its partial file is unique to one process and
deleted on any failure, so an interrupted pull of a 20 GB model would start over, and it checks
no checksum. The real ``huggingface_hub`` client still does all the talking to the Hub:
``HfApi.model_info`` (the commit, the file list with each LFS file's sha256 and size),
``get_hf_file_metadata`` (the HEAD of ``/resolve``: the CDN location) and ``http_get`` (the
transfer, with Range resume and in-call retries, and the progress bar). llmserve owns what is
around it: one partial file per blob that survives the process (``<file>.<digest>.part``), a lock
so two pulls of one file take turns, the free-space check, the checksum, and the atomic move
into the store.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import logging
import os
import re
import shutil
import string
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx2
from attrs import frozen
from huggingface_hub import HfApi, get_hf_file_metadata, get_token, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import WeakFileLock, build_hf_headers

from llmserve.config import StoreSettings
from llmserve.errors import (
    AmbiguousFile,
    ChecksumMismatch,
    ConfigError,
    DiskFull,
    DownloadFailed,
    HubAccessDenied,
    HubRepoNotFound,
    ModelStoreError,
    NoMatchingFile,
)
from llmserve.models.store import (
    ModelFiles,
    ModelStore,
    StoredModel,
    group_gguf_paths,
    human_size,
    select,
)

logger = logging.getLogger("llmserve.hub")  # the logger name is part of the log format

DEFAULT_WEB = "https://huggingface.co"
# REPO_ID[:PATTERN]: owner/name as the Hub spells them; a path never starts like that.
REFERENCE = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?::(?P<pattern>.+))?$")
_TRUE = frozenset({"1", "true", "yes", "on"})


@frozen
class HubAccess:
    """How to reach the Hub, read from the environment when a pull starts."""

    endpoint: str | None = None  # HF_ENDPOINT; None: huggingface.co
    token: str | None = None  # HF_TOKEN, else the token of `hf auth login`
    offline: bool = False  # HF_HUB_OFFLINE

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> HubAccess:
        token = environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN") or get_token()
        return cls(
            endpoint=(environ.get("HF_ENDPOINT") or "").rstrip("/") or None,
            token=token or None,
            offline=environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE,
        )

    @property
    def web(self) -> str:
        return self.endpoint or DEFAULT_WEB


@frozen
class RemoteFile:
    """A file of a repository at one commit, with what its bytes must hash to."""

    path: str
    size: int
    sha256: str | None  # LFS files: the Hub's published sha256
    git_oid: str | None  # other files: the git blob id (sha1 of "blob <size>\0" + bytes)

    @property
    def digest_id(self) -> str:
        """A short id of the expected bytes, for the partial file's name: hex digits only, as
        the digest is the Hub's (or a mirror's) text and must not make a path of it."""
        digest = self.sha256 or self.git_oid or ""
        return "".join(c for c in digest if c in string.hexdigits)[:16] or "unknown"


def parse_reference(text: str) -> tuple[str, str | None] | None:
    """``REPO_ID[:PATTERN]`` as (repo id, pattern), or None when the text is not one."""
    match = REFERENCE.match(text.strip())
    if match is None or (match["pattern"] is None and text.lower().endswith(".gguf")):
        return None
    return match["repo"], match["pattern"]


def resolve_model_reference(
    reference: str, store_settings: StoreSettings, environ: Mapping[str, str]
) -> Path:
    """The file for a model name in the store or a ``REPO_ID[:PATTERN]``, pulled if missing."""
    store = ModelStore.from_settings(store_settings)
    stored = store.find(reference)
    if stored is not None:
        return _complete(stored).path
    parsed = parse_reference(reference)
    if parsed is None:
        raise ConfigError(
            f"model file not found: {Path(reference).expanduser()} (it is no file, no model in "
            f"the store {store.root}, and no Hugging Face REPO_ID[:PATTERN]; set "
            "LLM_ENGINE_MODEL_PATH, --model-path or [model] model_path to one of those)"
        )
    repo_id, pattern = parsed
    pulled = store.pulled(repo_id, pattern)
    if len(pulled) > 1:
        listed = ", ".join(model.name for model in pulled)
        raise AmbiguousFile(f"{reference!r} matches several models in the store: {listed}")
    if pulled:
        return pulled[0].path
    logger.info("model %s is not in the store: pulling it from the Hub", reference)
    _hub_logs_to_root()
    access = HubAccess.from_environ(environ)
    return pull(repo_id, pattern, store=store, access=access, progress=LogProgress).path


def _hub_logs_to_root() -> None:
    # huggingface_hub prints its warnings (a retried download) with a plain-text handler of its
    # own; in the server the JSON handler on the root logger has them already.
    hub_logger = logging.getLogger("huggingface_hub")
    for handler in list(hub_logger.handlers):
        if type(handler) is logging.StreamHandler:
            hub_logger.removeHandler(handler)


def pull(
    repo_id: str,
    pattern: str | None,
    *,
    store: ModelStore,
    access: HubAccess,
    revision: str | None = None,
    progress: type[Any] | None = None,
) -> StoredModel:
    """Download the GGUF model of ``repo_id`` that ``pattern`` selects (every part of a split
    one) into the store; files already there are kept. ``progress`` is a tqdm-like class (None:
    huggingface_hub's bar on stderr)."""
    if access.offline:
        raise DownloadFailed(f"cannot pull {repo_id}: HF_HUB_OFFLINE is set")
    where = repo_id if revision is None else f"{repo_id}@{revision}"
    with _hub_errors(where, access):
        info = HfApi(endpoint=access.endpoint).model_info(
            repo_id, revision=revision, files_metadata=True, token=access.token or False
        )
    commit = info.sha or revision or "main"
    remote = {
        sibling.rfilename: RemoteFile(
            path=sibling.rfilename,
            size=sibling.lfs.size if sibling.lfs else (sibling.size or 0),
            sha256=sibling.lfs.sha256 if sibling.lfs else None,
            git_oid=sibling.blob_id,
        )
        for sibling in info.siblings or []
    }
    chosen = _choose(where, group_gguf_paths(remote), pattern)
    files = [remote[path] for path in chosen.paths]
    targets = [store.target(repo_id, file.path) for file in files]  # all refused before any byte
    total = sum(file.size for file in files)
    count = f"{len(files)} files" if len(files) > 1 else "1 file"
    logger.info("pulling %s from %s (%s, %s)", chosen.name, where, human_size(total), count)
    for file, target in zip(files, targets, strict=True):
        _download(repo_id, commit, file, target, access, progress)
    return StoredModel(f"{repo_id}/{chosen.name}", tuple(targets), chosen.split_count)


def _choose(where: str, models: list[ModelFiles], pattern: str | None) -> ModelFiles:
    if not models:
        raise NoMatchingFile(f"no GGUF file in {where}")
    chosen = select(models, pattern)
    if not chosen:
        raise NoMatchingFile(
            f"no GGUF file in {where} matches {pattern!r}; it has: {_listing(models)}"
        )
    if len(chosen) > 1:
        if pattern is None:
            raise AmbiguousFile(
                f"{where} has {len(chosen)} GGUF models; choose one with --file: {_listing(chosen)}"
            )
        raise AmbiguousFile(
            f"{pattern!r} matches {len(chosen)} GGUF models in {where}: {_listing(chosen)}"
        )
    (model,) = chosen
    if not model.complete:
        raise ModelStoreError(
            f"{where} holds {len(model.paths)} of the {model.split_count} parts of {model.name}"
        )
    return model


def _listing(models: list[ModelFiles]) -> str:
    def one(model: ModelFiles) -> str:
        parts = model.split_count
        return model.paths[0] if parts == 1 else f"{model.paths[0]} ({parts} parts)"

    return ", ".join(one(model) for model in models)


def _complete(model: StoredModel) -> StoredModel:
    if not model.complete:
        raise ModelStoreError(
            f"{model.name} in the store has {len(model.files)} of its {model.split_count} parts; "
            "pull it again to fetch the rest"
        )
    return model


def _download(
    repo_id: str,
    commit: str,
    file: RemoteFile,
    target: Path,
    access: HubAccess,
    progress: type[Any] | None,
) -> None:
    """One file into ``target``, resuming a partial download of the same blob."""
    if target.is_file() and target.stat().st_size == file.size:
        logger.info("%s is already in the store", file.path)
        return
    # Ask the Hub first: a refusal (gated, private) leaves nothing behind in the store.
    with _hub_errors(repo_id, access, file=file):
        url = hf_hub_url(repo_id, file.path, revision=commit, endpoint=access.endpoint)
        location = get_hf_file_metadata(
            url, token=access.token or False, endpoint=access.endpoint
        ).location
    headers = build_hf_headers(token=access.token or False)
    if _origin(location) != _origin(url):
        headers.pop("authorization", None)  # a signed CDN URL: the token stays home
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{file.digest_id}.part")
    lock = target.with_name(f"{target.name}.lock")
    with WeakFileLock(lock):
        if target.is_file() and target.stat().st_size == file.size:
            return  # another pull finished it while this one waited for the lock
        for stale in target.parent.glob(f"{glob.escape(target.name)}.*.part"):
            if stale != partial:
                stale.unlink()  # a partial of another version of the file: not our prefix
        with _hub_errors(repo_id, access, file=file, partial=partial):
            resumed = _transfer(location, headers, file, partial, progress)
            verified = _verified(partial, file)
            if not verified and resumed:
                # What was kept was not a true prefix of this file: start again from nothing.
                logger.warning("the partial download of %s was corrupt: restarting", file.path)
                partial.unlink()
                _transfer(location, headers, file, partial, progress)
                verified = _verified(partial, file)
        if not verified:
            partial.unlink()
            expected = file.sha256 or file.git_oid
            raise ChecksumMismatch(
                f"checksum mismatch for {file.path} from {repo_id}: expected {expected}, "
                "got other bytes; the download was removed"
            )
        os.replace(partial, target)
        # Safe while held: whoever waits on it finds the file complete once it gets the lock.
        lock.unlink(missing_ok=True)


def _transfer(
    url: str, headers: dict[str, str], file: RemoteFile, partial: Path, progress: type[Any] | None
) -> bool:
    """Append the missing bytes to ``partial``; True when it resumed from earlier bytes."""
    have = partial.stat().st_size if partial.is_file() else 0
    if have > file.size:
        partial.unlink()
        have = 0
    free = shutil.disk_usage(partial.parent).free
    if file.size - have > free:
        raise DiskFull(
            f"not enough disk space for {file.path} in {partial.parent}: "
            f"{human_size(file.size - have)} needed, {human_size(free)} free"
        )
    if have:
        logger.info("resuming %s at %s of %s", file.path, human_size(have), human_size(file.size))
    with partial.open("ab") as out:
        http_get(
            url,
            out,
            resume_size=have,
            headers=headers,
            expected_size=file.size,
            displayed_filename=PurePosixPath(file.path).name,
            tqdm_class=progress,
        )
    return have > 0


def _verified(path: Path, file: RemoteFile) -> bool:
    if file.sha256 is not None:
        digest = hashlib.sha256()
        expected = file.sha256
    elif file.git_oid is not None:
        digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
        expected = file.git_oid
    else:
        return path.stat().st_size == file.size
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == expected.lower()


@contextmanager
def _hub_errors(
    where: str,
    access: HubAccess,
    *,
    file: RemoteFile | None = None,
    partial: Path | None = None,
) -> Iterator[None]:
    """huggingface_hub's and the disk's exceptions as one-line llmserve errors."""
    token_hint = (
        "the token in HF_TOKEN has no access to it"
        if access.token
        else "a private or gated repository needs HF_TOKEN"
    )
    try:
        yield
    except HFValidationError as exc:
        raise HubRepoNotFound(f"not a Hugging Face repository id: {where!r} ({exc})") from None
    except GatedRepoError:
        # A subclass of RepositoryNotFoundError: the order of these clauses matters.
        how = "request access" if access.token else "accept its terms"
        raise HubAccessDenied(
            f"{where} is a gated repository: {how} at {access.web}/{where.split('@')[0]} "
            f"({token_hint})"
        ) from None
    except RevisionNotFoundError:
        raise HubRepoNotFound(f"revision not found on the Hub: {where}") from None
    except RepositoryNotFoundError:
        raise HubRepoNotFound(f"repository not found on the Hub: {where} ({token_hint})") from None
    except OfflineModeIsEnabled:
        raise DownloadFailed(f"cannot reach the Hub for {where}: HF_HUB_OFFLINE is set") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise HubAccessDenied(
                f"the Hub refused access to {where} ({status}; {token_hint})"
            ) from None
        raise DownloadFailed(f"the Hub answered {status} for {where}{_kept(partial)}") from None
    except httpx2.HTTPError as exc:
        what = file.path if file is not None else where
        raise DownloadFailed(f"download of {what} failed: {exc}{_kept(partial)}") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFull(f"disk full while writing {partial or where}{_kept(partial)}") from None
        if exc.errno is None:  # http_get's size check: more or fewer bytes than announced
            if partial is not None:
                partial.unlink(missing_ok=True)
            raise DownloadFailed(f"download of {where} failed: {exc}".splitlines()[0]) from None
        raise ModelStoreError(f"cannot write {exc.filename or where}: {exc.strerror}") from None


def _kept(partial: Path | None) -> str:
    if partial is None or not partial.is_file() or partial.stat().st_size == 0:
        return ""
    return f"; {human_size(partial.stat().st_size)} kept: run the pull again to resume"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class LogProgress:
    """A tqdm stand-in for ``http_get`` that reports a download in the logs instead of a bar:
    at the start, every 10 % or 30 s, and at the end (a pull at server start has no terminal)."""

    EVERY_S = 30.0
    EVERY_FRACTION = 0.1

    def __init__(self, *, total: int | None = None, initial: int = 0, desc: str = "", **_: Any):
        self.total = total
        self.n = initial
        self.desc = desc
        self._start = self._last_time = time.monotonic()
        self._start_n = self._last_n = initial
        size = human_size(total) if total else "size unknown"
        extra = {"file": desc, "total_bytes": total, "resumed_at_bytes": initial}
        logger.info("downloading %s: %s", desc, size, extra=extra)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self._report("downloaded")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        step = (self.total or 0) * self.EVERY_FRACTION
        if now - self._last_time >= self.EVERY_S or (step and self.n - self._last_n >= step):
            self._report("downloading")
            self._last_time, self._last_n = now, self.n

    def close(self) -> None:
        return None

    def _report(self, verb: str) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = (self.n - self._start_n) / elapsed
        percent = f"{100 * self.n / self.total:.0f}%, " if self.total else ""
        extra = {"file": self.desc, "bytes": self.n, "total_bytes": self.total}
        done, speed = human_size(self.n), human_size(int(rate))
        logger.info("%s %s: %s%s at %s/s", verb, self.desc, percent, done, speed, extra=extra)
