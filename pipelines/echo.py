"""Hearing the microphone with Tektra's own voice taken out of it (acoustic echo cancellation).

While Tektra speaks, the microphone hears its voice as loud as (or louder than) a person across the
room. The player knows exactly what it played and when the device said each block would leave
the speaker: that is the *reference*. `EchoCanceller` lines the reference up with the
microphone's samples and lets speexdsp's adaptive filter (Xiph's MDF canceller, BSD licence,
Debian's `libspeexdsp1`, called through ctypes: no compiler, no Python dependency) subtract it,
with speexdsp's residual echo suppressor after it. Only the wake-word detector hears the result
(barge-in: "okay nabu" said over the answer stops it); utterances stay held while Tektra speaks.

Lining up: both streams are continuous sample counts. The player stamps each block with the
time it reaches the speaker; the microphone's blocks with the time they were handed over (never
early, sometimes late: the earliest stamp is the truest). Those stamps place the reference to
within the devices' unreported latencies (tens of milliseconds); a cross-correlation of the
microphone against the reference over the last seconds (`estimate_delay`) then finds the delay
itself, which the canceller keeps `LEAD_S` ahead of the echo so that its causal filter can
model it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections import deque

import numpy as np

from pipelines.audio import RATE, Resampler, Samples

log = logging.getLogger(__name__)

FRAME = 160  # 10 ms at 16 kHz: speexdsp's frame
TAIL_S = 0.15  # the echo path the filter models: the room's reverberation and the alignment slack
LEAD_S = 0.02  # the reference is fed this much ahead of the echo's estimated delay
HISTORY_S = 6.0  # reference audio kept
SEARCH_S = 0.5  # the delay is looked for this far either side of the stamps' estimate
WINDOW_S = 2.0  # microphone audio the delay is estimated on
ESTIMATE_EVERY_S = 1.0
FIRST_ESTIMATE_S = 0.5  # of a stream: until then the stamps alone place the reference
MIN_CORRELATION = 0.3  # a weaker peak is no evidence (a quiet reference, a loud room)
STAMPS = 50  # block stamps remembered per stream
GAP_S = 0.5  # microphone audio this late after the last is a new stream (the hold began again)

_SET_SAMPLING_RATE = 24  # speex_echo.h
_SET_ECHO_STATE = 24  # speex_preprocess.h
_SET_DENOISE = 0
_SET_AGC = 2

_INT16_P = ctypes.POINTER(ctypes.c_int16)


class _Speex:
    """The five speexdsp calls the canceller needs."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self.lib = library
        library.speex_echo_state_init.restype = ctypes.c_void_p
        library.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
        library.speex_echo_cancellation.restype = None
        library.speex_echo_cancellation.argtypes = [ctypes.c_void_p, _INT16_P, _INT16_P, _INT16_P]
        library.speex_echo_ctl.restype = ctypes.c_int
        library.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        library.speex_echo_state_reset.restype = None
        library.speex_echo_state_reset.argtypes = [ctypes.c_void_p]
        library.speex_echo_state_destroy.restype = None
        library.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
        library.speex_preprocess_state_init.restype = ctypes.c_void_p
        library.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
        library.speex_preprocess_ctl.restype = ctypes.c_int
        library.speex_preprocess_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        library.speex_preprocess_run.restype = ctypes.c_int
        library.speex_preprocess_run.argtypes = [ctypes.c_void_p, _INT16_P]
        library.speex_preprocess_state_destroy.restype = None
        library.speex_preprocess_state_destroy.argtypes = [ctypes.c_void_p]


_speex: _Speex | None = None
_speex_lock = threading.Lock()


def speexdsp() -> _Speex | None:
    """speexdsp, or None where `libspeexdsp` is not installed."""
    global _speex
    with _speex_lock:
        if _speex is None:
            for name in (ctypes.util.find_library("speexdsp"), "libspeexdsp.so.1"):
                if not name:
                    continue
                try:
                    _speex = _Speex(ctypes.CDLL(name))
                    break
                except (OSError, AttributeError):
                    continue
        return _speex


def available() -> bool:
    return speexdsp() is not None


class SpeexFilter:
    """speexdsp's echo canceller and residual echo suppressor on 16 kHz int16 frames."""

    def __init__(self, tail_s: float = TAIL_S, suppress: bool = True) -> None:
        speex = speexdsp()
        if speex is None:
            raise RuntimeError("libspeexdsp is not installed")
        self._lib = speex.lib
        self._echo = self._lib.speex_echo_state_init(FRAME, round(tail_s * RATE))
        rate = ctypes.c_int(RATE)
        self._lib.speex_echo_ctl(self._echo, _SET_SAMPLING_RATE, ctypes.byref(rate))
        self._pre = None
        if suppress:
            self._pre = self._lib.speex_preprocess_state_init(FRAME, RATE)
            # The residual echo is suppressed by the denoiser's gains (with denoising off they
            # are all 1), so it stays on; gain control stays off: it would pump the echo up.
            on, off = ctypes.c_int(1), ctypes.c_int(0)
            self._lib.speex_preprocess_ctl(self._pre, _SET_DENOISE, ctypes.byref(on))
            self._lib.speex_preprocess_ctl(self._pre, _SET_AGC, ctypes.byref(off))
            self._lib.speex_preprocess_ctl(self._pre, _SET_ECHO_STATE, ctypes.c_void_p(self._echo))
        self._out = np.zeros(FRAME, np.int16)

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """One FRAME of int16 microphone and reference: the microphone without the echo."""
        mic = np.ascontiguousarray(mic, np.int16)
        ref = np.ascontiguousarray(ref, np.int16)
        out = np.empty(FRAME, np.int16)
        self._lib.speex_echo_cancellation(
            self._echo, mic.ctypes.data_as(_INT16_P), ref.ctypes.data_as(_INT16_P),
            out.ctypes.data_as(_INT16_P),
        )  # fmt: skip
        if self._pre is not None:
            self._lib.speex_preprocess_run(self._pre, out.ctypes.data_as(_INT16_P))
        return out

    def reset(self) -> None:
        self._lib.speex_echo_state_reset(self._echo)

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if self._pre is not None:
            lib.speex_preprocess_state_destroy(self._pre)
        lib.speex_echo_state_destroy(self._echo)


class EchoReference:
    """What the player played, at 16 kHz, and when it reached the speaker. `played` is called
    from PortAudio's thread with every block it gives the device (silence included: the
    reference is as continuous as the output stream)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._audio = np.zeros(round(HISTORY_S * RATE), np.float32)  # a ring
        self._end = 0  # samples ever written
        self._stamps: deque[float] = deque(maxlen=STAMPS)  # time of sample 0, per block
        self._resampler: Resampler | None = None

    def played(self, block: Samples, rate: int, at: float) -> None:
        """`block` (at `rate`) starts leaving the speaker at time.monotonic() `at`."""
        if self._resampler is None or self._resampler.rate_in != rate:
            self._resampler = Resampler(rate)
        samples = self._resampler(block)
        size = len(self._audio)
        with self._lock:
            start = self._end
            origin = at - start / RATE
            if self._stamps and abs(origin - self._stamps[-1]) > GAP_S:
                self._stamps.clear()  # a new output stream: its own latency, its own origin
            self._stamps.append(origin)
            for piece in range(0, len(samples), size):
                part = samples[piece : piece + size]
                where = (start + piece) % size
                first = min(len(part), size - where)
                self._audio[where : where + first] = part[:first]
                self._audio[: len(part) - first] = part[first:]
            self._end = start + len(samples)

    def origin(self) -> float | None:
        """time.monotonic() at which reference sample 0 left the speaker (None before any)."""
        with self._lock:
            return float(np.median(self._stamps)) if self._stamps else None

    def span(self, start: int, count: int) -> Samples:
        """Reference samples [start, start + count): silence where none were played or kept."""
        out = np.zeros(count, np.float32)
        size = len(self._audio)
        with self._lock:
            lo, hi = max(start, self._end - size, 0), min(start + count, self._end)
            for index in range(lo, hi, size):
                upto = min(hi, index + size)
                where = index % size
                first = min(upto - index, size - where)
                out[index - start : index - start + first] = self._audio[where : where + first]
                rest = upto - index - first
                out[index - start + first : index - start + first + rest] = self._audio[:rest]
        return out


def estimate_delay(mic: Samples, ref: Samples, max_lag: int) -> tuple[int, float]:
    """The lag L (0..max_lag) at which `ref` best explains `mic`, and the normalised
    correlation there. `ref` is `len(mic) + max_lag` long; lag L means the echo in `mic[n]` is
    `ref[max_lag + n - L]`."""
    n = len(ref) + len(mic)
    size = 1 << (n - 1).bit_length()
    spectrum = np.fft.rfft(ref, size) * np.conj(np.fft.rfft(mic, size))
    corr = np.fft.irfft(spectrum, size)[: max_lag + 1]  # corr[k] = sum mic[n] ref[n + k]
    # Normalise by the energy of each window of ref that the lag compares with.
    energy = np.concatenate([[0.0], np.cumsum(ref.astype(np.float64) ** 2)])
    windows = energy[np.arange(max_lag + 1) + len(mic)] - energy[np.arange(max_lag + 1)]
    norm = np.sqrt(np.maximum(windows, 1e-12) * max(float(np.dot(mic, mic)), 1e-12))
    score = np.abs(corr) / norm
    k = int(np.argmax(score))
    return max_lag - k, float(score[k])


class EchoCanceller:
    """The microphone, block by block, with `reference` lined up and cancelled out of it.

    `cancel` is called with every microphone block while the canceller is wanted (Tektra
    speaks), in order, on one thread; a pause longer than GAP_S starts a new stream."""

    def __init__(self, reference: EchoReference, *, tail_s: float = TAIL_S) -> None:
        self.reference = reference
        self._filter = SpeexFilter(tail_s)
        self._mic_index = 0
        self._mic_stamps: deque[float] = deque(maxlen=STAMPS)
        self._last_block = float("-inf")
        self._pending = np.zeros(0, np.float32)
        self._history: deque[Samples] = deque()  # raw microphone audio for the delay estimate
        self._history_len = 0
        # Reference index of microphone sample 0: as the stamps say (`_stamped`), and as used
        # (`_shift`): the stamps plus `_correction`, which the cross-correlation finds and which
        # outlives a stream (the same devices, the same latency: the filter stays converged).
        self._stamped: int | None = None
        self._shift: int | None = None
        self._correction = 0
        self._located = False  # the cross-correlation placed this stream
        self._next_estimate = 0
        self.delay_s: float | None = None
        """The echo's delay behind the player's stamps, as last estimated (for the record)."""

    def cancel(self, block: Samples, now: float | None = None) -> Samples:
        """`block` (16 kHz float) without Tektra's voice; `now` is when it was handed over."""
        now = time.monotonic() if now is None else now
        if now - self._last_block > GAP_S:
            self._restart()
        self._last_block = now
        end = self._mic_index + len(block)
        self._mic_stamps.append(now - end / RATE)
        self._remember(block)
        origin = self.reference.origin()
        if origin is None:
            self._mic_index = end
            return block
        # The earliest stamp is the truest: a block is never handed over before it was heard.
        self._stamped = round((min(self._mic_stamps) - origin) * RATE)
        if not self._located:  # until the echo itself was found, the stamps are all there is
            shift = self._stamped + self._correction
            if self._shift is None or abs(shift - self._shift) > 0.02 * RATE:
                self._shift = shift
        if end >= self._next_estimate:
            self._estimate(end)
            self._next_estimate = end + round(ESTIMATE_EVERY_S * RATE)
        audio = np.concatenate([self._pending, block])
        usable = len(audio) - len(audio) % FRAME
        first = self._mic_index - len(self._pending)  # microphone index of audio[0]
        self._pending = audio[usable:]
        self._mic_index = end
        if not usable:
            return np.zeros(0, np.float32)
        assert self._shift is not None
        ref = self.reference.span(first + self._shift + round(LEAD_S * RATE), usable)
        mic16 = _to_int16(audio[:usable])
        ref16 = _to_int16(ref)
        out = np.empty(usable, np.int16)
        for at in range(0, usable, FRAME):
            out[at : at + FRAME] = self._filter.process(
                mic16[at : at + FRAME], ref16[at : at + FRAME]
            )
        return out.astype(np.float32) / 32768.0

    def _restart(self) -> None:
        self._mic_index = 0
        self._mic_stamps.clear()
        self._pending = np.zeros(0, np.float32)
        self._history.clear()
        self._history_len = 0
        self._stamped = self._shift = None
        self._located = False
        self._next_estimate = round(FIRST_ESTIMATE_S * RATE)

    def _remember(self, block: Samples) -> None:
        self._history.append(block)
        self._history_len += len(block)
        while self._history_len - len(self._history[0]) >= WINDOW_S * RATE:
            self._history_len -= len(self._history.popleft())

    def _estimate(self, end: int) -> None:
        """Find the echo's delay by cross-correlation; keep the old one on weak evidence."""
        if self._stamped is None or self._shift is None or not self._history:
            return
        mic = np.concatenate(self._history)
        start = end - len(mic)
        search = round(SEARCH_S * RATE)
        ref = self.reference.span(start + self._stamped - search, len(mic) + 2 * search)
        if float(np.dot(ref, ref)) < 1e-6 * len(ref) or float(np.dot(mic, mic)) < 1e-8 * len(mic):
            return  # nothing played, or nothing heard: no evidence
        # lag L in 0..2*search: the echo in mic[n] is ref[2*search + n - L], i.e. reference
        # index start + stamped + search - L.
        lag, score = estimate_delay(mic, ref, 2 * search)
        if score < MIN_CORRELATION:
            return
        self._located = True
        shift = self._stamped + search - lag
        if abs(shift - self._shift) > FRAME // 2:
            self._filter.reset()  # a new alignment: the filter modelled the wrong path
            self._shift = shift
            log.info(
                "echo: %.0f ms later than stamped (correlation %.2f)", (lag - search) / 16, score
            )
        self._correction = self._shift - self._stamped
        self.delay_s = -self._correction / RATE


def _to_int16(samples: Samples) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
