"""Audio plumbing: PCM/WAV conversion, the streaming resampler, the drop-oldest queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from pipelines.audio import DropOldestQueue, Resampler, float_to_wav, pcm_to_float, read_wav


def sine(freq: float, rate: int, seconds: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(
        np.float32
    )


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def test_48_khz_audio_resampled_in_odd_chunks_keeps_its_pitch_and_length() -> None:
    source = sine(440.0, 48_000, 2.0)
    resample = Resampler(48_000)
    pieces = [resample(source[i : i + 1001]) for i in range(0, len(source), 1001)]
    out = np.concatenate(pieces)
    assert abs(len(out) - 32_000) <= 1
    assert peak_hz(out, 16_000) == pytest.approx(440.0, abs=1.0)
    whole = Resampler(48_000)(source)
    assert np.allclose(out[: len(whole)], whole[: len(out)], atol=1e-6)  # chunking changes nothing


def test_16_khz_audio_passes_through_unchanged() -> None:
    source = sine(300.0, 16_000, 0.1)
    assert np.array_equal(Resampler(16_000)(source), source)


def test_a_wav_written_and_read_back_holds_the_same_samples(tmp_path: Path) -> None:
    samples = sine(1000.0, 16_000, 0.5)
    path = tmp_path / "tone.wav"
    path.write_bytes(float_to_wav(samples))
    back = read_wav(path)
    assert len(back) == len(samples)
    assert np.max(np.abs(back - samples)) < 1e-4


def test_s16le_bytes_become_floats_in_minus_one_to_one() -> None:
    pcm = np.array([0, 16384, -32768, 32767], "<i2").tobytes()
    assert pcm_to_float(pcm).tolist() == [0.0, 0.5, -1.0, 32767 / 32768]


async def test_a_full_queue_drops_the_oldest_and_counts_them() -> None:
    queue: DropOldestQueue[int] = DropOldestQueue(3)
    for item in range(5):
        queue.put(item)
    assert (queue.dropped, queue.take_dropped(), queue.take_dropped()) == (2, 2, 0)
    assert [await queue.get(), await queue.get(), await queue.get()] == [2, 3, 4]
    assert await queue.get(timeout=0.01) is None


async def test_put_wait_waits_for_room_instead_of_dropping() -> None:
    queue: DropOldestQueue[int] = DropOldestQueue(1)
    queue.put(1)
    waiting = asyncio.create_task(queue.put_wait(2))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert await queue.get() == 1
    await asyncio.wait_for(waiting, 1.0)
    assert (await queue.get(), queue.dropped) == (2, 0)


async def test_a_queue_bounded_in_samples_drops_whole_chunks_from_the_front() -> None:
    queue: DropOldestQueue[np.ndarray] = DropOldestQueue(1000, len)
    for size in (400, 400, 400):
        queue.put(np.zeros(size, np.float32))
    assert queue.dropped == 1 and len(queue) == 2
    queue.put(np.zeros(5000, np.float32))  # one chunk larger than the bound is still kept
    assert queue.dropped == 3 and len(queue) == 1
