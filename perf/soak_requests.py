"""Random requests for the soak: one ``RequestMaker`` per client, seeded, so a run can be replayed.

A client mostly carries on a multi-turn chat whose system prompt comes from a small shared pool,
so its turns hit the prefix cache and the clients' histories compete for a small cache budget
(eviction, spill to disk, disk hits). Mixed in: one-shot completions, streamed or not, n > 1,
``json_object`` answers, logprobs, stop strings, seeds; streams the client cuts after a few
chunks and non-streamed requests it abandons (disconnects); and bad requests that must come
back as a 4xx in the OpenAI error envelope.

Pure: no I/O. The HTTP side is ``perf/soak_client.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from perf.conversations import system_prompt, user_message

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"

# (seed, words) of the system prompts the clients share: a few, of different lengths, so that
# conversations of different clients start with the same tokens and cached states are reused
# across clients. ~1.3 tokens a word with the demo model.
SYSTEM_POOL: tuple[tuple[int, int], ...] = ((9001, 120), (9002, 260), (9003, 400), (9004, 260))
MAX_TURNS = 4  # then the conversation starts over: prompts stay far below the context
STOP_CHOICES = (".", "\n", " the", " and", "?", ",")


@dataclass(frozen=True)
class SoakRequest:
    """One request a client sends, and what it means to do with the answer."""

    kind: str  # label for the report: "chat", "completion", "json", "bad:<what>"...
    path: str
    body: dict[str, Any] | None  # None: ``raw`` is sent instead
    raw: bytes | None = None  # a malformed body, sent as is
    stream: bool = False
    cut_after: int | None = None  # streamed: hang up after this many events
    abandon_after_s: float | None = None  # not streamed: hang up after this long
    bad: bool = False  # must be answered with a 4xx error envelope
    turn: bool = False  # a turn of the client's conversation: its answer joins the history

    @property
    def disconnects(self) -> bool:
        return self.cut_after is not None or self.abandon_after_s is not None


@dataclass
class _Chat:
    system: tuple[int, int]
    user_seed: int
    messages: list[dict[str, str]] = field(default_factory=list)


def _bad_requests(model: str, parallel: int) -> dict[str, tuple[str, dict[str, Any] | bytes]]:
    """Requests every OpenAI-compatible server must refuse with a 4xx, by label."""
    hello = [{"role": "user", "content": "hello"}]
    chat = {"model": model, "messages": hello, "max_tokens": 4}
    completion = {"model": model, "prompt": "The model server", "max_tokens": 4}
    return {
        "temperature": (CHAT, {**chat, "temperature": -1}),
        "max_tokens": (CHAT, {**chat, "max_tokens": -3}),
        "n_over_slots": (CHAT, {**chat, "n": parallel + 1}),
        "top_logprobs": (CHAT, {**chat, "logprobs": True, "top_logprobs": 21}),
        "no_messages": (CHAT, {**chat, "messages": []}),
        "role": (CHAT, {**chat, "messages": [{"role": "wizard", "content": "hi"}]}),
        "too_many_stops": (CHAT, {**chat, "stop": [f"s{i}" for i in range(65)]}),
        "response_format": (CHAT, {**chat, "response_format": {"type": "xml"}}),
        "schema_keyword": (
            CHAT,
            {
                **chat,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 3}},
                },
            },
        ),
        "completion_logprobs": (COMPLETIONS, {**completion, "logprobs": 6}),
        "echo_logprobs": (COMPLETIONS, {**completion, "echo": True, "logprobs": 1}),
        "no_prompt": (COMPLETIONS, {"model": model, "max_tokens": 4}),
        "malformed_json": (CHAT, b'{"model": "x", "messages": [{"role": "user", "cont'),
    }


JSON_TOPICS = ("a train", "a library book", "a bicycle", "a ferry ticket")


def json_body(model: str, seed: int, topic: str = JSON_TOPICS[0]) -> dict[str, Any]:
    """A ``json_object`` chat request (48 tokens at temperature 1 unless overridden)."""
    messages = [
        {"role": "system", "content": "You answer with one JSON object."},
        {"role": "user", "content": f"Describe {topic} as JSON with a few fields."},
    ]
    return {
        "model": model,
        "messages": messages,
        "response_format": {"type": "json_object"},
        "max_tokens": 48,
        "temperature": 1.0,
        "seed": seed,
    }


class RequestMaker:
    """The random request stream of one client; ``answered`` feeds its conversation."""

    def __init__(
        self,
        rng: random.Random,
        model: str,
        *,
        parallel: int,
        bad_share: float = 0.07,
        cut_share: float = 0.2,
        abandon_share: float = 0.05,
    ) -> None:
        self.rng = rng
        self.model = model
        self.parallel = parallel
        self.bad_share = bad_share
        self.cut_share = cut_share
        self.abandon_share = abandon_share
        self._bad = _bad_requests(model, parallel)
        self._chat = self._new_chat()

    # --- the conversation -------------------------------------------------------------

    def _new_chat(self) -> _Chat:
        system = self.rng.choice(SYSTEM_POOL)
        # Few user seeds per system prompt: clients often ask the same first question of the
        # same system prompt, so whole first turns are shared, not only the system prompt.
        chat = _Chat(system=system, user_seed=system[0] * 10 + self.rng.randrange(3))
        chat.messages.append({"role": "system", "content": system_prompt(*system)})
        chat.messages.append({"role": "user", "content": user_message(chat.user_seed, 1)})
        return chat

    def answered(self, text: str) -> None:
        """The assistant's answer to the last turn: it joins the history, a new question follows.

        After MAX_TURNS the client starts another conversation.
        """
        chat = self._chat
        turns = sum(m["role"] == "user" for m in chat.messages)
        if turns >= MAX_TURNS:
            self._chat = self._new_chat()
            return
        chat.messages.append({"role": "assistant", "content": text})
        chat.messages.append({"role": "user", "content": user_message(chat.user_seed, turns + 1)})

    @property
    def history(self) -> list[dict[str, str]]:
        return [dict(m) for m in self._chat.messages]

    # --- requests ---------------------------------------------------------------------

    def next(self) -> SoakRequest:
        rng = self.rng
        if rng.random() < self.bad_share:
            return self._bad_request()
        roll = rng.random()
        if roll < 0.6:
            request = self._turn()
        elif roll < 0.7:
            request = self._json_object()
        else:
            request = self._completion()
        return self._maybe_disconnect(request)

    def _sampling(self) -> dict[str, Any]:
        """Random sampling parameters, all valid."""
        rng = self.rng
        body: dict[str, Any] = {
            "max_tokens": rng.randint(1, 40),
            "temperature": rng.choice([0.0, 0.0, 0.3, 0.7, 1.0, 1.5]),
        }
        if rng.random() < 0.5:
            body["top_p"] = rng.choice([0.5, 0.9, 1.0])
        if rng.random() < 0.6:
            body["seed"] = rng.randrange(1 << 31)
        if rng.random() < 0.25:
            body["stop"] = rng.sample(STOP_CHOICES, rng.randint(1, 3))
        if rng.random() < 0.15:
            body["top_k"] = rng.choice([1, 10, 40])
        if rng.random() < 0.15:
            body["presence_penalty"] = rng.choice([-0.5, 0.0, 0.8])
            body["frequency_penalty"] = rng.choice([0.0, 0.5, 1.2])
        if rng.random() < 0.15:
            body["n"] = rng.randint(2, self.parallel) if self.parallel > 1 else 1
        return body

    def _streaming(self, body: dict[str, Any]) -> bool:
        stream = self.rng.random() < 0.5
        if stream:
            body["stream"] = True
            if self.rng.random() < 0.5:
                body["stream_options"] = {"include_usage": True}
        return stream

    def _turn(self) -> SoakRequest:
        body: dict[str, Any] = {"model": self.model, "messages": self.history, **self._sampling()}
        if self.rng.random() < 0.15:
            body["logprobs"] = True
            body["top_logprobs"] = self.rng.randint(0, 5)
        stream = self._streaming(body)
        return SoakRequest(kind="chat", path=CHAT, body=body, stream=stream, turn=True)

    def _json_object(self) -> SoakRequest:
        topic = self.rng.choice(JSON_TOPICS)
        body = {**json_body(self.model, 0, topic), **self._sampling()}
        body.pop("stop", None)  # a stop string would cut the object short: only length may
        body["max_tokens"] = self.rng.randint(8, 48)
        stream = self._streaming(body)
        return SoakRequest(kind="json", path=CHAT, body=body, stream=stream)

    def _completion(self) -> SoakRequest:
        rng = self.rng
        seed, words = rng.choice(SYSTEM_POOL)
        prompt = system_prompt(seed, words) if rng.random() < 0.5 else user_message(seed, 1)
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, **self._sampling()}
        roll = rng.random()
        if roll < 0.15:
            body["logprobs"] = rng.randint(0, 5)
        elif roll < 0.2:
            body["echo"] = True
            body.pop("stop", None)  # the echoed prompt may hold a stop string
        stream = self._streaming(body)
        return SoakRequest(kind="completion", path=COMPLETIONS, body=body, stream=stream)

    def _maybe_disconnect(self, request: SoakRequest) -> SoakRequest:
        rng = self.rng
        if request.stream and rng.random() < self.cut_share:
            return replace(request, cut_after=rng.randint(0, 6), turn=False)
        if not request.stream and rng.random() < self.abandon_share:
            return replace(request, abandon_after_s=rng.uniform(0.05, 1.5), turn=False)
        return request

    def _bad_request(self) -> SoakRequest:
        label = self.rng.choice(sorted(self._bad))
        path, body = self._bad[label]
        if isinstance(body, bytes):
            return SoakRequest(kind=f"bad:{label}", path=path, body=None, raw=body, bad=True)
        stream = self.rng.random() < 0.3
        sent = {**body, "stream": True} if stream else dict(body)
        return SoakRequest(kind=f"bad:{label}", path=path, body=sent, stream=stream, bad=True)
