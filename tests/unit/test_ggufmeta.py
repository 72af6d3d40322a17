"""GGUF metadata from the file header: what `llmserve models` shows, without loading weights."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import pytest

from llmserve.errors import ModelLoadError
from llmserve.models.ggufmeta import FILE_TYPES, GGUFArray, read_metadata
from tests.support.tinymodel import N_CTX_TRAIN, build_tiny_gguf


def test_reads_architecture_quantization_and_context(tiny_gguf: Path) -> None:
    """The tiny model's header gives llama, F32 and its training context."""
    metadata = read_metadata(tiny_gguf)
    assert metadata.architecture == "llama"
    assert metadata.quantization == "F32"
    assert metadata.context_length == N_CTX_TRAIN
    assert metadata.name == "llmserve tiny test model"
    assert metadata.split_count == 1


def test_chat_template_is_read_when_present(tmp_path: Path, tiny_gguf: Path) -> None:
    """tokenizer.chat_template comes back verbatim; a model without one has None."""
    with_template = build_tiny_gguf(tmp_path / "chat.gguf", chat_template="{{ messages }}")
    assert read_metadata(with_template).chat_template == "{{ messages }}"
    assert read_metadata(tiny_gguf).chat_template is None


def test_arrays_are_summarised_not_read(tiny_gguf: Path) -> None:
    """The vocabulary is reported as its length and element type."""
    tokens = read_metadata(tiny_gguf).values["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray)
    assert tokens.element_type == "string"
    assert tokens.length > 256


def test_file_type_names_agree_with_the_gguf_package() -> None:
    """Every llama_ftype the gguf package knows is named as llama.cpp names it."""
    for member in gguf.LlamaFileType:
        if member.name != "GUESSED":
            expected = member.name.removeprefix("MOSTLY_").removeprefix("ALL_")
            assert FILE_TYPES[member.value] == expected


def test_file_that_is_not_gguf_is_a_model_load_error(tmp_path: Path) -> None:
    """Any other file fails with one line naming it."""
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelLoadError, match=r"not a GGUF file: .*fake\.gguf"):
        read_metadata(path)


def test_truncated_header_is_a_model_load_error(tmp_path: Path, tiny_gguf: Path) -> None:
    """A header cut short (an interrupted copy) is reported as corrupt, not a crash."""
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny_gguf.read_bytes()[:2000])
    with pytest.raises(ModelLoadError, match="corrupt GGUF header"):
        read_metadata(path)


def test_big_endian_header_is_read(tmp_path: Path) -> None:
    """A big-endian GGUF (s390x builds) is recognised by its version field."""
    key = b"general.architecture"
    value = b"llama"
    header = b"GGUF" + struct.pack(">IQQ", 3, 0, 1)
    header += struct.pack(">Q", len(key)) + key + struct.pack(">I", 8)
    header += struct.pack(">Q", len(value)) + value
    path = tmp_path / "be.gguf"
    path.write_bytes(header)
    assert read_metadata(path).architecture == "llama"


def test_short_numeric_arrays_keep_their_values(tmp_path: Path) -> None:
    """A per-layer array (KV heads of each layer) keeps its values; the vocabulary does not."""
    path = tmp_path / "layers.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_head_count_kv([0, 2, 0, 2])
    writer.add_token_list(["a", "b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    values = read_metadata(path).values
    heads = values["llama.attention.head_count_kv"]
    assert isinstance(heads, GGUFArray)
    assert heads.items == (0, 2, 0, 2)
    tokens = values["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray)
    assert tokens.items is None
