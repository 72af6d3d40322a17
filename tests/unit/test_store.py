"""The local model store: names, split models, lookup and removal, with no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmserve.errors import AmbiguousFile, LocalModelNotFound, UnsafeFileName
from llmserve.models.store import ModelFiles, ModelStore, group_gguf_paths, select


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def put(store: ModelStore, relative: str, data: bytes = b"GGUF") -> Path:
    path = store.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_split_parts_group_into_one_model() -> None:
    """x-0000N-of-00003.gguf are one model named x, parts in order; other files stand alone."""
    paths = ["b-00002-of-00003.gguf", "b-00001-of-00003.gguf", "a.gguf", "README.md"]
    assert group_gguf_paths(paths) == [
        ModelFiles("a", ("a.gguf",)),
        ModelFiles("b", ("b-00001-of-00003.gguf", "b-00002-of-00003.gguf"), 3),
    ]
    assert not group_gguf_paths(paths)[1].complete


def test_plain_word_naming_a_file_exactly_selects_only_it() -> None:
    """`m.gguf` picks m.gguf even though `mm.gguf` contains it too."""
    models = group_gguf_paths(["m.gguf", "mm.gguf"])
    assert [m.name for m in select(models, "m.gguf")] == ["m"]
    assert [m.name for m in select(models, "m")] == ["m", "mm"]


def test_models_are_named_by_their_place_in_the_store(store: ModelStore) -> None:
    """Pulled files are named owner/repo/stem; hand-copied ones by where they lie."""
    put(store, "acme/tiny-GGUF/tiny-Q4_K_M.gguf")
    put(store, "mine.gguf")
    put(store, "acme/tiny-GGUF/tiny-Q4_K_M.gguf.0123.part")
    assert [m.name for m in store.models()] == ["acme/tiny-GGUF/tiny-Q4_K_M", "mine"]


def test_empty_or_missing_store_has_no_models(store: ModelStore) -> None:
    """A store directory that does not exist yet is simply empty."""
    assert store.models() == []


def test_find_by_full_name_with_or_without_suffix_or_by_last_part(store: ModelStore) -> None:
    """A model is found by its full name, that name plus .gguf, or its unique last part."""
    path = put(store, "acme/tiny-GGUF/tiny-Q4_K_M.gguf")
    for name in ("acme/tiny-GGUF/tiny-Q4_K_M", "acme/tiny-GGUF/tiny-Q4_K_M.gguf", "tiny-Q4_K_M"):
        found = store.find(name)
        assert found is not None
        assert found.path == path
    assert store.find("tiny") is None


def test_last_part_shared_by_two_models_is_ambiguous(store: ModelStore) -> None:
    """Two repositories with the same file name: the short name lists both full names."""
    put(store, "acme/a-GGUF/model.gguf")
    put(store, "other/b-GGUF/model.gguf")
    with pytest.raises(AmbiguousFile, match="acme/a-GGUF/model, other/b-GGUF/model"):
        store.find("model")


def test_unknown_name_names_the_store(store: ModelStore) -> None:
    """get() of a missing model says where it looked."""
    with pytest.raises(LocalModelNotFound, match=str(store.root)):
        store.get("nothing")


def test_remove_deletes_every_part_and_the_emptied_directories(store: ModelStore) -> None:
    """rm of a split model removes all parts, their leftovers and the empty repo directories."""
    for i in (1, 2):
        put(store, f"acme/big-GGUF/big-0000{i}-of-00002.gguf")
    put(store, "acme/big-GGUF/big-00001-of-00002.gguf.lock")
    keep = put(store, "acme/other-GGUF/o.gguf")
    removed = store.remove("acme/big-GGUF/big")
    assert len(removed.files) == 2
    assert not (store.root / "acme" / "big-GGUF").exists()
    assert keep.exists()


def test_pulled_models_of_a_repo_are_found_by_pattern(store: ModelStore) -> None:
    """A repo reference's pattern is matched against what was pulled from that repo only."""
    put(store, "acme/tiny-GGUF/tiny-Q4_K_M.gguf")
    put(store, "acme/tiny-GGUF/tiny-Q8_0.gguf")
    put(store, "acme/other-GGUF/other-Q4_K_M.gguf")
    assert [m.name for m in store.pulled("acme/tiny-GGUF", "Q4_K_M")] == [
        "acme/tiny-GGUF/tiny-Q4_K_M"
    ]
    assert len(store.pulled("acme/tiny-GGUF", None)) == 2
    assert store.pulled("acme/none", None) == []


@pytest.mark.parametrize("name", ["../x.gguf", "a/../../x.gguf", "/etc/x.gguf", "a\\..\\x.gguf"])
def test_target_outside_the_store_is_refused(store: ModelStore, name: str) -> None:
    """A repository path with .., an absolute path or backslashes never becomes a store path."""
    with pytest.raises(UnsafeFileName):
        store.target("acme/repo", name)
