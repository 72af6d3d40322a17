"""The Responses store: LRU bounds in entries and bytes, key scopes, and its disk file."""

from __future__ import annotations

from pathlib import Path

from llmserve.api.responses.store import ResponseStore, Stored, scope_of
from llmserve.config import load_settings


def stored(response_id: str, text: str = "x") -> Stored:
    return Stored({"id": response_id, "text": text}, ({"role": "user", "content": text},))


def test_least_recently_used_goes_first_beyond_max_entries() -> None:
    """Past max_entries the least recently used response is dropped; a get refreshes one."""
    store = ResponseStore(max_entries=2, max_bytes=1 << 20)
    store.put("", stored("a"))
    store.put("", stored("b"))
    assert store.get("", "a") is not None
    store.put("", stored("c"))
    assert store.get("", "b") is None
    assert store.get("", "a") is not None
    assert store.get("", "c") is not None


def test_bytes_bound_drops_old_entries_and_refuses_huge_ones() -> None:
    """max_bytes bounds the stored JSON; one response larger than all of it is not kept."""
    store = ResponseStore(max_entries=100, max_bytes=400)
    for i in range(10):
        store.put("", stored(f"r{i}", "y" * 50))
    assert store.bytes <= 400
    assert 0 < len(store) < 10
    assert store.get("", "r9") is not None
    store.put("", stored("huge", "z" * 1000))
    assert store.get("", "huge") is None


def test_scopes_do_not_see_each_other() -> None:
    """An id stored in one key's scope is not found from another's."""
    store = ResponseStore(max_entries=10, max_bytes=1 << 20)
    store.put(scope_of("sk-a"), stored("a"))
    assert store.get(scope_of("sk-b"), "a") is None
    assert not store.delete(scope_of("sk-b"), "a")
    assert store.get(scope_of("sk-a"), "a") is not None


def test_scope_is_a_hash_not_the_key() -> None:
    """The scope of a key never holds the key itself; no key is the one open scope."""
    assert "sk-secret" not in scope_of("sk-secret")
    assert scope_of(None) == ""


def test_disk_file_survives_a_restart_without_deleted_entries(tmp_path: Path) -> None:
    """With disk_path, stored responses come back in a new store; deleted ones do not."""
    path = tmp_path / "responses.jsonl"
    store = ResponseStore(max_entries=10, max_bytes=1 << 20, disk_path=str(path))
    store.put("s", stored("a", "first"))
    store.put("s", stored("b"))
    assert store.delete("s", "b")
    again = ResponseStore(max_entries=10, max_bytes=1 << 20, disk_path=str(path))
    found = again.get("s", "a")
    assert found is not None
    assert found.conversation == ({"role": "user", "content": "first"},)
    assert again.get("s", "b") is None


def test_disk_file_is_compacted(tmp_path: Path) -> None:
    """The file is rewritten as the store holds it, so churn does not grow it forever."""
    path = tmp_path / "responses.jsonl"
    store = ResponseStore(max_entries=2, max_bytes=1 << 20, disk_path=str(path))
    for i in range(200):
        store.put("", stored(f"r{i}"))
    assert len(path.read_text().splitlines()) < 40


def test_unreadable_lines_are_skipped(tmp_path: Path) -> None:
    """A damaged line of the file is skipped, the rest loaded."""
    path = tmp_path / "responses.jsonl"
    ResponseStore(max_entries=10, max_bytes=1 << 20, disk_path=str(path)).put("", stored("a"))
    path.write_text(path.read_text() + "{not json\n")
    assert ResponseStore(10, 1 << 20, str(path)).get("", "a") is not None


def test_responses_keys_load_from_env() -> None:
    """[responses] max_entries, max_mb and disk_path are LLM_ENGINE_RESPONSES_* env vars."""
    env = {
        "LLM_ENGINE_RESPONSES_MAX_ENTRIES": "5",
        "LLM_ENGINE_RESPONSES_MAX_MB": "7",
        "LLM_ENGINE_RESPONSES_DISK_PATH": "/tmp/r.jsonl",
    }
    settings = load_settings(None, env, {})
    assert settings.responses.max_entries == 5
    assert settings.responses.max_mb == 7
    assert settings.responses.disk_path == "/tmp/r.jsonl"
