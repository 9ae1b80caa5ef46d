"""What every benchmark shares: the machine's description, the fixtures, robust statistics."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tests.pipelines.conftest import Pulse

if TYPE_CHECKING:
    from wyoming.client import AsyncClient
    from wyoming.event import Event

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


class SinkRecorder:
    """What reaches a virtual microphone's null sink, recorded live from its monitor by `parec`
    (16 kHz s16le mono, read in 20 ms pieces), with when each piece arrived on this process's
    clock: a sample's index maps to a time, so the question played, the answer heard and the
    events in between are all timed by the same ear. `listeners` get each piece as it comes."""

    PIECE = 640  # bytes: 20 ms

    def __init__(self, pulse: Pulse) -> None:
        self._pulse = pulse
        self._pcm = bytearray()
        self._counts: list[int] = []
        self._times: list[float] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[bytes], None]] = []

    async def __aenter__(self) -> SinkRecorder:
        self._process = await asyncio.create_subprocess_exec(
            *("parec", "--device=vsink.monitor", "--format=s16le", "--rate=16000"),
            *("--channels=1", "--latency-msec=10"),
            stdout=asyncio.subprocess.PIPE,
            env=self._pulse.env,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._process is not None and self._reader is not None
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        self._process.terminate()
        await self._process.wait()

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        while True:
            piece = await self._process.stdout.readexactly(self.PIECE)
            self._pcm += piece
            self._counts.append(len(self._pcm) // 2)
            self._times.append(time.perf_counter())
            for listener in self.listeners:
                listener(piece)

    @property
    def count(self) -> int:
        """Samples recorded so far."""
        return len(self._pcm) // 2

    def audio(self, start: int) -> npt.NDArray[np.float32]:
        pcm = np.frombuffer(bytes(self._pcm[start * 2 :]), np.int16)
        return (pcm.astype(np.float32) / 32768.0).astype(np.float32)

    def clock(self, sample: int) -> float:
        """When sample `sample` was heard (perf_counter), from the arrival of the pieces."""
        return float(np.interp(sample, self._counts, self._times))


def heard_in_recording(recorded: np.ndarray, clip: np.ndarray) -> tuple[int, int | None]:
    """In a recording of `clip` played and then answered: the end of speech (the clip's last
    voiced sample) and the first audible sample of the answer after it (None: nothing heard).

    Voiced and audible mean louder than 2 % of the clip's peak. The clip is found by its first
    voiced sample; its end lies as far after that as in the clip itself."""
    threshold = 0.02 * float(np.max(np.abs(clip)))
    voiced = np.nonzero(np.abs(clip) > threshold)[0]
    loud = np.nonzero(np.abs(recorded) > threshold)[0]
    if not len(loud):
        raise RuntimeError("the played question was not recorded")
    end = int(loud[0] + voiced[-1] - voiced[0])
    after = loud[loud > end + 160]  # 10 ms past it: the resampled tail of the last word
    return end, int(after[0]) if len(after) else None


async def next_event(client: AsyncClient, who: str, timeout_s: float = 60.0) -> Event:
    """A Wyoming server's next event, within `timeout_s`; the server closing the connection
    before the caller has what it waits for is an error."""
    event = await asyncio.wait_for(client.read_event(), timeout_s)
    if event is None:
        raise RuntimeError(f"{who} closed the connection")
    return event
