"""Silero VAD through onnxruntime, frame by frame, with its recurrent state carried along.

The model is the one faster-whisper ships (`faster_whisper/assets/silero_vad_v6.onnx`): the same
Silero VAD as the `silero-vad` package, without that package's hard torch dependency. It takes
512 samples at 16 kHz preceded by the last 64 samples of the previous frame, plus the LSTM state
`h`, `c`; one session is shared, and each audio stream keeps its own `VadStream` state.
"""

from __future__ import annotations

import threading
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

    def stream(self) -> VadStream:
        return VadStream(self)

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


class VadStream:
    """Speech probabilities for one continuous stream, in 512-sample frames.

    Audio arrives in chunks of any length; whole frames are scored and the remainder waits for the
    next chunk. Not thread-safe: one stream is fed by one consumer.
    """

    def __init__(self, model: SileroVad) -> None:
        self._model = model
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)

    def process(self, chunk: Samples) -> list[tuple[Samples, float]]:
        """Each complete 512-sample frame of `pending + chunk` with its speech probability."""
        audio = np.concatenate([self._pending, chunk.astype(np.float32, copy=False)])
        count = len(audio) // FRAME
        self._pending = audio[count * FRAME :]
        if count == 0:
            return []
        frames = audio[: count * FRAME].reshape(count, FRAME)
        # Each frame is preceded by the last CONTEXT samples of the one before it. All frames of
        # a chunk go in one run: the model carries its LSTM state from row to row itself (the
        # probabilities equal frame-by-frame runs exactly), and each run has a fixed cost.
        contexts = np.concatenate([self._context[np.newaxis, :], frames[:-1, -CONTEXT:]])
        batch = np.concatenate([contexts, frames], axis=1)
        probs, self._h, self._c = self._model.run(batch, self._h, self._c)
        self._context = frames[-1, -CONTEXT:].copy()
        return [(frame, float(p)) for frame, p in zip(frames, probs, strict=True)]
