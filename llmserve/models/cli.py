"""``llmserve pull`` and ``llmserve models {list,show,rm}``: the Hub and the local model store.

Their failures are llmserve errors, so ``llmserve.cli.main`` prints them as one line.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmserve.config import load_settings
from llmserve.errors import ConfigError, ModelLoadError
from llmserve.models.ggufmeta import GGUFArray, read_metadata
from llmserve.models.store import ModelStore, StoredModel, human_size

COLUMNS = ("NAME", "SIZE", "ARCH", "QUANT", "CONTEXT", "CHAT TEMPLATE")
_SHOWN_TEXT = 80  # characters of a string metadata value that `models show` prints


# A chat template's tool-call family (``prompt.toolformats``), given by the top-level CLI: the
# model store sits below the prompt layer and cannot ask it itself.
ToolFormatOf = Callable[[str | None], str]


def add_commands(commands: Any, tool_format_of: ToolFormatOf | None = None) -> None:
    """Adds ``pull`` and ``models`` to the ``llmserve`` subcommands (argparse subparsers)."""
    store_flags = argparse.ArgumentParser(add_help=False)
    group = store_flags.add_argument_group("settings")
    # SUPPRESS: a flag given before `list`/`show`/`rm` is not reset by the subcommand's default.
    group.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="config.toml to read")
    group.add_argument(
        "--models-dir",
        default=argparse.SUPPRESS,
        help="the model store ($LLM_ENGINE_MODELS_DIR; default ~/.cache/llmserve/models)",
    )

    pull = commands.add_parser(
        "pull",
        parents=[store_flags],
        help="download a GGUF model from the Hugging Face Hub into the model store",
        description="Download a GGUF model (every part of a split one) with resume and a "
        "sha256 check. Gated or private repositories need HF_TOKEN.",
    )
    pull.add_argument("repo", metavar="REPO_ID[:PATTERN]", help="e.g. ggml-org/gemma-3-270m-GGUF")
    pull.add_argument(
        "--file",
        "-f",
        metavar="PATTERN",
        help="which GGUF: a glob such as '*Q4_K_M.gguf', or a word in its name such as Q4_K_M "
        "(needed when the repository holds several)",
    )
    pull.add_argument("--revision", metavar="REV", help="branch, tag or commit (default main)")
    pull.set_defaults(run=_pull)

    models = commands.add_parser(
        "models", parents=[store_flags], help="list, show or remove the models in the store"
    )
    models.set_defaults(run=_list, json=False)
    actions = models.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser(
        "list", aliases=["ls"], parents=[store_flags], help="the models in the store (default)"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_list)
    show = actions.add_parser("show", parents=[store_flags], help="one model's GGUF metadata")
    show.add_argument("name", help="a name from `llmserve models list`")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=_show, tool_format_of=tool_format_of)
    remove = actions.add_parser("rm", parents=[store_flags], help="delete a model's file(s)")
    remove.add_argument("name", help="a name from `llmserve models list`")
    remove.set_defaults(run=_remove)


def _store(args: argparse.Namespace) -> ModelStore:
    flags = {"models_dir": getattr(args, "models_dir", None)}
    settings = load_settings(getattr(args, "config", None), os.environ, flags)
    return ModelStore.from_settings(settings.store)


def _pull(args: argparse.Namespace) -> int:
    # huggingface_hub is imported here, not at start-up of every command.
    from llmserve.models.hub import HubAccess, parse_reference, pull

    parsed = parse_reference(args.repo)
    if parsed is None:
        raise ConfigError(f"not a Hugging Face repository id: {args.repo!r} (expected OWNER/NAME)")
    repo_id, pattern = parsed
    if pattern is not None and args.file is not None:
        raise ConfigError(f"give the pattern once: {args.repo!r} and --file {args.file!r}")
    model = pull(
        repo_id,
        pattern if pattern is not None else args.file,
        store=_store(args),
        access=HubAccess.from_environ(os.environ),
        revision=args.revision,
    )
    print(f"pulled {model.name} ({human_size(model.size_bytes)})")
    print(f"  path: {model.path}")
    print(f"  serve it: llmserve serve --model-path {model.name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = [_describe(model) for model in store.models()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no models in {store.root}; pull one with: llmserve pull REPO_ID")
        return 0
    table = [COLUMNS] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    model = _store(args).get(args.name)
    details = _describe(model, with_metadata=True)
    tool_format_of = getattr(args, "tool_format_of", None)
    if tool_format_of is not None and "error" not in details:
        details["tool_format"] = tool_format_of(details.pop("chat_template"))
    details.pop("chat_template", None)
    if args.json:
        print(json.dumps(details, indent=2, default=_plain))
        return 0
    template = details["chat_template_chars"]
    lines = [
        ("name", model.name),
        ("path", "\n".join(f"{'':16}{file}" for file in model.files).lstrip()),
        ("size", f"{human_size(details['size'])} ({details['size']} bytes)"),
        ("architecture", details["architecture"] or "-"),
        ("quantization", details["quantization"] or "-"),
        ("context length", _text(details["context_length"])),
        ("chat template", f"yes ({template} characters)" if template else "no (built-in used)"),
    ]
    if "tool_format" in details:
        lines.append(("tool calls", details["tool_format"]))
    if model.split_count > 1:
        lines.append(("parts", f"{len(model.files)} of {model.split_count}"))
    if "error" in details:
        lines.append(("error", details["error"]))
    for label, text in lines:
        print(f"{label + ':':16}{text}")
    print("metadata:")
    for key, value in details.get("metadata", {}).items():
        print(f"  {key} = {_text(value)}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    store = _store(args)
    model = store.get(args.name)
    size = model.size_bytes
    store.remove(args.name)
    print(f"removed {model.name} ({human_size(size)})")
    return 0


def _describe(model: StoredModel, *, with_metadata: bool = False) -> dict[str, Any]:
    """What `models list` and `show` print, from the GGUF header only (no weights loaded)."""
    details: dict[str, Any] = {
        "name": model.name,
        "path": str(model.path),
        "size": model.size_bytes,
        "files": [str(file) for file in model.files],
        "complete": model.complete,
    }
    try:
        metadata = read_metadata(model.path)
    except ModelLoadError as exc:
        details.update(
            architecture=None,
            quantization=None,
            context_length=None,
            chat_template_chars=0,
            error=exc.message,
        )
        return details
    details.update(
        architecture=metadata.architecture,
        quantization=metadata.quantization,
        context_length=metadata.context_length,
        chat_template_chars=len(metadata.chat_template or ""),
    )
    if with_metadata:
        details["metadata"] = dict(metadata.values)
        details["chat_template"] = metadata.chat_template
    return details


def _plain(value: object) -> object:
    """JSON for what json cannot encode itself: a summarised GGUF array."""
    if isinstance(value, GGUFArray):
        return {"array_of": value.element_type, "length": value.length}
    raise TypeError(f"cannot encode {type(value).__name__}")


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    size = human_size(row["size"])
    arch = row["architecture"] or ("invalid GGUF" if "error" in row else "-")
    template = "yes" if row["chat_template_chars"] else "no"
    name = row["name"] if row["complete"] else f"{row['name']} (incomplete)"
    return (name, size, arch, row["quantization"] or "-", _text(row["context_length"]), template)


def _text(value: object) -> str:
    if value is None:
        return "-"
    text = str(value)
    if isinstance(value, str):
        text = json.dumps(text if len(text) <= _SHOWN_TEXT else text[:_SHOWN_TEXT] + "...")
    return text
