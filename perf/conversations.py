"""Deterministic chat conversations for the multi-turn workloads: a long system prompt, short
user turns, and the history that grows with the assistant's answers.

Every conversation's text comes from its own seed, so conversations never share more than the
chat template's opening tokens: turn 1 of each is a cold prompt, and only the history of the same
conversation can come from a prefix cache. The same seeds give every server the same text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# About 1.3 tokens a word with the demo model's tokenizer: 540 words make ~700 tokens.
SYSTEM_WORDS = 540

_NAMES = (
    "Aurora", "Basil", "Cedar", "Delphine", "Emrys", "Fennel", "Galen", "Hazel", "Idris", "Juniper",
    "Kestrel", "Linden", "Marlow", "Nerys", "Orrin", "Piper", "Quill", "Rowan", "Sorrel", "Tamsin",
)  # fmt: skip
_ORGS = (
    "a regional railway company", "a public library network", "a bicycle repair cooperative",
    "a mountain weather service", "a seed bank for rare vegetables", "a harbour authority",
    "a small observatory", "a community bakery", "a museum of printing", "a ferry operator",
)  # fmt: skip
_TOPICS = (
    "refunds", "opening hours", "lost property", "group bookings", "accessibility",
    "membership fees", "delivery times", "safety rules", "school visits", "volunteering",
    "gift vouchers", "parking", "repairs", "seasonal timetables", "photography permits",
    "late returns", "pets", "allergies", "large parcels", "private events",
)  # fmt: skip
_ACTIONS = (
    "explain", "summarise", "check", "confirm", "describe", "point out", "clarify", "repeat",
)  # fmt: skip
_ADJECTIVES = (
    "current", "written", "official", "simplest", "cheapest", "earliest", "nearest", "seasonal",
    "detailed", "short", "monthly", "printed",
)  # fmt: skip
_NOUNS = (
    "policy", "timetable", "form", "price list", "contact address", "deadline", "exception",
    "receipt", "waiting list", "map", "checklist", "guarantee", "phone line", "notice board",
)  # fmt: skip
_TONES = (
    "Keep answers short and friendly.", "Never invent prices or dates.",
    "Ask one question at a time when something is unclear.", "Use plain words, not jargon.",
    "Apologise once, not repeatedly.", "Offer the next step at the end of each answer.",
)  # fmt: skip
_QUESTIONS = (
    "What do I need to know about {topic}?", "Can you tell me more about the {noun}?",
    "Is there an exception for {topic} this month?", "Who do I contact about {topic}?",
    "How long does it usually take to sort out {topic}?", "Where can I find the {adj} {noun}?",
    "Could you summarise that in one sentence?", "What happens if I miss the {noun}?",
)  # fmt: skip


def _rule(rng: random.Random, number: int) -> str:
    return (
        f"Rule {number}: when someone asks about {rng.choice(_TOPICS)}, "
        f"{rng.choice(_ACTIONS)} the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} and mention "
        f"the {rng.choice(_NOUNS)} for {rng.choice(_TOPICS)}. {rng.choice(_TONES)}"
    )


def system_prompt(seed: int, words: int = SYSTEM_WORDS) -> str:
    """A varied, deterministic system prompt of at least ``words`` words.

    Its first sentence names an assistant, an organisation and the seed, so two conversations
    share at most a few words: turn 1 of each gets nothing from another's cache entry.
    """
    rng = random.Random(f"system-{seed}")
    parts = [
        f"{rng.choice(_NAMES)} is the assistant of {rng.choice(_ORGS)}, number {seed}.",
        "Answer the customer's questions using the rules below.",
    ]
    count = sum(len(p.split()) for p in parts)
    while count < words:
        rule = _rule(rng, len(parts) - 1)
        parts.append(rule)
        count += len(rule.split())
    return " ".join(parts)


def user_message(seed: int, turn: int) -> str:
    """The user's message of ``turn`` (1-based) in conversation ``seed``: short and distinct."""
    rng = random.Random(f"user-{seed}-{turn}")
    question = rng.choice(_QUESTIONS).format(
        topic=rng.choice(_TOPICS), noun=rng.choice(_NOUNS), adj=rng.choice(_ADJECTIVES)
    )
    return f"Question {turn}: {question}"


@dataclass
class Conversation:
    """One chat's history: each turn re-sends all of it, with the assistant's earlier answers."""

    seed: int
    messages: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.messages:
            self.messages.append({"role": "system", "content": system_prompt(self.seed)})

    @property
    def turns_asked(self) -> int:
        return sum(m["role"] == "user" for m in self.messages)

    def ask(self) -> list[dict[str, str]]:
        """Add the next user message; returns the whole history to send."""
        turn = self.turns_asked + 1
        self.messages.append({"role": "user", "content": user_message(self.seed, turn)})
        return list(self.messages)

    def answer(self, text: str) -> None:
        """Record the assistant's streamed answer, as a client would send it back."""
        self.messages.append({"role": "assistant", "content": text})


def conversation_seeds(round_index: int, workload: str, count: int) -> list[int]:
    """Seeds distinct across rounds and workloads, identical for every server of one round.

    A server restarted for the next round must not find turn 1 in a (disk) cache it kept.
    """
    base = {"multiturn": 1000, "interleaved": 2000}.get(workload, 3000)
    return [base + round_index * 100 + index for index in range(count)]
