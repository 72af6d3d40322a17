"""Issue 17.1 through instructor's TOOLS mode, a real client: a forced function call comes back
as exactly one call with finish_reason tool_calls, which instructor turns into its model (it
used to fail on the "length" finish that a second, cut-off call caused).

instructor pins jiter<0.15, which no openai SDK this project tests with accepts, so it runs in
a virtualenv of its own (built once per machine, from the package index like every test extra)
and talks to a real server over HTTP, as any client process would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tinymodel import build_tiny_gguf
from tests.support.tinyserver import KEY, MODEL, tiny_server

INSTRUCTOR = "instructor==1.17.0"
TEMPLATE = Path(__file__).parents[1] / "data" / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"
VENV = Path.home() / ".cache" / "llmserve-tests" / "instructor-1.17.0"
CLIENT = """
import json, sys
from typing import Literal
import instructor, openai, pydantic

class Weather(pydantic.BaseModel):
    city: Literal["Paris", "Rome"]
    days: int

client = instructor.from_openai(
    openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0),
    mode=instructor.Mode.TOOLS,
)
weather, completion = client.chat.completions.create_with_completion(
    model=sys.argv[3], response_model=Weather, max_retries=0, max_tokens=200, temperature=0,
    messages=[{"role": "user", "content": "Weather in Paris for 3 days?"}],
)
choice = completion.choices[0]
print(json.dumps({
    "weather": weather.model_dump(), "finish": choice.finish_reason,
    "content": choice.message.content, "calls": len(choice.message.tool_calls or []),
}))
"""


@pytest.fixture(name="instructor_python", scope="module")
def fixture_instructor_python() -> Path:
    """A Python with instructor installed (its own virtualenv, made on first use)."""
    python = VENV / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", INSTRUCTOR],
            check=True,
            timeout=600,
        )
    return python


@pytest.fixture(name="server_url", scope="module")
def fixture_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = build_tiny_gguf(
        tmp_path_factory.mktemp("instructor") / "m.gguf", chat_template=TEMPLATE.read_text()
    )
    with tiny_server(path, parallel=2, max_sequence_length=2048) as url:
        yield url


def test_instructor_tools_mode_gets_its_model_from_one_call(
    instructor_python: Path, server_url: str
) -> None:
    """instructor's TOOLS mode: one call, finish_reason tool_calls, no content, a valid model."""
    done = subprocess.run(
        [str(instructor_python), "-c", CLIENT, f"{server_url}/v1", KEY, MODEL],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["weather"]["city"] in ("Paris", "Rome")
    assert answer["finish"] == "tool_calls"
    assert answer["calls"] == 1
    assert not answer["content"]
