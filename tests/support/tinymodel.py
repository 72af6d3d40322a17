"""A tiny llama-architecture GGUF, built at test time: fast, deterministic, no download.

Random f32 weights from a seeded RNG and a small real SentencePiece-style vocabulary: control
tokens, all 256 byte-fallback tokens ``<0x00>``..``<0xFF>``, printable ASCII, ``▁`` and a few
hundred English word pieces. Any UTF-8 text tokenizes (unknown characters fall back to bytes)
and detokenizes back exactly (``add_space_prefix`` is off, as in Gemma's vocabulary).

The output rows of the control tokens are zero, so greedy decoding never picks one (every other
logit of a random model is nonzero and the maximum is positive): generation runs to
``max_tokens`` unless a test steers it to EOS with a logit bias.

``sliding_window=N`` builds the same model in Gemma 3's architecture instead, every layer
attending to the last N positions only: the sliding-window KV cache of the demo model, whose
saved states cannot be cut back (see DESIGN.md), at the tiny model's speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gguf
import numpy as np

ARCH = "llama"
SWA_ARCH = "gemma3"  # build_tiny_gguf(sliding_window=N)
N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX_TRAIN = 2048

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CONTROL_TOKENS = (UNK, BOS, EOS, IM_START, IM_END)
UNK_ID, BOS_ID, EOS_ID, IM_START_ID, IM_END_ID = range(len(CONTROL_TOKENS))

SPACE = "\u2581"  # SentencePiece's visible space
# Fill-in-the-middle tokens, appended to the vocabulary by ``build_tiny_gguf(fim=True)``.
FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")

_WORD_TEXT = """
the of and to in is you that it he was for on are as with his they at be this have from or
one had by word but not what all were we when your can said there use an each which she do how
their if will up other about out many then them these so some her would make like him into time
has look two more write go see number no way could people my than first water been call who oil
its now find long down day did get come made may part over new sound take only little work know
place year live me back give most very after thing our just name good sentence man think say
great where help through much before line right too mean old any same tell boy follow came want
show also around form three small set put end does another well large must big even such because
turn here why ask went men read need land different home us move try kind hand picture again
change off play spell air away animal house point page letter mother answer found study still
learn should world hello model server token cache request stream test chat user assistant system
"""
WORDS = tuple(_WORD_TEXT.split())


def _vocabulary(
    fim: bool = False, words: Sequence[str] = WORDS
) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the tiny SentencePiece vocabulary."""
    tokens: list[str] = list(CONTROL_TOKENS)
    types: list[int] = [gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * 4
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    # Every prefix of every word piece is a token too, so SentencePiece's pairwise merges can
    # always grow a word from its characters.
    pieces: dict[str, None] = dict.fromkeys([SPACE, *map(chr, range(33, 127))])
    for word in words:
        for piece in (SPACE + word, word):
            for end in range(2, len(piece) + 1):
                pieces.setdefault(piece[:end])
    tokens += list(pieces)
    types += [gguf.TokenType.NORMAL] * len(pieces)
    # Longer pieces merge first, as in a trained model.
    scores = [0.0] * (len(CONTROL_TOKENS) + 256) + [float(len(p)) for p in pieces]
    if fim:
        tokens += FIM_TOKENS
        types += [gguf.TokenType.CONTROL] * len(FIM_TOKENS)
        scores += [0.0] * len(FIM_TOKENS)
    return tokens, scores, [int(t) for t in types]


def build_tiny_gguf(
    path: Path,
    *,
    chat_template: str | None = None,
    seed: int = 0,
    context_length: int = N_CTX_TRAIN,
    fim: bool = False,
    sliding_window: int = 0,
    words: Sequence[str] = WORDS,
) -> Path:
    """Write the tiny model to ``path`` (deterministic for a given seed) and return the path.

    ``context_length`` is the trained context, which bounds a sequence's context. ``fim``
    appends fill-in-the-middle tokens (every other token keeps its id). ``sliding_window``:
    a Gemma 3 model whose layers all attend to that many positions (0: llama, no window).
    ``words`` in another order give another vocabulary of the same size (the word pieces get
    other ids).
    """
    tokens, scores, types = _vocabulary(fim, words)
    n_vocab = len(tokens)
    head_dim = N_EMBD // N_HEAD
    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 0.5) -> np.ndarray:
        # numpy shape is (rows, cols); GGUF stores it reversed, which is what llama.cpp expects.
        return (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)

    arch = SWA_ARCH if sliding_window else ARCH
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name("llmserve tiny test model")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(context_length)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    if sliding_window:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
        writer.add_sliding_window(sliding_window)

    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(UNK_ID)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_eot_token_id(IM_END_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    if fim:
        first = n_vocab - len(FIM_TOKENS)
        writer.add_uint32(gguf.Keys.Tokenizer.FIM_PRE_ID, first)
        writer.add_uint32(gguf.Keys.Tokenizer.FIM_SUF_ID, first + 1)
        writer.add_uint32(gguf.Keys.Tokenizer.FIM_MID_ID, first + 2)

    # Embeddings scaled up so the hidden state differs token to token: generation varies.
    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD, scale=8.0))
    for i in range(N_LAYER):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{blk}.attn_q.weight", weight(N_HEAD * head_dim, N_EMBD))
        writer.add_tensor(f"{blk}.attn_k.weight", weight(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(f"{blk}.attn_v.weight", weight(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(f"{blk}.attn_output.weight", weight(N_EMBD, N_HEAD * head_dim))
        writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{blk}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_down.weight", weight(N_EMBD, N_FF))
        if sliding_window:  # Gemma 3's extra norms
            writer.add_tensor(f"{blk}.attn_q_norm.weight", np.ones(head_dim, dtype=np.float32))
            writer.add_tensor(f"{blk}.attn_k_norm.weight", np.ones(head_dim, dtype=np.float32))
            for norm in ("post_attention_norm", "post_ffw_norm"):
                writer.add_tensor(f"{blk}.{norm}.weight", np.ones(N_EMBD, dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    output = weight(n_vocab, N_EMBD, scale=8.0)
    output[: len(CONTROL_TOKENS)] = 0.0
    if fim:
        output[-len(FIM_TOKENS) :] = 0.0  # control tokens are never generated
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
