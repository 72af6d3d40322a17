"""GGUF metadata read straight from the file header, without llama.cpp and without the weights.

The header is the magic ``GGUF``, a version, the tensor and key-value counts, then the key-value
pairs; the tensors follow and are never touched. The file is memory-mapped, so only the header's
pages are read even for a model of many gigabytes. Arrays (the vocabulary: up to 262,144 strings)
are summarised as their element type and length: walking past them is all it costs.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Mapping
from pathlib import Path

from attrs import field, frozen

from llmserve.errors import ModelLoadError

MAGIC = b"GGUF"

# llama.cpp's llama_ftype, as written in general.file_type (the gguf package's LlamaFileType).
FILE_TYPES: Mapping[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
    39: "NVFP4", 40: "Q1_0",
}  # fmt: skip

# GGUF value types: the struct format of each fixed-size one; 8 is a string, 9 an array.
_SCALARS: Mapping[int, str] = {
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9
_TYPE_NAMES: Mapping[int, str] = {
    0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32",
    7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64",
}  # fmt: skip

Scalar = int | float | bool | str
# Numeric arrays up to this length keep their values: per-layer hyperparameters (KV heads of
# each layer, which layers use a sliding window) are such arrays; a vocabulary is not.
KEPT_ARRAY_LENGTH = 4096


@frozen
class GGUFArray:
    """An array value, summarised: its element type and its length."""

    element_type: str
    length: int
    # The values of a short numeric array (see KEPT_ARRAY_LENGTH); None for other arrays.
    items: tuple[int | float | bool, ...] | None = field(default=None, eq=False, repr=False)

    def __str__(self) -> str:
        return f"[{self.length} x {self.element_type}]"


MetadataValue = Scalar | GGUFArray


@frozen
class GGUFMetadata:
    """The key-value metadata of one GGUF file."""

    version: int
    tensor_count: int
    values: Mapping[str, MetadataValue]

    @property
    def architecture(self) -> str | None:
        return self._string("general.architecture")

    @property
    def name(self) -> str | None:
        return self._string("general.name")

    @property
    def quantization(self) -> str | None:
        """The file type as llama.cpp names it (``Q4_K_M``), or None when unrecorded."""
        file_type = self.values.get("general.file_type")
        if not isinstance(file_type, int) or isinstance(file_type, bool):
            return None
        return FILE_TYPES.get(file_type, f"type {file_type}")

    @property
    def context_length(self) -> int | None:
        """The context the model was trained with (``<arch>.context_length``)."""
        value = self.values.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def chat_template(self) -> str | None:
        return self._string("tokenizer.chat_template")

    @property
    def split_count(self) -> int:
        """How many files the model is split into (1 when it is not split)."""
        value = self.values.get("split.count")
        return value if isinstance(value, int) and value > 0 else 1

    def _string(self, key: str) -> str | None:
        value = self.values.get(key)
        return value if isinstance(value, str) else None


def read_metadata(path: Path) -> GGUFMetadata:
    """The metadata in the header of the GGUF file at ``path``; ModelLoadError if it is none."""
    try:
        with path.open("rb") as file:
            if path.stat().st_size < len(MAGIC) or file.read(len(MAGIC)) != MAGIC:
                raise ModelLoadError(f"not a GGUF file: {path}")
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
                return _Reader(view).metadata()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"corrupt GGUF header in {path}: {exc}") from exc


class _Reader:
    """Walks the header; the byte order is the one that makes the version small."""

    def __init__(self, view: mmap.mmap) -> None:
        self.view = view
        self.offset = len(MAGIC)
        (version,) = struct.unpack_from("<I", view, self.offset)
        self.order = "<" if version < 0x10000 else ">"

    def metadata(self) -> GGUFMetadata:
        version = self._unpack("I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is not supported (2 or later)")
        tensor_count = self._unpack("Q")
        kv_count = self._unpack("Q")
        values: dict[str, MetadataValue] = {}
        for _ in range(kv_count):
            key = self._string()
            values[key] = self._value(self._unpack("I"))
        return GGUFMetadata(version=version, tensor_count=tensor_count, values=values)

    def _unpack(self, code: str) -> int:
        (value,) = struct.unpack_from(self.order + code, self.view, self.offset)
        self.offset += struct.calcsize(code)
        return int(value)

    def _string(self) -> str:
        length = self._unpack("Q")
        end = self.offset + length
        if end > len(self.view):
            raise ValueError("string runs past the end of the file")
        text = self.view[self.offset : end].decode("utf-8")
        self.offset = end
        return text

    def _value(self, kind: int) -> MetadataValue:
        if kind == _STRING:
            return self._string()
        if kind == _ARRAY:
            element = self._unpack("I")
            length = self._unpack("Q")
            items = self._numbers(element, length)
            self._skip_array(element, length)
            return GGUFArray(_TYPE_NAMES.get(element, f"type {element}"), length, items)
        code = _SCALARS.get(kind)
        if code is None:
            raise ValueError(f"unknown value type {kind}")
        (value,) = struct.unpack_from(self.order + code, self.view, self.offset)
        self.offset += struct.calcsize(code)
        return value  # type: ignore[no-any-return]

    def _numbers(self, element: int, length: int) -> tuple[int | float | bool, ...] | None:
        """The values of a short numeric array starting at the offset (which stays put)."""
        code = _SCALARS.get(element)
        if code is None or length > KEPT_ARRAY_LENGTH:
            return None
        return struct.unpack_from(f"{self.order}{length}{code}", self.view, self.offset)

    def _skip_array(self, element: int, length: int) -> None:
        code = _SCALARS.get(element)
        if code is not None:
            self.offset += struct.calcsize(code) * length
        elif element == _STRING:
            for _ in range(length):
                skip = self._unpack("Q")  # read first: it moves the offset past the length
                self.offset += skip
        elif element == _ARRAY:
            for _ in range(length):
                self._skip_array(self._unpack("I"), self._unpack("Q"))
        else:
            raise ValueError(f"unknown array element type {element}")
        if self.offset > len(self.view):
            raise ValueError("array runs past the end of the file")
