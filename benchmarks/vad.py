"""Silero VAD cost per 32 ms frame (512 samples at 16 kHz), as the pipeline runs it."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import AUDIO, Figure, Section, median, read_wav, speech_clips
from daemon.core.config.schema import AudioSettings
from pipelines.vad import FRAME, SAMPLE_RATE, Samples, shared_vad


def _per_frame(audio: Samples, step: int, rounds: int) -> float:
    frames = len(audio) // FRAME
    vad = shared_vad()
    costs: list[float] = []
    for _ in range(rounds):
        stream = vad.stream()
        started = time.perf_counter()
        for i in range(0, len(audio), step):
            stream.process(audio[i : i + step])
        costs.append((time.perf_counter() - started) / frames)
    return median(costs)


def run(rounds: int = 5) -> Section:
    audio = np.concatenate([read_wav(AUDIO / name) for name, _ in speech_clips()])
    frames = len(audio) // FRAME
    block_ms = AudioSettings().block_ms
    block = SAMPLE_RATE * block_ms // 1000
    in_blocks = _per_frame(audio, block, rounds)
    one_by_one = _per_frame(audio, FRAME, rounds)
    how = f"{frames} frames of speech fixtures, {rounds} rounds, onnxruntime 1 thread"
    return Section(
        "Voice activity detection",
        [
            Figure(
                f"Silero VAD per 32 ms frame, {block_ms} ms capture blocks (median)",
                f"{in_blocks * 1e6:.0f} µs",
                how=how + "; the frames of a block in one run, as the daemon does",
            ),
            Figure(
                "Silero VAD per 32 ms frame, one run per frame (median)",
                f"{one_by_one * 1e6:.0f} µs",
                how="the same frames, one onnxruntime run each",
            ),
            Figure(
                "share of one core while listening",
                f"{in_blocks / 0.032 * 100:.2f} %",
                how="cost per frame (in blocks) / 32 ms",
            ),
        ],
    )
