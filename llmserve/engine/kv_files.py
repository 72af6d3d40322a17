"""The prefix cache's file format: MAGIC, u32 header length, JSON header, int32 tokens, state.

The header carries the cache identity (model file, llama-cpp-python version, KV layout), the
entry's token count, first held position, state size and the state's sha256: a reader checks
all of it before a state reaches llama.cpp. A file's name is a hash of the identity and the
tokens, so two processes saving the same entry write the same name, and two models' entries
never share one.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

MAGIC = b"LLMSKV01"
SUFFIX = ".kv"
_HEADER_LEN = struct.Struct("<I")


def file_name(identity: str, tokens: Sequence[int]) -> str:
    """The name of an entry's file: the same in every process serving the same identity."""
    digest = hashlib.sha256(identity.encode())
    digest.update(repr(tuple(tokens)).encode())
    return digest.hexdigest() + SUFFIX


def write_entry(
    path: Path, identity: str, tokens: Sequence[int], pos_min: int, data: bytearray
) -> None:
    """Write one entry's file at ``path`` (the caller renames it into place)."""
    header = json.dumps(
        {
            "identity": identity,
            "n_tokens": len(tokens),
            "pos_min": pos_min,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    ).encode()
    with path.open("wb") as f:
        f.write(MAGIC)
        f.write(_HEADER_LEN.pack(len(header)))
        f.write(header)
        f.write(struct.pack(f"<{len(tokens)}i", *tokens))
        f.write(data)


def _read_header_from(f: BinaryIO) -> tuple[dict[str, object], list[int]]:
    read = f.read
    if read(len(MAGIC)) != MAGIC:
        raise ValueError("not a prefix cache file")
    (length,) = _HEADER_LEN.unpack(read(_HEADER_LEN.size))
    header = json.loads(read(length))
    n = int(header["n_tokens"])
    raw = read(4 * n)
    if len(raw) != 4 * n:
        raise ValueError("truncated tokens")
    return header, list(struct.unpack(f"<{n}i", raw))


def read_header(path: Path) -> tuple[dict[str, object], list[int]]:
    with path.open("rb") as f:
        return _read_header_from(f)


def read_entry(path: Path) -> tuple[dict[str, object], list[int], bytearray]:
    with path.open("rb") as f:
        header, tokens = _read_header_from(f)
        data = bytearray(int(str(header["size"])))
        if f.readinto(data) != len(data) or f.read(1):
            raise ValueError("truncated or oversized state")
    if hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise ValueError("checksum mismatch")
    return header, tokens, data
