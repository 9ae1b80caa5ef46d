"""Silero VAD through onnxruntime, frame by frame, with its recurrent state carried along.

The model is the one faster-whisper ships (`faster_whisper/assets/silero_vad_v6.onnx`): the same
Silero VAD as the `silero-vad` package, without that package's hard torch dependency. It takes
512 samples at 16 kHz preceded by the last 64 samples of the previous frame, plus the LSTM state
`h`, `c`; one session is shared, and each audio stream keeps its own `VadStream` state.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.core.errors import TektraError
from daemon.core.sources import package_dir

FRAME = 512
CONTEXT = 64
SAMPLE_RATE = 16_000

Samples = npt.NDArray[np.float32]


class VadUnavailable(TektraError):
    code = "vad_unavailable"


def bundled_model() -> Path:
    """faster-whisper's copy of the Silero model, found without importing faster-whisper."""
    root = package_dir("faster_whisper")
    path = None if root is None else root / "assets" / "silero_vad_v6.onnx"
    if path is None or not path.exists():
        raise VadUnavailable("Silero VAD model not found: is faster-whisper installed?")
    return path


class SileroVad:
    """One loaded ONNX session; thread-safe (onnxruntime sessions may be run concurrently)."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime  # type: ignore[import-untyped]  # imported here: ~0.3 s, only when used

        options = onnxruntime.SessionOptions()
        # One thread: a 576-sample frame is far too small to gain from more, and the machine's
        # cores belong to Whisper and the LLM.
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self._session: Any = onnxruntime.InferenceSession(
            str(path or bundled_model()), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def stream(self, *, gate: bool = False) -> VadStream:
        return VadStream(self, gate=gate)

    def run(self, batch: Samples, h: Samples, c: Samples) -> tuple[Samples, Samples, Samples]:
        probs, h, c = self._session.run(None, {"input": batch, "h": h, "c": c})
        return np.asarray(probs, np.float32).reshape(-1), h, c


_shared: dict[Path, SileroVad] = {}
_shared_lock = threading.Lock()


def shared_vad(path: Path | None = None) -> SileroVad:
    """The process-wide session for `path` (the bundled model by default), loaded once."""
    key = path or bundled_model()
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SileroVad(key)
        return _shared[key]


# The energy gate (see `VadStream`). A frame is quiet below GATE_FLOOR_RATIO x the noise floor, or
# below QUIET_RMS whatever the floor (-50 dBFS: far under speech at a microphone, far over a
# quiet room's hiss); never above LOUD_RMS (-40 dBFS), so a noisy room just keeps Silero running.
QUIET_RMS = 10 ** (-50 / 20)
LOUD_RMS = 10 ** (-40 / 20)
GATE_FLOOR_RATIO = 2.0  # +6 dB: stationary noise rarely strays that far from its own average
FLOOR_ALPHA = 0.05  # per frame: the floor follows a room that gets noisier within ~1 s
NOT_SPEECH = 0.15  # below this Silero probability a frame counts towards closing the gate
GATE_AFTER = 32  # quiet, unvoiced frames (~1 s) before Silero pauses
HOLD = 3  # frames held back while gated (~96 ms): an onset's first frames get real scores
WARM = 6  # frames before the held ones that re-run through Silero to warm its state


class VadStream:
    """Speech probabilities for one continuous stream, in 512-sample frames.

    Audio arrives in chunks of any length; whole frames are scored and the remainder waits for the
    next chunk. Not thread-safe: one stream is fed by one consumer.

    With `gate=True` (the live microphone) an energy gate pauses Silero in stationary silence:
    after GATE_AFTER frames that are both quiet (RMS near the noise floor) and unvoiced, frames are
    no longer scored but given probability 0 — a silence that costs one dot product. They are held
    back HOLD frames so that when a loud frame opens the gate, Silero (its state reset, then
    warmed on the WARM frames before) scores the held frames too: the quiet start of a word
    ("f", "s") is scored as if Silero had never paused, and no onset is lost. The hold delays only
    the start of an utterance, never its end: the gate closes only while `process` is told no
    utterance is open, and an utterance's end is always more than GATE_AFTER frames after it.
    """

    def __init__(self, model: SileroVad, *, gate: bool = False) -> None:
        self._model = model
        self._gate = gate
        self.scored = 0
        """Frames Silero scored (warm-up frames included): what the gate saves is counted here."""
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._floor = QUIET_RMS / GATE_FLOOR_RATIO
        self._quiet_run = 0
        self._gated = False
        self._held: deque[Samples] = deque()
        self._history: deque[Samples] = deque(maxlen=WARM)

    @property
    def gated(self) -> bool:
        """Silero is paused: the stream is in stationary silence."""
        return self._gated

    @property
    def quiet_limit(self) -> float | None:
        """While gated: the RMS a frame must reach to open the gate (None while Silero runs)."""
        return self._limit() if self._gated else None

    def _limit(self) -> float:
        return min(max(QUIET_RMS, self._floor * GATE_FLOOR_RATIO), LOUD_RMS)

    def process(self, chunk: Samples, *, may_gate: bool = True) -> list[tuple[Samples, float]]:
        """Each complete 512-sample frame of `pending + chunk` with its speech probability (while
        gated, up to HOLD frames of it come back with the next chunk instead). `may_gate=False`
        (an utterance is open) keeps Silero running."""
        audio = np.concatenate([self._pending, chunk.astype(np.float32, copy=False)])
        count = len(audio) // FRAME
        self._pending = audio[count * FRAME :]
        if count == 0:
            return []
        frames = audio[: count * FRAME].reshape(count, FRAME)
        if not self._gate:
            return self._score(frames)
        rms = np.sqrt(np.einsum("ij,ij->i", frames, frames) / FRAME)
        limit = self._limit()
        quiet = bool(np.all(rms < limit))
        if self._gated and quiet:
            self._follow_floor(rms)
            self._held.extend(frames)
            out = []
            while len(self._held) > HOLD:
                frame = self._held.popleft()
                self._history.append(frame)
                out.append((frame, 0.0))
            self._context = frames[-1, -CONTEXT:].copy()
            return out
        if self._gated:  # a loud frame: Silero again, from a fresh state warmed on what came before
            self._gated = False
            self._h = np.zeros_like(self._h)
            self._c = np.zeros_like(self._c)
            held = list(self._held)
            self._held.clear()
            warm = list(self._history)
            self._history.clear()
            scored = self._score(np.stack(warm + held + list(frames)), fresh=True)
            scored = scored[len(warm) :]
        else:
            scored = self._score(frames)
        for (_, prob), level in zip(scored[-count:], rms, strict=True):
            if prob < NOT_SPEECH and level < limit:
                self._quiet_run += 1
                self._follow_floor(level)
            else:
                self._quiet_run = 0
        self._history.extend(frame for frame, _ in scored[-WARM:])
        if may_gate and self._quiet_run >= GATE_AFTER:
            self._gated = True
        return scored

    def _follow_floor(self, rms: Samples | float) -> None:
        for level in np.atleast_1d(rms):
            self._floor += FLOOR_ALPHA * (float(level) - self._floor)

    def _score(self, frames: Samples, *, fresh: bool = False) -> list[tuple[Samples, float]]:
        """Silero over `frames` in one run, each preceded by the last CONTEXT samples of the one
        before it (the first by the stream's, or by zeros with a `fresh` state)."""
        # All frames go in one run: the model carries its LSTM state from row to row itself (the
        # probabilities equal frame-by-frame runs exactly), and each run has a fixed cost.
        first = np.zeros(CONTEXT, np.float32) if fresh else self._context
        contexts = np.concatenate([first[np.newaxis, :], frames[:-1, -CONTEXT:]])
        batch = np.concatenate([contexts, frames], axis=1)
        probs, self._h, self._c = self._model.run(batch, self._h, self._c)
        self._context = frames[-1, -CONTEXT:].copy()
        self.scored += len(frames)
        return [(frame, float(p)) for frame, p in zip(frames, probs, strict=True)]
