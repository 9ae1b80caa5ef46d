"""Silero VAD cost per 32 ms frame (512 samples at 16 kHz), as the pipeline runs it."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import AUDIO, Figure, Section, median, read_wav, speech_clips
from pipelines.vad import FRAME, shared_vad


def run(rounds: int = 5) -> Section:
    audio = np.concatenate([read_wav(AUDIO / name) for name, _ in speech_clips()])
    frames = len(audio) // FRAME
    vad = shared_vad()
    per_frame: list[float] = []
    for _ in range(rounds):
        stream = vad.stream()
        started = time.perf_counter()
        for i in range(0, len(audio), FRAME):  # frame by frame, as capture delivers them
            stream.process(audio[i : i + FRAME])
        per_frame.append((time.perf_counter() - started) / frames)
    cost = median(per_frame)
    return Section(
        "Voice activity detection",
        [
            Figure(
                "Silero VAD per 32 ms frame (median)",
                f"{cost * 1e6:.0f} µs",
                how=f"{frames} frames of speech fixtures, {rounds} rounds, onnxruntime 1 thread",
            ),
            Figure(
                "share of one core while listening",
                f"{cost / 0.032 * 100:.2f} %",
                how="cost per frame / 32 ms",
            ),
        ],
    )
