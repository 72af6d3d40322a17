"""perf/agent_replay.py: its sessions are shaped as Claude Code's are."""

from __future__ import annotations

from typing import Any

from perf.agent_replay import CACHE_CONTROL, TOOL_NAMES, session_body


def system_text(body: dict[str, Any]) -> str:
    return "\n".join(block["text"] for block in body["system"])


def test_sessions_differ_only_in_the_billing_line_and_the_task() -> None:
    """Two sessions share the system prompt after its first block, and all the tools."""
    first, second = session_body(0, 0, True), session_body(1, 0, True)
    assert first["system"][0] != second["system"][0]
    assert first["system"][1:] == second["system"][1:]
    assert first["system"][0]["text"].startswith("x-anthropic-billing-header: ")
    assert first["tools"] == second["tools"]
    assert [t["name"] for t in first["tools"]] == list(TOOL_NAMES)


def test_the_instructions_and_the_last_tool_are_marked_as_claude_code_marks_them() -> None:
    """cache_control on the stable system block and the last tool; nowhere else."""
    body = session_body(0, 2, True)
    assert [block.get("cache_control") for block in body["system"]] == [None, CACHE_CONTROL]
    assert [tool.get("cache_control") for tool in body["tools"]] == [None] * (
        len(TOOL_NAMES) - 1
    ) + [CACHE_CONTROL]
    assert "cache_control" not in str(body["messages"])


def test_each_turn_appends_a_tool_use_and_its_result() -> None:
    """Turn k carries k tool_use / tool_result pairs after the first user message."""
    body = session_body(2, 3, True)
    assert len(body["messages"]) == 1 + 2 * 3
    uses = [m["content"][0] for m in body["messages"][1::2]]
    results = [m["content"][0] for m in body["messages"][2::2]]
    assert [u["type"] for u in uses] == ["tool_use"] * 3
    assert [r["tool_use_id"] for r in results] == [u["id"] for u in uses]


def test_tools_go_in_the_system_text_for_a_peer_that_refuses_them() -> None:
    """Without structured tools the same definitions are in the system prompt."""
    body = session_body(0, 0, False)
    assert "tools" not in body
    assert all(name in system_text(body) for name in TOOL_NAMES)
