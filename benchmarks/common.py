"""What every benchmark shares: the machine's description, the fixtures, robust statistics."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import tempfile
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tests.pipelines.conftest import Pulse

ROOT = Path(__file__).parents[1]
AUDIO = ROOT / "fixtures" / "audio"


@dataclass
class Figure:
    """One row of BENCHMARKS.md."""

    name: str
    value: str
    target: str = ""
    met: bool | None = None
    how: str = ""


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}"


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def speech_clips() -> list[tuple[str, str]]:
    """(file name, expected transcript) of the spoken fixtures."""
    manifest = json.loads((AUDIO / "manifest.json").read_text())
    return [(name, entry["expected"]) for name, entry in manifest["speech"].items()]


def read_wav(path: Path) -> npt.NDArray[np.float32]:
    """16 kHz mono float32 samples in [-1, 1]."""
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2), path
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


@contextmanager
def virtual_microphone() -> Iterator[tuple[Pulse, Path]]:
    """A PulseAudio server of our own whose null-sink monitor is the default input, and a work
    directory; both go away afterwards (the server is stopped by its pid)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runtime, home = root / "runtime", root / "home"
        runtime.mkdir(mode=0o700)
        home.mkdir()
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)}
        pulse = Pulse(env, runtime)
        pulse.start()
        try:
            yield pulse, root
        finally:
            pulse.stop()


@asynccontextmanager
async def daemon_connections(
    socket: Path,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamReader, asyncio.StreamWriter]]:
    """Two connections to a running daemon: one subscribed to every event (its reader), one
    for requests (its reader and writer)."""
    events_r, events_w = await asyncio.open_unix_connection(str(socket))
    events_w.write(b'{"id": "watch", "cmd": "subscribe"}\n')
    await events_w.drain()
    await events_r.readline()  # subscribed
    push_r, push_w = await asyncio.open_unix_connection(str(socket))
    try:
        yield events_r, push_r, push_w
    finally:
        for writer in (events_w, push_w):
            writer.close()
            await writer.wait_closed()
