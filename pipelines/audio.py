"""Audio plumbing shared by the sources: PCM and WAV conversion, resampling, the chunk queue.

Inside the pipelines audio is 16 kHz mono float32 in [-1, 1]; s16le bytes exist only at the
edges (pushed PCM in, WAV out).
"""

from __future__ import annotations

import asyncio
import io
import math
import wave
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

RATE = 16_000
Samples = npt.NDArray[np.float32]
T = TypeVar("T")


def pcm_to_float(pcm: bytes) -> Samples:
    """s16le mono bytes (an even number of them) to float32 samples."""
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0


def float_to_pcm(samples: Samples) -> bytes:
    """float32 samples (clipped to [-1, 1]) to s16le mono bytes: the inverse of pcm_to_float."""
    pcm: bytes = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    return pcm


def float_to_wav(samples: Samples, rate: int = RATE) -> bytes:
    """A complete 16-bit mono WAV file in memory."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(float_to_pcm(samples))
    return out.getvalue()


def read_wav(path: Path | io.BytesIO) -> Samples:
    """A 16-bit PCM WAV file (or its bytes) as 16 kHz mono float32 (channels averaged, rate
    converted)."""
    with wave.open(str(path) if isinstance(path, Path) else path, "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        channels, rate = wav.getnchannels(), wav.getframerate()
        data = pcm_to_float(wav.readframes(wav.getnframes()))
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.float32)
    return Resampler(rate)(data)


class Resampler:
    """Streaming linear-interpolation resampler to 16 kHz, continuous across chunks.

    Used only when a device cannot open at 16 kHz itself (PulseAudio and most USB microphones
    can); linear interpolation loses a little above 4 kHz, which Whisper does not need.
    """

    def __init__(self, rate_in: int, rate_out: int = RATE) -> None:
        if rate_in <= 0:
            raise ValueError(f"sample rate must be positive (got {rate_in})")
        self.rate_in, self.rate_out = rate_in, rate_out
        self._step = rate_in / rate_out
        self._pos = 0.0  # where the next output sample falls, in input samples from _tail[0]
        self._tail = np.zeros(0, np.float32)

    def __call__(self, chunk: Samples) -> Samples:
        if self.rate_in == self.rate_out:
            return chunk.astype(np.float32, copy=False)
        buf = np.concatenate([self._tail, chunk.astype(np.float32, copy=False)])
        last = len(buf) - 1
        count = 0 if last < self._pos else math.floor((last - self._pos) / self._step) + 1
        where = self._pos + self._step * np.arange(count)
        out: Samples = np.interp(where, np.arange(len(buf)), buf).astype(np.float32)
        following = self._pos + self._step * count
        keep_from = min(math.floor(following), len(buf))
        self._tail = buf[keep_from:]
        self._pos = following - keep_from
        return out


class DropOldestQueue(Generic[T]):
    """A bounded queue living on the event loop: a put never blocks, the oldest item goes.

    Capture must never stall on a slow consumer (a stalled PortAudio callback loses audio
    anyway, and badly); dropping the oldest keeps the freshest speech and counts the loss.
    """

    def __init__(self, maxsize: int, weight: Callable[[T], int] = lambda _: 1) -> None:
        self.maxsize = maxsize
        """The bound, in units of `weight` (items by default; e.g. samples for audio chunks)."""
        self._weight = weight
        self._size = 0
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.dropped = 0
        self._reported = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        self._items.append(item)
        self._size += self._weight(item)
        while self._size > self.maxsize and len(self._items) > 1:
            self._size -= self._weight(self._items.popleft())
            self.dropped += 1
        self._ready.set()
        if self._size >= self.maxsize:
            self._room.clear()

    async def put_wait(self, item: T) -> None:
        """Wait for room, then put: for sources that can go slower (a WAV replayed fast)."""
        while self._size >= self.maxsize:
            self._room.clear()
            await self._room.wait()
        self.put(item)

    async def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, or None when `timeout` seconds pass with none."""
        while not self._items:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        return self.get_nowait()

    def get_nowait(self) -> T:
        """The oldest item; IndexError when empty."""
        item = self._items.popleft()
        self._size -= self._weight(item)
        if self._size < self.maxsize:
            self._room.set()
        return item

    def peek(self) -> T | None:
        """The oldest item without taking it, or None when empty."""
        return self._items[0] if self._items else None

    def clear(self) -> None:
        self._items.clear()
        self._size = 0
        self._room.set()

    def take_dropped(self) -> int:
        """Drops since the last call (for one FramesDropped event per burst)."""
        new, self._reported = self.dropped - self._reported, self.dropped
        return new
