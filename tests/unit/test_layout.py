"""The package layout: each stage of a request imports only the stages below it."""

from __future__ import annotations

import ast
from pathlib import Path

import llmserve

# Top to bottom; a module may import its own layer and the layers below it, never above.
LAYERS = ("cli", "api", "prompt", "engine", "models", "ops", "config", "errors")
ROOT = Path(llmserve.__file__).parent


def layer_of(module: str) -> str:
    """The layer of ``llmserve.X[.Y]``: its package or top-level module (``__main__`` is cli)."""
    first = module.split(".")[1] if "." in module else "cli"
    return "cli" if first == "__main__" else first


def imported_modules(path: Path) -> set[str]:
    """Every llmserve module ``path`` imports, lazily or for type checking too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("llmserve.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "llmserve":
                found |= {f"llmserve.{a.name}" for a in node.names}
            elif node.module.startswith("llmserve."):
                found.add(node.module)
    return found


def upward_imports() -> list[str]:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "__init__.py":
            continue  # the package's own docstring, importing nothing
        module = ".".join(("llmserve", *path.relative_to(ROOT).with_suffix("").parts))
        own = LAYERS.index(layer_of(module))
        for target in sorted(imported_modules(path)):
            if LAYERS.index(layer_of(target)) < own:
                wrong.append(f"{module} imports {target}")
    return wrong


def test_every_module_belongs_to_a_layer() -> None:
    """Each top-level name in llmserve/ is one of the layers (or the package's own files)."""
    names = {p.stem for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert names - {"__init__", "__main__"} <= set(LAYERS)


def test_imports_only_point_down_the_layers() -> None:
    """api -> prompt -> engine -> models -> ops -> config -> errors; nothing imports upward."""
    assert upward_imports() == []


def test_only_the_engine_core_imports_llama_cpp() -> None:
    """llama_cpp is imported by engine modules alone (and not by the engine's fake)."""
    importers = set()
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "llama_cpp" or n.startswith("llama_cpp.") for n in names):
                importers.add(path.relative_to(ROOT).as_posix())
    assert importers
    assert all(p.startswith("engine/") for p in importers)
    assert "engine/fake.py" not in importers
