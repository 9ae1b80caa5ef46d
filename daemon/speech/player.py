"""Gapless playback through sounddevice, and the half-duplex hold it gives the microphone.

The loop hands whole sentences to `play`, which only appends them to a buffer; PortAudio's
thread pulls from that buffer in its callback and plays silence when it runs dry. So the loop never
waits on the device, and sentences queued back to back play without a gap. The output stream is
opened when there is something to say and closed after a quiet spell (an open stream wakes the
process every block). A device that cannot be opened, or a stream that stops, is a state
(`lost`) reported through `on_state`; the next sentence tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from daemon.core.errors import TektraError
from daemon.speech.engines import Audio
from pipelines.audio import Resampler
from pipelines.echo import EchoReference
from pipelines.microphone import in_daemon_thread, parse_device

log = logging.getLogger("tektra.speech")

BLOCK_S = 0.05  # audio per callback: small enough to stop promptly, large enough to be cheap
# Lower underruns behind ALSA's PulseAudio plugin on a busy machine. Measured into a PulseAudio
# null sink (its recording, since PortAudio flagged only 1 of 12 gaps) with both cores busy: 0.1 s
# left 8 audible gaps (1.7 s in all) in 580 s of playback, 0.15 s 4 (0.4 s) in 280 s, 0.2 s none
# in 300 s. The price: a sample queued plays ~240 ms later at 0.2 s, ~140 ms at 0.1 s.
LATENCY_S = 0.2
# A fresh stream swallows its first few tens of milliseconds (the first syllable): sound starts
# no sooner than this after the stream opened (silence fills the rest).
LEAD_IN_S = 0.3
VOICE_RATE = 22_050
"""The rate a stream opened ahead of speech plays at: both engines' voices speak at it (piper's
medium voices, espeak-ng); audio at another rate is converted."""
MAX_AHEAD_S = 2.0  # a device reporting a later play-out time than this is not believed
IDLE_CLOSE_S = 10.0  # the stream closes after this long with nothing to play
WATCH_S = 0.25


class OutputLost(TektraError):
    """The output device cannot be opened or stopped playing."""

    code = "output_lost"


class Player:
    """Plays mono float32 audio on one output device, in the order it was given."""

    def __init__(
        self,
        output: str,
        *,
        volume: float = 1.0,
        hold_s: float = 0.6,
        on_state: Callable[[str, str], None] = lambda state, detail: None,
    ) -> None:
        self.output = output
        self._device = parse_device(output)
        self._volume = volume
        self._hold_s = hold_s
        self._on_state = on_state
        self.state = "closed"
        """`open`, `closed` or `lost`."""
        self._stream: Any = None
        self._rate = 0
        self._latency_s = 0.0
        self._opened_at = 0.0
        self._lock = threading.Lock()  # the buffer, shared with PortAudio's thread
        self._chunks: deque[np.ndarray] = deque()
        self._queued = 0  # samples in `_chunks`
        # Callbacks waiting for a sample to reach the speaker: (its position counted in samples
        # ever queued, callback). `_played` counts the samples taken from `_chunks` so far.
        self._marks: deque[tuple[int, Callable[[float], None]]] = deque()
        self._played = 0
        # time.monotonic() until which the microphone is held; a float is written atomically.
        self._hold_until = 0.0
        self._last_sound = 0.0
        self._drained = asyncio.Event()
        self._drained.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reference: EchoReference | None = None
        """Given every block played, silence too, and when it reaches the speaker: the echo
        canceller's reference (barge-in). None when nothing cancels the echo."""

    # --- what the rest of the daemon asks --------------------------------------------------

    def holding(self) -> bool:
        """True while Tektra's voice is (or may still be) coming out of the speaker: audio is
        queued or playing, or played less than `hold_s` (plus the device latency) ago. Cheap
        enough for the microphone's VAD to ask on every block."""
        return time.monotonic() < self._hold_until

    async def play(self, audio: Audio, on_audible: Callable[[float], None] | None = None) -> None:
        """Queue audio after what is already playing; returns at once. Raises OutputLost.
        `on_audible` is called on the loop with the time (time.monotonic()) at which the first
        sample leaves the device, as the device reports it."""
        if self.output == "none" or not len(audio.samples):
            return
        self._loop = asyncio.get_running_loop()
        if self._stream is None:
            await self._open(audio.rate)
        samples = audio.samples
        if audio.rate != self._rate:
            samples = Resampler(audio.rate, self._rate)(samples)
        samples = np.clip(samples * self._volume, -1.0, 1.0).astype(np.float32)
        with self._lock:
            fresh_s = LEAD_IN_S - (time.monotonic() - self._opened_at)
            if not self._chunks and fresh_s > 0:
                lead_in = np.zeros(round(fresh_s * self._rate), np.float32)
                self._chunks.append(lead_in)
                self._queued += len(lead_in)
            if on_audible is not None:
                self._marks.append((self._played + self._queued, on_audible))
            self._chunks.append(samples)
            self._queued += len(samples)
            queued_s = self._queued / self._rate
        self._hold(queued_s)
        self._drained.clear()
        self._last_sound = time.monotonic()

    async def prepare(self) -> None:
        """Open the stream ahead of speech (while the user is still speaking), so that the first
        sentence plays as soon as it is ready instead of after a fresh stream's lead-in. A device
        that cannot be opened is reported (`lost`) and tried again by `play`."""
        if self.output == "none" or self._stream is not None:
            return
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(OutputLost):
            await self._open(VOICE_RATE)
            self._last_sound = time.monotonic()  # closed after IDLE_CLOSE_S if nothing is said

    def stop(self) -> None:
        """Drop everything not yet played: silence within one block."""
        with self._lock:
            self._chunks.clear()
            self._queued = 0
            self._marks.clear()  # never heard
        self._hold(0.0)
        self._drained.set()

    async def cut(self) -> None:
        """Silence at once: drop the queue and abort the stream, whose buffers go with it (the
        next sentence opens it again)."""
        self.stop()
        if self._stream is not None:
            await self._close("closed", "stopped")

    def release(self) -> None:
        """End the microphone's hold now, tail included: after a barge-in nothing more is
        played, and the request said after the wake word must be heard."""
        self._hold_until = 0.0

    async def drained(self) -> None:
        """Wait until every queued sample went to the device (or the device was lost)."""
        await self._drained.wait()

    # --- the stream ------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch the open stream: a stopped one is lost; a quiet one is closed. Until cancelled."""
        try:
            while True:
                await asyncio.sleep(WATCH_S)
                if self._stream is None:
                    continue
                if not self._stream.active:
                    await self._close("lost", "the output stream stopped")
                elif self._drained.is_set() and time.monotonic() - self._last_sound > IDLE_CLOSE_S:
                    await self._close("closed", "nothing to play")
        finally:
            if self._stream is not None:
                await self._close("closed", "shutting down")

    async def _open(self, rate: int) -> None:
        # Imported here: `import sounddevice` fails where PortAudio is missing, and a daemon
        # that never speaks must not need it.
        import sounddevice as sd  # type: ignore[import-untyped]

        loop = asyncio.get_running_loop()
        try:
            self._stream, self._rate = await in_daemon_thread(self._start, sd, loop, rate)
        except (sd.PortAudioError, ValueError, OSError, TimeoutError) as exc:
            self._set_state("lost", f"cannot open: {exc}")
            raise OutputLost(f"the output device '{self.output}' cannot be opened: {exc}") from exc
        self._latency_s = float(self._stream.latency)
        self._opened_at = time.monotonic()
        self._set_state("open", f"{self._rate} Hz")

    def _start(self, sd: Any, loop: asyncio.AbstractEventLoop, rate: int) -> tuple[Any, int]:
        try:
            sd.check_output_settings(self._device, channels=1, dtype="float32", samplerate=rate)
        except (sd.PortAudioError, ValueError):
            # The device will not play at the voice's rate: take its own and convert here.
            rate = int(sd.query_devices(self._device, "output")["default_samplerate"])
        block = max(1, round(rate * BLOCK_S))
        stream = sd.OutputStream(
            device=self._device,
            channels=1,
            samplerate=rate,
            dtype="float32",
            blocksize=block,
            latency=LATENCY_S,
            callback=lambda out, frames, when, status: self._fill(out, frames, when, rate, loop),
        )
        stream.start()
        return stream, rate

    def _fill(
        self, out: Any, frames: int, when: Any, rate: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        """PortAudio's thread: copy queued audio into `out`, silence after it; quick."""
        filled = 0
        heard: list[tuple[int, Callable[[float], None]]] = []
        with self._lock:
            while filled < frames and self._chunks:
                chunk = self._chunks[0]
                take = min(frames - filled, len(chunk))
                out[filled : filled + take, 0] = chunk[:take]
                filled += take
                if take == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[take:]
            self._queued -= filled
            while self._marks and self._marks[0][0] < self._played + filled:
                position, callback = self._marks.popleft()
                heard.append((position - self._played, callback))
            self._played += filled
            left_s = self._queued / rate
            empty = not self._chunks
        out[filled:, 0] = 0.0
        # The device says when this block reaches the speaker; behind a sound server that
        # can be later than the latency the stream reported when it opened.
        ahead = min(MAX_AHEAD_S, max(0.0, float(when.outputBufferDacTime - when.currentTime)))
        now = time.monotonic()
        if self.reference is not None:
            self.reference.played(out[:, 0], rate, now + ahead)
        if filled:
            self._hold(left_s + frames / rate + max(0.0, ahead - self._latency_s))
            for offset, callback in heard:
                with contextlib.suppress(RuntimeError):  # a closed loop: the daemon is exiting
                    loop.call_soon_threadsafe(callback, now + ahead + offset / rate)
            if empty:
                with contextlib.suppress(RuntimeError):  # a closed loop: the daemon is exiting
                    loop.call_soon_threadsafe(self._drained.set)

    def _hold(self, playing_s: float) -> None:
        until = time.monotonic() + playing_s + self._latency_s + self._hold_s
        self._hold_until = max(self._hold_until, until) if playing_s else until

    async def _close(self, state: str, detail: str) -> None:
        stream, self._stream = self._stream, None
        self.stop()
        self._set_state(state, detail)
        try:
            await in_daemon_thread(_close_quietly, stream)
        except TimeoutError:
            log.warning("closing the output stream did not finish; left behind")

    def _set_state(self, state: str, detail: str) -> None:
        if state != self.state:
            level = logging.WARNING if state == "lost" else logging.INFO
            log.log(level, "speaker %s: %s (%s)", self.output, state, detail)
            self.state = state
            self._on_state(state, detail)


def _close_quietly(stream: Any) -> None:
    import sounddevice as sd

    try:
        stream.abort()
        stream.close()
    except sd.PortAudioError as exc:  # a stream whose server vanished may fail to close: gone
        log.debug("closing a lost output stream: %s", exc)
