"""llmserve pull: the real huggingface_hub client against a loopback fake of the Hub."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import huggingface_hub.constants as hf_constants
import pytest

from llmserve.errors import (
    AmbiguousFile,
    ChecksumMismatch,
    DiskFull,
    DownloadFailed,
    HubAccessDenied,
    HubRepoNotFound,
    NoMatchingFile,
    UnsafeFileName,
)
from llmserve.models.hub import HubAccess, LogProgress, parse_reference, pull
from llmserve.models.store import ModelStore
from tests.support.fake_hub import FakeHub

REPO = "acme/tiny-GGUF"
DATA = bytes(range(256)) * 256  # 64 KiB: 16 chunks of the download below
OTHER = DATA[::-1]


@pytest.fixture(name="small_chunks", autouse=True)
def fixture_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """4 KiB download chunks, so a 64 KiB test file streams in pieces as a real model does."""
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 4096)


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.fixture(name="quants")
def fixture_quants(fake_hub: FakeHub) -> FakeHub:
    """A repository with three quantizations of one model and a README."""
    fake_hub.add_repo(
        REPO,
        {
            "tiny-Q4_0.gguf": OTHER,
            "tiny-Q4_K_M.gguf": DATA,
            "tiny-Q8_0.gguf": OTHER,
            "README.md": b"# tiny\n",
        },
    )
    return fake_hub


def pull_from(store: ModelStore, repo: str = REPO, pattern: str | None = None, **kw: Any) -> Any:
    return pull(repo, pattern, store=store, access=HubAccess.from_environ(os.environ), **kw)


def leftovers(store: ModelStore) -> list[str]:
    """Everything in the store that is not a finished GGUF file."""
    return sorted(p.name for p in store.root.rglob("*") if p.is_file() and p.suffix != ".gguf")


class CtrlCAfter(LogProgress):
    """A progress bar whose user presses Ctrl+C once ``LIMIT`` bytes have arrived."""

    LIMIT = 20_000

    def update(self, n: int = 1) -> None:
        super().update(n)
        if self.n >= self.LIMIT:
            raise KeyboardInterrupt


class DiskFillsAfter(CtrlCAfter):
    """A progress bar standing in for a disk that fills up after ``LIMIT`` bytes."""

    def update(self, n: int = 1) -> None:
        try:
            super().update(n)
        except KeyboardInterrupt:
            raise OSError(errno.ENOSPC, "No space left on device") from None


def test_pull_by_pattern_stores_the_file_under_its_repository(
    quants: FakeHub, store: ModelStore
) -> None:
    """A glob picks one file; it lands at <store>/<owner>/<repo>/<file>, nothing else left."""
    model = pull_from(store, pattern="*Q4_K_M.gguf")
    assert model.name == f"{REPO}/tiny-Q4_K_M"
    assert model.path == store.root / "acme" / "tiny-GGUF" / "tiny-Q4_K_M.gguf"
    assert model.path.read_bytes() == DATA
    assert leftovers(store) == []


def test_plain_word_pattern_matches_part_of_the_name_in_any_case(
    quants: FakeHub, store: ModelStore
) -> None:
    """`q8_0` selects tiny-Q8_0.gguf, as llama.cpp's REPO:QUANT does."""
    assert pull_from(store, pattern="q8_0").path.name == "tiny-Q8_0.gguf"


def test_repo_with_one_gguf_needs_no_pattern(fake_hub: FakeHub, store: ModelStore) -> None:
    """Without --file, the only GGUF of a repository is the one pulled."""
    fake_hub.add_repo("acme/one-GGUF", {"one.gguf": DATA, "README.md": b"hi"})
    assert pull_from(store, "acme/one-GGUF").path.read_bytes() == DATA


def test_several_ggufs_without_pattern_list_the_candidates(
    quants: FakeHub, store: ModelStore
) -> None:
    """Without --file, a repository of several GGUFs is an error naming each."""
    with pytest.raises(AmbiguousFile) as caught:
        pull_from(store)
    for name in ("tiny-Q4_0.gguf", "tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"):
        assert name in caught.value.message
    assert "--file" in caught.value.message


def test_ambiguous_pattern_lists_only_its_matches(quants: FakeHub, store: ModelStore) -> None:
    """A pattern matching two files names those two, and downloads nothing."""
    with pytest.raises(AmbiguousFile) as caught:
        pull_from(store, pattern="*Q4*")
    assert "tiny-Q4_0.gguf" in caught.value.message
    assert "tiny-Q4_K_M.gguf" in caught.value.message
    assert "Q8_0" not in caught.value.message
    assert quants.downloads("tiny-Q4_0.gguf") == []


def test_no_match_names_the_pattern_and_what_there_is(quants: FakeHub, store: ModelStore) -> None:
    """A pattern matching nothing is an error listing the repository's GGUFs."""
    with pytest.raises(NoMatchingFile, match=r"'\*Q2_K\.gguf'.*tiny-Q8_0\.gguf"):
        pull_from(store, pattern="*Q2_K.gguf")


def test_repo_without_gguf_is_an_error(fake_hub: FakeHub, store: ModelStore) -> None:
    """A repository of safetensors only has nothing to pull."""
    fake_hub.add_repo("acme/torch", {"model.safetensors": DATA})
    with pytest.raises(NoMatchingFile, match="no GGUF file in acme/torch"):
        pull_from(store, "acme/torch")


def test_missing_repo_is_not_found(fake_hub: FakeHub, store: ModelStore) -> None:
    """A 404 names the repository and hints at HF_TOKEN for private ones."""
    with pytest.raises(HubRepoNotFound, match=r"acme/nothing.*HF_TOKEN"):
        pull_from(store, "acme/nothing")


def test_missing_revision_is_not_found(quants: FakeHub, store: ModelStore) -> None:
    """An unknown --revision names the revision."""
    with pytest.raises(HubRepoNotFound, match="revision not found on the Hub: acme/tiny-GGUF@v9"):
        pull_from(store, pattern="Q8_0", revision="v9")


def test_private_repo_without_token_asks_for_hf_token(fake_hub: FakeHub, store: ModelStore) -> None:
    """The Hub answers 401 for a private repository without a token."""
    fake_hub.add_repo("acme/private", {"p.gguf": DATA}, private=True, tokens=frozenset({"hf_ok"}))
    with pytest.raises(HubRepoNotFound, match="needs HF_TOKEN"):
        pull_from(store, "acme/private")


def test_private_repo_with_token_is_pulled_and_the_token_stays_off_the_cdn(
    fake_hub: FakeHub, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HF_TOKEN is sent to the Hub, never to the CDN the file is redirected to."""
    fake_hub.add_repo("acme/private", {"p.gguf": DATA}, private=True, tokens=frozenset({"hf_ok"}))
    monkeypatch.setenv("HF_TOKEN", "hf_ok")
    assert pull_from(store, "acme/private").path.read_bytes() == DATA
    hub_requests = [r for r in fake_hub.seen if "/cdn/" not in r.path]
    assert all(r.headers.get("authorization") == "Bearer hf_ok" for r in hub_requests)
    assert all("authorization" not in r.headers for r in fake_hub.downloads("p.gguf"))


def test_gated_repo_without_token_says_to_accept_terms_and_set_hf_token(
    fake_hub: FakeHub, store: ModelStore
) -> None:
    """The gated repository's 401 becomes HubAccessDenied pointing at its page."""
    fake_hub.add_repo("acme/gated", {"g.gguf": DATA}, gated=True)
    with pytest.raises(HubAccessDenied, match=r"accept its terms at http://127\.0\.0\.1:\d+/acme"):
        pull_from(store, "acme/gated")


def test_gated_repo_with_token_lacking_access_says_so(
    fake_hub: FakeHub, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token without access to a gated repository gets a 403: the message names HF_TOKEN."""
    fake_hub.add_repo("acme/gated", {"g.gguf": DATA}, gated=True, tokens=frozenset({"hf_ok"}))
    monkeypatch.setenv("HF_TOKEN", "hf_other")
    with pytest.raises(HubAccessDenied, match="the token in HF_TOKEN has no access"):
        pull_from(store, "acme/gated")
    assert leftovers(store) == []


def test_dropped_connection_resumes_where_it_broke_off(quants: FakeHub, store: ModelStore) -> None:
    """The server hangs up mid-file once; the pull asks for the rest with a Range and succeeds."""
    quants.drop_once("tiny-Q4_K_M.gguf", 20_000)
    assert pull_from(store, pattern="Q4_K_M").path.read_bytes() == DATA
    first, second = quants.downloads("tiny-Q4_K_M.gguf")
    assert "range" not in first.headers
    start = int(second.headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 20_000


def test_interrupted_pull_resumes_on_the_next_run(quants: FakeHub, store: ModelStore) -> None:
    """Ctrl+C keeps what arrived; the same pull later fetches only the rest."""
    with pytest.raises(KeyboardInterrupt):
        pull_from(store, pattern="Q4_K_M", progress=CtrlCAfter)
    assert not (store.root / "acme" / "tiny-GGUF" / "tiny-Q4_K_M.gguf").exists()
    assert pull_from(store, pattern="Q4_K_M").path.read_bytes() == DATA
    _, resumed = quants.downloads("tiny-Q4_K_M.gguf")
    assert resumed.headers["range"] != "bytes=0-"
    assert leftovers(store) == []


def test_corrupt_partial_is_discarded_and_the_file_downloaded_again(
    quants: FakeHub, store: ModelStore
) -> None:
    """A kept partial that is no true prefix fails the checksum, then the file comes whole."""
    with pytest.raises(KeyboardInterrupt):
        pull_from(store, pattern="Q4_K_M", progress=CtrlCAfter)
    (partial,) = store.root.rglob("*.part")
    partial.write_bytes(b"\xff" * partial.stat().st_size)
    assert pull_from(store, pattern="Q4_K_M").path.read_bytes() == DATA
    first, resumed, restarted = quants.downloads("tiny-Q4_K_M.gguf")
    assert "range" not in first.headers
    assert "range" in resumed.headers
    assert "range" not in restarted.headers
    assert leftovers(store) == []


def test_checksum_mismatch_is_an_error_and_removes_the_download(
    fake_hub: FakeHub, store: ModelStore
) -> None:
    """Bytes that do not hash to the Hub's LFS sha256 are reported and not kept."""
    fake_hub.add_repo("acme/bad", {"bad.gguf": DATA}, published_sha256={"bad.gguf": "0" * 64})
    with pytest.raises(ChecksumMismatch, match="expected 0000"):
        pull_from(store, "acme/bad")
    assert [p.name for p in store.root.rglob("*") if p.suffix in (".gguf", ".part")] == []


@pytest.mark.parametrize("name", ["../escape.gguf", "sub/../../../escape.gguf"])
def test_file_name_escaping_the_store_is_refused(
    fake_hub: FakeHub, store: ModelStore, tmp_path: Path, name: str
) -> None:
    """A repository file name with ../ is refused before a byte is downloaded."""
    fake_hub.add_repo("acme/evil", {name: DATA})
    with pytest.raises(UnsafeFileName, match="escape the model store"):
        pull_from(store, "acme/evil")
    assert [r for r in fake_hub.seen if r.method == "GET" and "/cdn/" in r.path] == []
    assert list(tmp_path.rglob("escape.gguf")) == []


def test_split_gguf_is_pulled_whole(fake_hub: FakeHub, store: ModelStore) -> None:
    """A pattern matching a split model pulls every part; the model is served from part 1."""
    parts = {f"Q4_K_M/big-Q4_K_M-0000{i}-of-00003.gguf": DATA[i:] for i in (1, 2, 3)}
    fake_hub.add_repo("acme/big-GGUF", {**parts, "big-Q8_0.gguf": OTHER})
    model = pull_from(store, "acme/big-GGUF", pattern="*Q4_K_M*")
    assert model.name == "acme/big-GGUF/Q4_K_M/big-Q4_K_M"
    assert [file.name for file in model.files] == [
        f"big-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)
    ]
    assert model.path.read_bytes() == DATA[1:]
    assert [m.name for m in store.models()] == [model.name]


def test_file_already_in_the_store_is_not_downloaded_again(
    quants: FakeHub, store: ModelStore
) -> None:
    """A second pull of the same file asks the Hub what it is, not for its bytes."""
    pull_from(store, pattern="Q4_K_M")
    pull_from(store, pattern="Q4_K_M")
    assert len(quants.downloads("tiny-Q4_K_M.gguf")) == 1


def test_too_little_disk_space_fails_before_downloading(
    quants: FakeHub, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Less free space than the file needs is DiskFull with both sizes, and no request."""
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage._replace(free=1000))
    with pytest.raises(DiskFull, match=r"65\.5 kB needed, 1\.0 kB free"):
        pull_from(store, pattern="Q4_K_M")
    assert quants.downloads("tiny-Q4_K_M.gguf") == []


def test_disk_filling_up_mid_download_keeps_the_partial_for_resume(
    quants: FakeHub, store: ModelStore
) -> None:
    """ENOSPC while writing is DiskFull; what was written is kept and the next pull resumes."""
    with pytest.raises(DiskFull, match="run the pull again to resume"):
        pull_from(store, pattern="Q4_K_M", progress=DiskFillsAfter)
    assert pull_from(store, pattern="Q4_K_M").path.read_bytes() == DATA
    assert "range" in quants.downloads("tiny-Q4_K_M.gguf")[-1].headers


def test_offline_mode_refuses_to_pull(
    quants: FakeHub, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HF_HUB_OFFLINE=1 is honoured before any request."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadFailed, match="HF_HUB_OFFLINE"):
        pull_from(store, pattern="Q4_K_M")
    assert quants.seen == []


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("acme/tiny-GGUF", ("acme/tiny-GGUF", None)),
        ("acme/tiny-GGUF:Q4_K_M", ("acme/tiny-GGUF", "Q4_K_M")),
        ("acme/tiny-GGUF:*Q4_K_M.gguf", ("acme/tiny-GGUF", "*Q4_K_M.gguf")),
        ("models/tiny.gguf", None),
        ("/abs/tiny.gguf", None),
        ("./acme/tiny", None),
        ("tiny", None),
        ("acme/tiny-GGUF/tiny-Q4_K_M", None),
    ],
)
def test_reference_parsing(text: str, parsed: tuple[str, str | None] | None) -> None:
    """REPO_ID[:PATTERN] is told apart from paths and store names."""
    assert parse_reference(text) == parsed


def test_hub_digest_shaped_like_a_path_names_no_file_outside_the_store(
    fake_hub: FakeHub, store: ModelStore, tmp_path: Path
) -> None:
    """A Hub (or mirror) publishing a sha256 like ../../x gets a clean checksum error: the
    partial download is named from the digest's hex digits only, inside the store."""
    evil = "../" * 8 + "tmp/pwned"
    fake_hub.add_repo("acme/evil", {"evil.gguf": DATA}, published_sha256={"evil.gguf": evil})
    with pytest.raises(ChecksumMismatch):
        pull_from(store, "acme/evil")
    assert [p for p in tmp_path.rglob("*") if "pwned" in p.name] == []
    assert not Path("/tmp/pwned").exists()
