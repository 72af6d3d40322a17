"""perf/agent_replay.py: its sessions are shaped as Claude Code's are."""

from __future__ import annotations

from perf.agent_replay import TOOL_NAMES, session_body


def test_sessions_differ_only_in_the_billing_line_and_the_task() -> None:
    """Two sessions share the system prompt after its first line, and all the tools."""
    first, second = session_body(0, 0, True), session_body(1, 0, True)
    assert first["system"].split("\n", 1)[0] != second["system"].split("\n", 1)[0]
    assert first["system"].split("\n", 1)[1] == second["system"].split("\n", 1)[1]
    assert first["system"].startswith("x-anthropic-billing-header: ")
    assert first["tools"] == second["tools"]
    assert [t["name"] for t in first["tools"]] == list(TOOL_NAMES)


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
    assert all(name in body["system"] for name in TOOL_NAMES)
