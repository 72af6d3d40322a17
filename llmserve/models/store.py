"""The local model store: GGUF files under ``[store] models_dir``, found by name.

A pulled file keeps its place in its repository: ``<models_dir>/<owner>/<repo>/<path in repo>``.
A model's name is that path without ``.gguf``, e.g. ``ggml-org/gemma-3-270m-GGUF/gemma-3-270m-Q8_0``
(or just its last part, ``gemma-3-270m-Q8_0``, while that is unique in the store); a file copied
into the store by hand is named the same way from where it lies. A split GGUF
(``x-00001-of-00003.gguf`` ...) is one model named ``x``, served from its first part.

No network here: ``llmserve.models.hub`` fills the store, this module reads it and removes from it.
"""

from __future__ import annotations

import fnmatch
import glob
import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from attrs import frozen

from llmserve.config import StoreSettings
from llmserve.errors import AmbiguousFile, LocalModelNotFound, UnsafeFileName

GGUF_SUFFIX = ".gguf"
SPLIT = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_GLOB_CHARS = frozenset("*?[")


@frozen
class ModelFiles:
    """One model's GGUF file, or the parts of a split one, as repository-style paths."""

    name: str  # the path without .gguf and without the split suffix
    paths: tuple[str, ...]  # in part order; the first is the one llama.cpp is given
    split_count: int = 1  # the number of parts the names announce

    @property
    def complete(self) -> bool:
        return len(self.paths) == self.split_count


def group_gguf_paths(paths: Iterable[str]) -> list[ModelFiles]:
    """The models among ``paths``: GGUF files, the parts of a split one grouped, by name."""
    singles: dict[str, str] = {}
    splits: dict[tuple[str, int], dict[int, str]] = {}
    for path in paths:
        if not path.lower().endswith(GGUF_SUFFIX):
            continue
        match = SPLIT.match(path)
        if match is None:
            singles[path[: -len(GGUF_SUFFIX)]] = path
        else:
            key = (match["stem"], int(match["count"]))
            splits.setdefault(key, {})[int(match["index"])] = path
    models = [ModelFiles(name, (path,)) for name, path in singles.items()]
    for (stem, count), parts in splits.items():
        models.append(ModelFiles(stem, tuple(parts[i] for i in sorted(parts)), count))
    return sorted(models, key=lambda model: model.name)


def matches(pattern: str | None, model: ModelFiles) -> bool:
    """Whether a ``--file`` pattern selects the model, matching any of its files.

    A glob (``*Q4_K_M.gguf``) is matched against the whole path and against the file name; a
    plain word is the exact path or file name, else a part of it (``Q4_K_M``). Case is ignored,
    as the Hub's own quantization tags are written in either case.
    """
    if pattern is None:
        return True
    wanted = pattern.lower()
    for path in model.paths:
        full, base = path.lower(), PurePosixPath(path).name.lower()
        if _GLOB_CHARS & set(wanted):
            if fnmatch.fnmatchcase(full, wanted) or fnmatch.fnmatchcase(base, wanted):
                return True
        elif wanted in full:
            return True
    return False


def select(models: Iterable[ModelFiles], pattern: str | None) -> list[ModelFiles]:
    """The models a pattern selects; a plain word naming one file exactly selects only that."""
    chosen = [model for model in models if matches(pattern, model)]
    if pattern is not None and not _GLOB_CHARS & set(pattern):
        exact = [model for model in chosen if _names_exactly(model, pattern.lower())]
        return exact or chosen
    return chosen


def _names_exactly(model: ModelFiles, wanted: str) -> bool:
    return any(wanted in (path.lower(), PurePosixPath(path).name.lower()) for path in model.paths)


@frozen
class StoredModel:
    """A model in the store: its name and its file(s) on disk."""

    name: str
    files: tuple[Path, ...]
    split_count: int = 1

    @property
    def path(self) -> Path:
        """The file to load (a split model's first part)."""
        return self.files[0]

    @property
    def size_bytes(self) -> int:
        return sum(file.stat().st_size for file in self.files)

    @property
    def complete(self) -> bool:
        return len(self.files) == self.split_count


@frozen
class ModelStore:
    """The GGUF files under one directory."""

    root: Path

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> ModelStore:
        return cls(Path(settings.models_dir).expanduser())

    def models(self) -> list[StoredModel]:
        """Every model in the store, by name; empty when the directory does not exist."""
        return [self._stored(model) for model in group_gguf_paths(self._relative_paths())]

    def find(self, name: str) -> StoredModel | None:
        """The model called ``name`` (``.gguf`` optional), or the one whose last part it is."""
        wanted = name.removesuffix(GGUF_SUFFIX).strip("/")
        models = self.models()
        exact = [model for model in models if model.name == wanted]
        if exact:
            return exact[0]
        short = [model for model in models if model.name.rsplit("/", 1)[-1] == wanted]
        if len(short) > 1:
            listed = ", ".join(model.name for model in short)
            raise AmbiguousFile(f"{name!r} names several models in the store: {listed}")
        return short[0] if short else None

    def get(self, name: str) -> StoredModel:
        """The model called ``name``; LocalModelNotFound names the store when there is none."""
        model = self.find(name)
        if model is None:
            raise LocalModelNotFound(
                f"no model {name!r} in the model store {self.root} "
                "(`llmserve models list` shows what is there)"
            )
        return model

    def pulled(self, repo_id: str, pattern: str | None) -> list[StoredModel]:
        """The complete models pulled from ``repo_id`` that ``pattern`` selects."""
        repo_dir = self.repo_dir(repo_id)
        if not repo_dir.is_dir():
            return []
        inside = [path.relative_to(repo_dir).as_posix() for path in _gguf_files(repo_dir)]
        chosen = select(group_gguf_paths(inside), pattern)
        prefix = repo_dir.relative_to(self.root).as_posix()
        stored = [self._stored(_prefixed(model, prefix)) for model in chosen]
        return [model for model in stored if model.complete]

    def remove(self, name: str) -> StoredModel:
        """Delete a model's files (every part) and the directories that leaves empty."""
        model = self.get(name)
        for file in model.files:
            file.unlink(missing_ok=True)
            for leftover in file.parent.glob(glob.escape(file.name) + ".*"):
                leftover.unlink(missing_ok=True)  # partial downloads and locks of this file
        self._prune(model.path.parent)
        return model

    def repo_dir(self, repo_id: str) -> Path:
        return self.target(repo_id, "")

    def target(self, repo_id: str, repo_path: str) -> Path:
        """Where a repository file is stored; UnsafeFileName when it would land outside."""
        relative = PurePosixPath(repo_id, repo_path) if repo_path else PurePosixPath(repo_id)
        unsafe = (
            "\\" in str(relative)
            or relative.is_absolute()
            or any(part in ("..", ".", "") for part in str(relative).split("/"))
        )
        path = self.root.joinpath(*relative.parts)
        if unsafe or not path.resolve().is_relative_to(self.root.resolve()):
            shown = f"{repo_id}/{repo_path}" if repo_path else repo_id
            raise UnsafeFileName(f"refusing {shown!r}: the name would escape the model store")
        return path

    def _relative_paths(self) -> Iterator[str]:
        if self.root.is_dir():
            for path in _gguf_files(self.root):
                yield path.relative_to(self.root).as_posix()

    def _stored(self, model: ModelFiles) -> StoredModel:
        files = tuple(self.root.joinpath(*PurePosixPath(path).parts) for path in model.paths)
        return StoredModel(model.name, files, model.split_count)

    def _prune(self, directory: Path) -> None:
        root = self.root.resolve()
        while directory.resolve() != root and directory.resolve().is_relative_to(root):
            try:
                directory.rmdir()
            except OSError:
                return  # not empty
            directory = directory.parent


def _gguf_files(directory: Path) -> list[Path]:
    return sorted(
        path
        for path in directory.rglob("*")
        if path.suffix.lower() == GGUF_SUFFIX and path.is_file()
    )


def _prefixed(model: ModelFiles, prefix: str) -> ModelFiles:
    return ModelFiles(
        f"{prefix}/{model.name}",
        tuple(f"{prefix}/{path}" for path in model.paths),
        model.split_count,
    )


def human_size(size: int) -> str:
    """Bytes in decimal units, as the Hub shows them: ``253.1 MB``."""
    if size < 1000:
        return f"{size} B"
    value = size / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
