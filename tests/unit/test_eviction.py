"""Eviction policies against simple reference models (hypothesis state machines)."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmserve.engine.eviction import FIFO, LFU, LRU, EvictionPolicy, make_policy

KEYS = st.integers(min_value=0, max_value=12)


class PolicyMachine(RuleBasedStateMachine):
    """Drives a policy and a list-based reference with the same calls."""

    policy_name = "lru"

    def __init__(self) -> None:
        super().__init__()
        self.policy: EvictionPolicy = make_policy(self.policy_name)  # type: ignore[arg-type]
        self.present: list[int] = []  # insertion order
        self.last_use: dict[int, int] = {}
        self.uses: dict[int, int] = {}
        self.clock = 0

    def _use(self, key: int) -> None:
        self.clock += 1
        self.last_use[key] = self.clock
        self.uses[key] = self.uses.get(key, 0) + 1

    @rule(key=KEYS)
    def insert(self, key: int) -> None:
        if key in self.present:
            return
        self.policy.insert(key)
        self.present.append(key)
        self.uses[key] = 0
        self._use(key)

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def touch(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.present))
        self.policy.touch(key)
        self._use(key)

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.present))
        self.policy.remove(key)
        self.present.remove(key)
        del self.last_use[key], self.uses[key]

    @precondition(lambda self: self.present)
    @rule()
    def evict(self) -> None:
        key = self.policy.victim()
        assert key == self.expected_victim()
        self.policy.remove(key)
        self.present.remove(key)
        del self.last_use[key], self.uses[key]

    def expected_victim(self) -> int:
        raise NotImplementedError

    @invariant()
    def victim_matches_reference(self) -> None:
        if self.present:
            assert self.policy.victim() == self.expected_victim()


class LRUMachine(PolicyMachine):
    policy_name = "lru"

    def expected_victim(self) -> int:
        return min(self.present, key=lambda k: self.last_use[k])


class LFUMachine(PolicyMachine):
    policy_name = "lfu"

    def expected_victim(self) -> int:
        return min(self.present, key=lambda k: (self.uses[k], self.last_use[k]))


class FIFOMachine(PolicyMachine):
    policy_name = "fifo"

    def expected_victim(self) -> int:
        return self.present[0]


# Small runs keep the unit suite fast; the machines still reach every rule order.
for machine in (LRUMachine, LFUMachine, FIFOMachine):
    machine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)

TestLRUMatchesReference = LRUMachine.TestCase
TestLFUMatchesReference = LFUMachine.TestCase
TestFIFOMatchesReference = FIFOMachine.TestCase


def test_make_policy_builds_each_named_policy() -> None:
    """The config names map to their classes."""
    assert isinstance(make_policy("lru"), LRU)
    assert isinstance(make_policy("lfu"), LFU)
    assert isinstance(make_policy("fifo"), FIFO)


def test_eviction_module_does_not_import_llama_cpp() -> None:
    """The policies are pure Python: importing them never loads llama_cpp."""
    code = "import sys, llmserve.engine.eviction; print('llama_cpp' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"
