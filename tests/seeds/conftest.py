"""Fixtures of the seed features: this tree's backends visible to the registry, the Anthropic
stand-in."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.models.backends.registry import ENTRY_POINT_GROUP, BackendRegistry
from tests.engines.conftest import Server, free_port

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).parents[2]
ANTHROPIC_KEY = "sk-ant-standin-key"
ANTHROPIC_MODEL = "claude-standin"


def declared_backends() -> dict[str, str]:
    """The `tektra.backends` entry points this tree's pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared: dict[str, str] = project["project"]["entry-points"][ENTRY_POINT_GROUP]
    return declared


@pytest.fixture
def tree_backends(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> BackendRegistry:
    """A registry that sees every backend pyproject.toml declares.

    An installed environment records entry points when it is installed; one installed from an
    older pyproject lacks the newer backends until it is reinstalled. The missing ones are given
    here through the same entry-point group, as a distribution of their own."""
    installed = set(BackendRegistry().names())
    missing = {k: v for k, v in declared_backends().items() if k not in installed}
    if missing:
        site = tmp_path_factory.mktemp("tree-site")
        info = site / "tektra_tree_backends-0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: tektra-tree-backends\nVersion: 0\n"
        )
        entries = "".join(f"{k} = {v}\n" for k, v in missing.items())
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entries}")
        monkeypatch.syspath_prepend(str(site))
    return BackendRegistry()


@pytest.fixture
def anthropic_api(tmp_path: Path, smollm2_path: Path) -> Iterator[Server]:
    """The Messages API stand-in (tests/engines/anthropic_standin.py) on a free loopback port."""
    port = free_port()
    log = tmp_path / "anthropic-requests.jsonl"
    argv = [
        sys.executable,
        "-m",
        "tests.engines.anthropic_standin",
        "--port",
        str(port),
        "--gguf",
        str(smollm2_path),
        "--log",
        str(log),
        "--key",
        ANTHROPIC_KEY,
        "--model",
        ANTHROPIC_MODEL,
    ]
    server = Server(argv, port, "/v1/models", log)
    server.start()
    yield server
    server.stop()
