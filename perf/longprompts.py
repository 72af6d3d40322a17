"""Long distinct prompts for the prefill and mixed workloads, and their exact token counts.

The text is ``conversations.system_prompt``'s rule list (varied, deterministic), opened by a line
naming its seed, so two prompts share at most a handful of tokens and no prefix cache helps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perf.conversations import system_prompt

# Measured on the demo model's tokenizer: 784 words are 988 tokens, 2301 are 2920.
TOKENS_PER_WORD = 1.27
SEED_BASE = {"prefill": 4000, "mixed": 5000}


def long_prompt(seed: int, tokens: int) -> str:
    """A prompt of about ``tokens`` tokens (within a few percent on the demo model)."""
    words = max(1, round(tokens / TOKENS_PER_WORD))
    return f"Document {seed}.\n{system_prompt(seed, words)}"


def prompt_seed(workload: str, round_index: int, index: int) -> int:
    """Distinct across workloads and rounds (a restarted server's disk cache cannot help)."""
    return SEED_BASE[workload] + round_index * 100 + index


class TokenCounter:
    """Counts prompt tokens with the model's own tokenizer, for servers that stream no usage.

    llama-cpp-python loads only the vocabulary (``vocab_only``): under a second, no weights.
    The count includes BOS, as a /v1/completions prompt does.
    """

    def __init__(self, model_path: Path) -> None:
        self._model_path = model_path
        self._llama: Any = None
        self._counts: dict[str, int] = {}

    def count(self, text: str) -> int:
        if text not in self._counts:
            self._counts[text] = len(self._tokenizer().tokenize(text.encode(), add_bos=True))
        return self._counts[text]

    def _tokenizer(self) -> Any:
        if self._llama is None:
            import llama_cpp  # the bench extra; only the long-prompt workloads need it

            self._llama = llama_cpp.Llama(
                model_path=str(self._model_path), vocab_only=True, verbose=False
            )
        return self._llama
