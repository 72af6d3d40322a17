"""The Makefile's `make serve`: the demo configuration a first user runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.deploy.conftest import ROOT


def serve_recipe() -> str:
    """The shell line `make serve` runs, as make hands it to the shell."""
    found = re.search(r"^serve: install\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert found, "the Makefile's serve target has changed shape"
    return found.group(1).replace("$$", "$")


@pytest.mark.parametrize(("environment", "expected"), [(None, 256), ("1000", 1000), ("", None)])
def test_make_serve_caps_requests_without_max_tokens(
    environment: str | None, expected: int | None
) -> None:
    """`make serve` serves with default_max_tokens 256, unless the environment says otherwise."""
    recipe = serve_recipe()
    assert "$(BIN)/llmserve serve $(ARGS)" in recipe
    # The same line with `llmserve config` instead of serve: the settings the server would get.
    command = recipe.replace(
        "$(BIN)/llmserve serve $(ARGS)", f'"{sys.executable}" -m llmserve config --json'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ENGINE_")}
    if environment is not None:
        env["LLM_ENGINE_DEFAULT_MAX_TOKENS"] = environment
    shown = subprocess.run(
        ["sh", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(shown.stdout)["model"]["default_max_tokens"] == expected
