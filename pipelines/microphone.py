"""The microphone through sounddevice (PortAudio), supervised: a lost device is reopened.

PortAudio calls back on its own thread. That thread never touches the event loop's objects: it
hands each block over with `call_soon_threadsafe`, and the loop side puts it in the bounded
queue. A device counts as lost when its stream stops or when no block arrived for
`STALL_S` (a PulseAudio server that went away leaves the stream "active" but silent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from pipelines.audio import RATE, Resampler, Samples
from pipelines.events import DeviceState

log = logging.getLogger(__name__)

STALL_S = 5.0  # PulseAudio through ALSA takes ~2 s to deliver the first block
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
REINIT_AFTER = 3  # failed reopen attempts before PortAudio's device list is rebuilt
PORTAUDIO_TIMEOUT_S = 15.0
T = TypeVar("T")


QUIET_BATCH = 3
"""Quiet blocks handed over together while the VAD is paused: a third of the loop's wake-ups
in a silent room, and no delay where it matters (a louder block goes at once)."""
PIECE = 400  # samples: 25 ms, shorter than the VAD's 32 ms frame, so no frame's loudness hides


def _quieter_than(block: Samples, limit: float) -> bool:
    """Every 25 ms piece of `block` is below half of `limit` RMS (half: the VAD measures other
    windows of the same audio, and a block it would open the gate on must not wait)."""
    whole = len(block) // PIECE * PIECE
    pieces = block[:whole].reshape(-1, PIECE)
    energy = np.einsum("ij,ij->i", pieces, pieces) / PIECE
    tail = block[whole:]
    loudest = max(float(energy.max(initial=0.0)), float(np.mean(tail * tail)) if len(tail) else 0.0)
    return loudest < (limit / 2) ** 2


def parse_device(source: str) -> int | str | None:
    """`auto` → the default input (None); digits → an index; anything else → a name (substring)."""
    if source == "auto":
        return None
    return int(source) if source.isdigit() else source


def backoff_delays(first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_MAX_S) -> list[float]:
    """Delays between reopen attempts: doubling from `first`, then `cap` for ever after."""
    delays, delay = [], first
    while delay < cap:
        delays.append(delay)
        delay *= 2
    return [*delays, cap]


@dataclass
class RepeatedReport:
    """When a report that keeps coming back (a device lost at every reopen attempt) is logged
    again: at once when it changes, else after `first_s`, then twice as long each time, at most
    every `max_s`. A headless machine retries for ever; its log must not fill with one line."""

    first_s: float = 60.0
    max_s: float = 3600.0
    report: str | None = None
    repeats: int = 0
    """Times the current report came back since it was last logged."""
    _gap: float = 0.0
    _next_at: float = 0.0

    def should_log(self, report: str | None, now: float) -> bool:
        """Whether to log `report` at `now`; None forgets the report (the device came back)."""
        if report != self.report:
            self.report, self.repeats, self._gap = report, 0, self.first_s
            self._next_at = now + self._gap
            return report is not None
        self.repeats += 1
        if now < self._next_at:
            return False
        self.repeats = 0
        self._gap = min(self._gap * 2, self.max_s)
        self._next_at = now + self._gap
        return True


class Microphone:
    """Captures 16 kHz mono float32 blocks and passes each to `deliver` on the event loop."""

    def __init__(
        self,
        source: str,
        deliver: Callable[[Samples], None],
        on_state: Callable[[DeviceState], None],
        block_ms: int = 100,
    ) -> None:
        self.source = source
        self.block_ms = block_ms
        self.quiet_below: float | None = None
        """Set from the loop while its VAD has paused in a stationary silence: blocks quieter
        than this RMS throughout are handed over QUIET_BATCH at a time (nothing waits for them,
        and each hand-over wakes the loop); a louder block goes at once, after those before it."""
        self._device = parse_device(source)
        self._deliver = deliver
        self._on_state = on_state
        # time.monotonic() of the last block; written by PortAudio's thread, read by the watcher.
        self._last_block = 0.0
        self._lost = RepeatedReport()

    async def run(self) -> None:
        """Open, watch, reopen with backoff, until cancelled. Never raises for a lost device."""
        # Imported here: `import sounddevice` raises OSError where PortAudio is not installed,
        # and a daemon with `[audio] source = "none"` must not need it.
        import sounddevice as sd  # type: ignore[import-untyped]

        loop = asyncio.get_running_loop()
        delays = backoff_delays()
        attempt = 0
        while True:
            if attempt:
                self._state("reopening", f"attempt {attempt + 1}")
            if attempt >= REINIT_AFTER:
                # PortAudio lists devices once, at initialisation: a device that came back
                # (a USB microphone plugged in again) is seen only after re-initialising.
                # Sound-server devices (pulse, default) reconnect on open, so this is tried
                # only once plain reopening has failed a few times.
                try:
                    await in_daemon_thread(_reinitialise, sd)
                except (sd.PortAudioError, TimeoutError) as exc:
                    self._state("lost", f"cannot re-initialise PortAudio: {exc}")
            try:
                stream, rate = await _finish_even_if_cancelled(
                    in_daemon_thread(self._open, sd, loop), _close_quietly
                )
            except (sd.PortAudioError, ValueError, OSError, TimeoutError) as exc:
                self._state("lost", f"cannot open: {exc}")
                await asyncio.sleep(delays[min(attempt, len(delays) - 1)])
                attempt += 1
                continue
            try:
                # "open" means audio is arriving: behind ALSA's PulseAudio plugin the first
                # block comes ~2 s after the stream starts, and sound played before it is lost.
                reason = await self._first_block(opened_at=time.monotonic())
                if reason is None:
                    self._state("open", f"{rate} Hz")
                    attempt = 0
                    reason = await self._watch(stream)
            finally:
                try:
                    await in_daemon_thread(_close_quietly, stream)
                except TimeoutError:
                    log.warning("closing the lost input stream did not finish; left behind")
            self._state("lost", reason)
            await asyncio.sleep(delays[min(attempt, len(delays) - 1)])
            attempt += 1

    def _open(self, sd: Any, loop: asyncio.AbstractEventLoop) -> tuple[Any, int]:
        try:
            sd.check_input_settings(self._device, channels=1, dtype="float32", samplerate=RATE)
            rate = RATE
        except (sd.PortAudioError, ValueError):
            # The device will not run at 16 kHz: take its own rate and convert here.
            rate = int(sd.query_devices(self._device, "input")["default_samplerate"])
        resample = Resampler(rate)
        quiet: list[Samples] = []

        def callback(indata: Any, frames: int, when: Any, status: Any) -> None:
            # PortAudio's thread: copy (the buffer is reused), convert, hand over, return quickly.
            self._last_block = time.monotonic()
            block = resample(np.array(indata[:, 0], dtype=np.float32))
            limit = self.quiet_below
            if limit is not None and _quieter_than(block, limit):
                quiet.append(block)
                if len(quiet) < QUIET_BATCH:
                    return
            elif quiet:
                quiet.append(block)
            if quiet:
                block = np.concatenate(quiet)
                quiet.clear()
            try:
                loop.call_soon_threadsafe(self._deliver, block)
            except RuntimeError as exc:  # the loop is closed: the daemon is shutting down
                raise sd.CallbackAbort from exc

        block = max(1, rate * self.block_ms // 1000)
        stream = sd.InputStream(
            device=self._device,
            channels=1,
            samplerate=rate,
            dtype="float32",
            # Whole blocks of `block_ms`: every callback costs a thread hop and a loop wake-up
            # (with blocksize 0, ALSA's PulseAudio plugin calls ~115 times a second). The
            # latency is asked for explicitly: left at PortAudio's low default, a fixed
            # blocksize stalls behind that plugin (one callback in 1.5 s, measured).
            blocksize=block,
            latency=max(0.05, block / rate / 2),
            callback=callback,
        )
        stream.start()
        return stream, rate

    async def _first_block(self, opened_at: float) -> str | None:
        """None once a block arrived after `opened_at`; why not, after STALL_S without one."""
        while self._last_block <= opened_at:
            if time.monotonic() - opened_at > STALL_S:
                return f"no audio within {STALL_S:.0f} s of opening"
            await asyncio.sleep(0.05)
        return None

    async def _watch(self, stream: Any) -> str:
        """Return why the stream is lost, as soon as it is."""
        while True:
            await asyncio.sleep(0.25)
            if not stream.active:
                return "the stream stopped"
            silent_for = time.monotonic() - self._last_block
            if silent_for > STALL_S:
                return f"no audio for {silent_for:.1f} s"

    def _state(self, state: Any, detail: str) -> None:
        repeats = self._lost.repeats
        if state == "reopening":  # every attempt: the `lost` line that follows says enough
            log.debug("microphone %s: %s (%s)", self.source, state, detail)
        elif self._lost.should_log(detail if state == "lost" else None, time.monotonic()):
            again = f"; {repeats + 1} times since last logged" if repeats else ""
            log.info("microphone %s: %s (%s)%s", self.source, state, detail, again)
        elif state == "lost":
            log.debug("microphone %s: %s (%s)", self.source, state, detail)
        else:
            log.info("microphone %s: %s (%s)", self.source, state, detail)
        self._on_state(DeviceState("microphone", self.source, state, detail))


async def _finish_even_if_cancelled(
    opening: Coroutine[Any, Any, tuple[Any, int]], close: Callable[[Any], None]
) -> tuple[Any, int]:
    """Await a stream being opened in a thread; if we are cancelled meanwhile, let the open
    finish and close the stream, so a cancelled daemon never leaves a device held open."""
    task = asyncio.ensure_future(opening)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            stream, _ = await task
        except Exception as exc:  # the open failed after all: nothing to close, only to note
            log.debug("a cancelled open failed: %s", exc)
        else:
            with contextlib.suppress(TimeoutError):
                await in_daemon_thread(close, stream)
        raise


async def in_daemon_thread(
    call: Callable[..., T], *args: Any, timeout: float = PORTAUDIO_TIMEOUT_S
) -> T:
    """Run a PortAudio call on a thread of its own, marked daemon, and give up waiting after
    `timeout`. A sound system that stops answering can leave a call blocked inside ALSA for
    ever; on the default executor that thread would also block the daemon's exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result = call(*args)
        except BaseException as exc:  # delivered to the awaiting coroutine, never lost here
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(settle, None, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name=f"portaudio-{call.__name__}", daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.shield(done), timeout)
    except asyncio.TimeoutError as exc:
        raise TimeoutError(f"the sound system did not answer within {timeout:.0f} s") from exc


def _reinitialise(sd: Any) -> None:
    # Closes every PortAudio stream of the process: fine while the microphone is the only one.
    sd._terminate()
    sd._initialize()


def _close_quietly(stream: Any) -> None:
    import sounddevice as sd

    try:
        stream.abort()
        stream.close()
    except sd.PortAudioError as exc:  # closing a stream whose server vanished can fail; it is gone
        log.debug("closing a lost input stream: %s", exc)
