"""The package's layers only import downwards: core ← adapters ← ingest / analytics ← demo ←
cli and the Lambda entry. A newcomer can then read the tree in the order a record travels."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "stream_processor"

#: Layer of each top-level module or folder; a module may import its own layer or lower.
LAYERS = {
    "errors": 0,
    "config": 0,
    "logs": 0,
    "core": 0,
    "adapters": 1,
    "testing": 1,
    "progress": 1,
    "ingest": 2,
    "analytics": 2,
    "demo": 3,
    "composition": 3,
    "cli": 4,
    "lambda_function": 4,
    "__main__": 5,
    "__init__": 5,
}
#: Applications of one layer stay apart: the write side never needs the read side.
SIBLINGS_APART = {"ingest", "analytics"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("stream_processor."):
                names.add(node.module.split(".")[1])
            elif node.module == "stream_processor":
                names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("stream_processor."):
                    names.add(alias.name.split(".")[1])
    return names


def test_every_top_level_module_has_a_layer() -> None:
    tops = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()
    }
    assert tops <= set(LAYERS), f"give these a layer: {sorted(tops - set(LAYERS))}"


def test_no_import_runs_from_a_lower_layer_up() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for target in _imports(path):
            if LAYERS[target] > LAYERS[me] or (me != target and {me, target} <= SIBLINGS_APART):
                upward.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert upward == []


def test_the_code_map_names_every_module() -> None:
    """The code map (docs/code-map.md) is how a newcomer finds a module: a module it does
    not name is one they cannot find."""
    section = (PACKAGE.parent / "docs" / "code-map.md").read_text()
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.stem != "__init__" and not re.search(rf"\b{re.escape(path.stem)}\b", section)
    ]
    assert missing == []
