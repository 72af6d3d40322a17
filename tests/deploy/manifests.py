"""Reading what the deployment checks look at: rendered manifests and the Dockerfile."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from attrs import frozen

# The release name every test renders with: the server's resources are named so.
RELEASE = "llmserve"


def find(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one manifest of ``kind`` (named ``name``, when given)."""
    found = [
        document
        for document in documents
        if document["kind"] == kind and name in (None, document["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def kinds(documents: list[dict[str, Any]]) -> set[str]:
    """The kinds of the manifests."""
    return {document["kind"] for document in documents}


def pod_spec(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The server Deployment's pod spec."""
    return find(documents, "Deployment", RELEASE)["spec"]["template"]["spec"]


def container(documents: list[dict[str, Any]], name: str = "llmserve") -> dict[str, Any]:
    """A container of the Deployment's pod, by name."""
    (found,) = [c for c in pod_spec(documents)["containers"] if c["name"] == name]
    return found


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """A container's env, by name: the value, or the valueFrom mapping."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def config_toml(documents: list[dict[str, Any]]) -> str:
    """The server's config.toml, as the chart's ConfigMap holds it."""
    (config,) = [d for d in documents if d["kind"] == "ConfigMap" and "config.toml" in d["data"]]
    return str(config["data"]["config.toml"])


@frozen
class Instruction:
    keyword: str  # upper case
    arguments: str  # continuation lines joined

    @property
    def exec_form(self) -> list[str]:
        """The JSON-array form's items (ENTRYPOINT, CMD, VOLUME ...)."""
        return list(json.loads(self.arguments))

    def flag(self, name: str) -> str | None:
        """The value of a leading ``--name=value`` flag (COPY --from, ...)."""
        for word in shlex.split(self.arguments):
            if not word.startswith("--"):
                return None
            if word.startswith(f"--{name}="):
                return word.split("=", 1)[1]
        return None


@frozen
class Stage:
    name: str
    base: str  # the FROM image, before ARG expansion
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV assignments (the key=value form), later ones winning."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.arguments):
                key, _, value = word.partition("=")
                values[key] = value
        return values

    def args(self) -> dict[str, str]:
        """ARG defaults (``ARG NAME=default``; a bare ``ARG NAME`` is "")."""
        values: dict[str, str] = {}
        for instruction in self.all("ARG"):
            (word,) = shlex.split(instruction.arguments)
            key, _, value = word.partition("=")
            values[key] = value
        return values


@frozen
class Dockerfile:
    global_args: dict[str, str]  # the ARGs before the first FROM
    stages: tuple[Stage, ...]

    def stage(self, name: str) -> Stage:
        (found,) = [stage for stage in self.stages if stage.name == name]
        return found

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions by stage; comments dropped, continuation lines joined."""
    instructions: list[Instruction] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))

    global_args = Stage("", "", tuple(_before_first_from(instructions))).args()
    stages: list[Stage] = []
    for index, instruction in enumerate(instructions):
        if instruction.keyword != "FROM":
            continue
        words = instruction.arguments.split()
        name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
        body = []
        for following in instructions[index + 1 :]:
            if following.keyword == "FROM":
                break
            body.append(following)
        stages.append(Stage(name, words[0], tuple(body)))
    return Dockerfile(global_args, tuple(stages))


def _before_first_from(instructions: list[Instruction]) -> list[Instruction]:
    head = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        head.append(instruction)
    return head
