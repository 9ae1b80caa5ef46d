"""Imports flow one way, bottom to top: the layers ARCHITECTURE.md names, checked on the source.

A module may import its own layer and the layers below it, never one above: that is what keeps
the model layer usable without the daemon, the capture pipelines without MQTT, and the front-ends
replaceable. Imports inside functions and under `if TYPE_CHECKING:` count too: a layer should not
need what is above it even to name it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS: list[tuple[str, ...]] = [
    ("daemon.core",),
    ("daemon.models", "daemon.speech", "pipelines"),
    ("daemon.home", "daemon.intents"),
    ("daemon.assistant",),
    ("daemon.frontends",),
    ("daemon.service",),
    ("daemon.cli",),
]
"""Bottom to top: errors, configuration, the event bus and supervision; the model layer, voice out
and capture; the home and its intents; the assistant; the front-ends (MQTT, socket, Wyoming); the
service; the CLI."""


def layer_of(module: str) -> int | None:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> list[Path]:
    return sorted([*ROOT.glob("daemon/**/*.py"), *ROOT.glob("pipelines/**/*.py")])


def test_every_module_has_a_layer() -> None:
    unplaced = [module_name(p) for p in sources() if layer_of(module_name(p)) is None]
    assert unplaced == ["daemon"]  # the package itself, which holds nothing


def test_imports_flow_from_the_bottom_up() -> None:
    upward = []
    for path in sources():
        here = layer_of(module_name(path))
        if here is None:
            continue
        for line, target in imports(path):
            there = layer_of(target)
            if there is not None and there > here:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert upward == []
