"""The tiny generated GGUF loads in llama.cpp, round-trips text and generates deterministically."""

from __future__ import annotations

import time
from pathlib import Path

import llama_cpp
import pytest

from llmserve.engine.model import LlamaModel
from tests.support.tinymodel import BOS_ID, IM_END_ID, build_tiny_gguf

TEXT = "Hello, wörld! 你好 🙂 the model"


def load(path: Path) -> llama_cpp.Llama:
    """Load a GGUF with a small context, quietly."""
    return llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, seed=0)


def greedy(llm: llama_cpp.Llama, prompt: str, n: int = 16) -> list[int]:
    """Generate n tokens greedily from a prompt."""
    tokens = llm.tokenize(prompt.encode(), add_bos=True)
    out: list[int] = []
    for token in llm.generate(tokens, temp=0.0, top_k=1):
        out.append(token)
        if len(out) == n:
            break
    return out


@pytest.fixture(name="tiny")
def fixture_tiny(tiny_gguf: Path) -> llama_cpp.Llama:
    """The session's tiny model, loaded."""
    return load(tiny_gguf)


def test_loads_in_well_under_a_second(tiny_gguf: Path) -> None:
    """Loading the tiny model is fast enough for every test to do it."""
    start = time.perf_counter()
    load(tiny_gguf)
    assert time.perf_counter() - start < 1.0


def test_text_round_trips_exactly(tiny: llama_cpp.Llama) -> None:
    """Any UTF-8 text tokenizes (byte fallback) and detokenizes back exactly."""
    tokens = tiny.tokenize(TEXT.encode(), add_bos=False)
    assert tiny.detokenize(tokens).decode() == TEXT


def test_tokenize_adds_bos(tiny: llama_cpp.Llama) -> None:
    """The vocabulary asks for BOS at the start of a prompt."""
    assert tiny.tokenize(b"hi", add_bos=True)[0] == tiny.token_bos()


def test_eos_and_im_end_are_end_of_generation(tiny: llama_cpp.Llama) -> None:
    """EOS and the ChatML end marker are EOG tokens."""
    vocab = tiny._model.vocab
    assert llama_cpp.llama_vocab_is_eog(vocab, tiny.token_eos())
    assert llama_cpp.llama_vocab_is_eog(vocab, IM_END_ID)


def test_greedy_generation_is_deterministic_across_loads(tiny_gguf: Path) -> None:
    """Two loads of the same file generate the same greedy tokens."""
    assert greedy(load(tiny_gguf), "The cat") == greedy(load(tiny_gguf), "The cat")


def test_greedy_generation_never_ends_on_its_own(tiny: llama_cpp.Llama) -> None:
    """Control tokens have zero logits, so greedy decoding runs to the token limit."""
    vocab = tiny._model.vocab
    tokens = greedy(tiny, "The cat", n=64)
    assert len(tokens) == 64
    assert not any(llama_cpp.llama_vocab_is_eog(vocab, t) for t in tokens)


def test_same_seed_builds_identical_files(tmp_path: Path) -> None:
    """The builder is deterministic: one seed, one file."""
    a = build_tiny_gguf(tmp_path / "a.gguf", seed=3).read_bytes()
    b = build_tiny_gguf(tmp_path / "b.gguf", seed=3).read_bytes()
    assert a == b


def test_chat_template_is_stored_in_metadata(tmp_path: Path) -> None:
    """A chat template given to the builder is the model's tokenizer.chat_template."""
    path = build_tiny_gguf(tmp_path / "chat.gguf", chat_template="{{ messages }}")
    assert load(path).metadata["tokenizer.chat_template"] == "{{ messages }}"


def test_sliding_window_builds_a_gemma3_model_with_that_window(tmp_path: Path) -> None:
    """sliding_window=N: a Gemma 3 model llama.cpp loads with an N-position window."""
    path = build_tiny_gguf(tmp_path / "swa.gguf", sliding_window=64)
    model = LlamaModel(path)
    try:
        assert (model.facts.architecture, model.facts.n_swa) == ("gemma3", 64)
        assert model.tokenize("hello world", add_special=True)[0] == BOS_ID
    finally:
        model.close()
