"""A loaded GGUF model: llama.cpp handles, vocabulary, metadata, tokens to and from text."""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path

import llama_cpp
from attrs import frozen

from llmserve.errors import ModelLoadError

_LLAMA_LOG = logging.getLogger("llama.cpp")
# ggml.h's levels: 1 debug, 2 info, 3 warn, 4 error, 5 continuation of the previous line.
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_BYTE_COVERING_VOCABS = frozenset({llama_cpp.LLAMA_VOCAB_TYPE_SPM, llama_cpp.LLAMA_VOCAB_TYPE_BPE})


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    # llama.cpp prints plain lines to stderr by default; ours go through the JSON logs.
    # Continuations and chatty info lines are debug: only warnings and errors show at info.
    py_level = _GGML_LEVELS.get(level, logging.DEBUG)
    if py_level == logging.INFO:
        py_level = logging.DEBUG
    if _LLAMA_LOG.isEnabledFor(py_level):
        message = text.decode("utf-8", errors="replace").strip()
        if message:
            _LLAMA_LOG.log(py_level, message)


class _LoadErrors(logging.Handler):
    """Collects the first llama.cpp error logged by this thread while installed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread = threading.get_ident()
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and self.first is None:
            self.first = record.getMessage()

    def __enter__(self) -> _LoadErrors:
        _LLAMA_LOG.addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        _LLAMA_LOG.removeHandler(self)


_backend_ready = False


def _init_backend() -> None:
    global _backend_ready  # llama_backend_init must run once per process, not per model
    if not _backend_ready:
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _backend_ready = True


@frozen
class ModelFacts:
    """What the server needs to know about a model without touching llama.cpp again."""

    path: Path
    architecture: str
    n_ctx_train: int
    n_vocab: int
    n_swa: int  # sliding-window size, 0 when the model has none
    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool
    size_bytes: int


class LlamaModel:
    """Owns a ``llama_model``; tokenizes and detokenizes with its vocabulary (thread-safe)."""

    def __init__(self, path: Path, *, n_gpu_layers: int = 0, main_gpu: int | None = None) -> None:
        """``main_gpu``: put the whole model (and so its contexts' KV) on that GPU alone
        (split mode none); None: llama.cpp's default, layers split across every GPU."""
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelLoadError(f"not a GGUF file: {path}")
        _init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        if main_gpu is not None:
            params.split_mode = llama_cpp.LLAMA_SPLIT_MODE_NONE
            params.main_gpu = main_gpu
        with _LoadErrors() as errors:
            model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            # llama.cpp says why only in its log ("tensor ... data is not within the file
            # bounds, model is corrupted or incomplete"): the user gets that line too.
            reason = f" ({errors.first})" if errors.first else ""
            raise ModelLoadError(f"llama.cpp failed to load the model: {path}{reason}")
        self.ptr = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.bos = llama_cpp.llama_vocab_bos(self.vocab)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        # Fill-in-the-middle tokens (prefix, suffix, middle); -1 where the model has none.
        self.fim = (
            llama_cpp.llama_vocab_fim_pre(self.vocab),
            llama_cpp.llama_vocab_fim_suf(self.vocab),
            llama_cpp.llama_vocab_fim_mid(self.vocab),
        )
        self.n_embd = llama_cpp.llama_model_n_embd(model)
        self._longest_token_bytes: int | None = None  # see fewest_tokens
        self.facts = ModelFacts(
            path=path,
            architecture=self.meta("general.architecture") or "unknown",
            n_ctx_train=llama_cpp.llama_model_n_ctx_train(model),
            n_vocab=self.n_vocab,
            n_swa=llama_cpp.llama_model_n_swa(model),
            chat_template=self.meta("tokenizer.chat_template"),
            bos_token=self.token_text(self.bos),
            eos_token=self.token_text(self.eos),
            add_bos=self.add_bos,
            size_bytes=path.stat().st_size,
        )

    def meta(self, key: str) -> str | None:
        """A metadata value as a string, or None when the GGUF lacks the key."""
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        text = llama_cpp.llama_vocab_get_text(self.vocab, token)
        return text.decode("utf-8", errors="replace") if text else ""

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), tokens, capacity, add_special, parse_special
        )
        if n < 0:  # the buffer was too small: -n is the size needed
            capacity = -n
            tokens = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), tokens, capacity, add_special, parse_special
            )
        out = tokens[:n]
        # Templates that render bos_token themselves plus the tokenizer's own BOS give two.
        if len(out) >= 2 and out[0] == self.bos and out[1] == self.bos:
            del out[0]
        return out

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token as generated output (control tokens render empty unless
        ``special``)."""
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def valid_token(self, token: int) -> bool:
        return 0 <= token < self.n_vocab

    def fewest_tokens(self, n_bytes: int) -> int:
        """A lower bound on the tokens of ``n_bytes`` of UTF-8 text, known without tokenizing.

        llama.cpp's special-token pass is quadratic in the specials a text holds (a 1 MB chat
        of tiny turns takes many seconds), so an over-long prompt is best refused unseen. With
        SentencePiece and byte-level BPE every input byte lands in exactly one token, whose text
        is at least as long as the bytes it covers; other vocabularies may drop or fold input
        (WordPiece strips spaces), so they get no bound (0).
        """
        if llama_cpp.llama_vocab_type(self.vocab) not in _BYTE_COVERING_VOCABS:
            return 0
        if self._longest_token_bytes is None:
            # One pass over the vocabulary (~0.2 s for 262k tokens), on the first long prompt.
            self._longest_token_bytes = max(
                len(llama_cpp.llama_vocab_get_text(self.vocab, t) or b"")
                for t in range(self.n_vocab)
            )
        return -(-n_bytes // max(self._longest_token_bytes, 1))

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None
