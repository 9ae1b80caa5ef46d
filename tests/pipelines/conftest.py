"""Fixtures of the capture tests: speech clips, a pipeline runner, PulseAudio, an ffmpeg camera.

PulseAudio and ffmpeg are real processes started here, in temporary directories, and stopped by
their own process ids: nothing else on the machine is touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from daemon.core.config.schema import TektraConfig
from pipelines.audio import float_to_wav, read_wav
from pipelines.events import DeviceState, PipelineEvent, Transcript
from pipelines.voice import VoicePipeline, VoiceQuery
from pipelines.wake import normalise

ROOT = Path(__file__).parents[2]
AUDIO = ROOT / "fixtures" / "audio"
VIDEO = ROOT / "fixtures" / "video"
MANIFEST: dict[str, Any] = json.loads((AUDIO / "manifest.json").read_text())
RATE = 16_000


def clip(name: str) -> np.ndarray:
    """A fixture WAV (name without .wav) as 16 kHz float32."""
    return read_wav(AUDIO / f"{name}.wav")


def expected(name: str) -> str:
    return str(MANIFEST["speech"][f"{name}.wav"]["expected"])


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def write_stream(path: Path, *parts: np.ndarray) -> Path:
    path.write_bytes(float_to_wav(np.concatenate(parts)))
    return path


def words(text: str) -> str:
    return normalise(text)


NUMBERS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]


def digits(text: str) -> str:
    """`words(text)` with the numbers up to twelve as digits: tiny.en writes "eight" or "8" for
    the same audio depending on how much silence follows it, so a comparison of what was heard
    (not of how it is spelled) folds the two."""
    return " ".join(str(NUMBERS.index(w)) if w in NUMBERS else w for w in words(text).split())


def colour_of(frame: np.ndarray) -> str:
    """The dominant channel of a BGR frame: "blue", "green" or "red"."""
    blue, green, red = (float(frame[..., i].mean()) for i in range(3))
    return max((blue, "blue"), (green, "green"), (red, "red"))[1]


def decode_jpeg(data: bytes) -> np.ndarray:
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None, "not a decodable image"
    return np.asarray(frame)


def config(**tables: dict[str, Any]) -> TektraConfig:
    """A configuration from Python dicts (the same validation as models.toml, minus the file)."""
    return TektraConfig.model_validate(tables, strict=False)


@dataclass
class Run:
    """What a pipeline reported while it ran."""

    pipeline: VoicePipeline
    events: list[PipelineEvent] = field(default_factory=list)
    queries: list[VoiceQuery] = field(default_factory=list)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def transcripts(self) -> list[str]:
        """Final transcripts (partials of speculative transcription left out)."""
        return [words(e.text) for e in self.of(Transcript) if e.is_final]

    def device_states(self, kind: str) -> list[str]:
        return [e.state for e in self.of(DeviceState) if e.kind == kind]


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def run_pipeline(
    cfg: TektraConfig,
    body: Callable[[Run], Awaitable[None]],
    *,
    image_capable: bool = False,
    answer: Callable[[VoiceQuery], Awaitable[None]] | None = None,
) -> Run:
    """Run a pipeline from `cfg` while `body(run)` drives and watches it; then cancel it."""
    holder: list[Run] = []

    async def handler(query: VoiceQuery) -> None:
        holder[0].queries.append(query)
        if answer is not None:
            await answer(query)

    pipeline = VoicePipeline.from_config(
        cfg, handler, lambda e: holder[0].events.append(e), image_capable=image_capable
    )
    run = Run(pipeline)
    holder.append(run)
    task = asyncio.create_task(pipeline.run(), name="test-voice-pipeline")
    try:
        await body(run)
        assert not task.done(), "the pipeline stopped by itself"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return run


async def until_file_done(run: Run, timeout: float = 120.0) -> None:
    """Wait until a `file:` source ended and every utterance in it was transcribed and asked."""
    await wait_for(lambda: "closed" in run.device_states("microphone"), timeout, "end of file")
    await wait_for(lambda: run.pipeline.drained, timeout, "the pipeline to drain")


# --- PulseAudio: a null sink whose monitor is the microphone -------------------------------------


@dataclass
class Pulse:
    env: dict[str, str]
    runtime: Path
    process_id: int = 0

    def start(self) -> None:
        pid_file = self.runtime / "pulse" / "pid"
        pid_file.unlink(missing_ok=True)  # a stopped server's, which would name the wrong process
        subprocess.run(
            [
                "pulseaudio",
                "--daemonize=yes",
                "--exit-idle-time=-1",
                "--system=false",
                "-n",
                "--load=module-native-protocol-unix",
                "--load=module-null-sink sink_name=vsink",
                "--load=module-always-sink",
            ],
            env=self.env,
            check=True,
            timeout=30,
        )
        deadline = time.monotonic() + 10
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.process_id = int(pid_file.read_text().split()[0])

    def stop(self) -> None:
        """Stop our own server (by its pid, never by name) and wait for it to exit."""
        if not self.process_id:
            return
        os.kill(self.process_id, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.process_id, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.process_id = 0

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["paplay", "--device=vsink", str(wav)], env=self.env)


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    runtime = tmp_path_factory.mktemp("pulse-runtime")
    runtime.chmod(0o700)
    home = tmp_path_factory.mktemp("pulse-home")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)}
    env.pop("PULSE_SERVER", None)
    server = Pulse(env, runtime)
    server.start()
    # PortAudio (through ALSA's pulse plugin) finds the server from these, in this process.
    saved = {key: os.environ.get(key) for key in ("XDG_RUNTIME_DIR", "HOME", "PULSE_SERVER")}
    os.environ.update(XDG_RUNTIME_DIR=str(runtime), HOME=str(home))
    os.environ.pop("PULSE_SERVER", None)
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- ffmpeg: a camera served on loopback ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class CameraServer:
    port: int
    kind: str = "mjpeg"
    """`mjpeg`: multipart JPEG over HTTP; `mpegts`: MPEG-TS (MPEG-2 video) over raw TCP."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.kind == "mpegts":
            return f"tcp://127.0.0.1:{self.port}"
        return f"http://127.0.0.1:{self.port}/cam.mjpg"

    def start(self, colour: str) -> None:
        """Serve a solid-colour stream (so a test can tell which server a frame came from)."""
        if self.kind == "mpegts":
            out = ["-c:v", "mpeg2video", "-f", "mpegts", f"{self.url}?listen=1"]
        else:
            out = ["-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1", self.url]
        self.process = subprocess.Popen(
            [
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
                "-f", "lavfi", "-i", f"color=c={colour}:size=160x120:rate=10", *out,
            ],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@pytest.fixture
def camera_server() -> Iterator[CameraServer]:
    server = CameraServer(free_port())
    try:
        yield server
    finally:
        server.stop()
