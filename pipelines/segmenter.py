"""Cutting a stream of VAD-scored audio frames into utterances: pure logic, no I/O.

Modelled on Home Assistant's VoiceCommandSegmenter: an utterance opens after `min_speech_s` of
speech, carries `pre_roll_s` of the audio before it (so the first syllable, which the VAD is slow
to score, is not cut off), and closes after `min_silence_s` of silence or at `max_utterance_s`.
Two thresholds give hysteresis, as Silero's own reference code does: a frame starts speech at
`threshold` but only counts as silence below `threshold - 0.15`, so the dip between two words does
not end an utterance.

The start has the same hysteresis as the end: speech frames count towards `min_speech_s` until
`min_silence_s` passes without one, so a short first word, a pause and a second word ("front ...
left") open one utterance, and two words each shorter than `min_speech_s` still add up. The
utterance then reaches back to the first voiced frame of that speech, plus the pre-roll: the first
word is never cut off because the start count completed only on the second.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float32]
EndReason = Literal["silence", "early", "max_length", "end_of_stream"]


@dataclass(frozen=True)
class UtteranceStarted:
    start_s: float
    """Stream time of the utterance's first sample (pre-roll included)."""


@dataclass(frozen=True)
class UtteranceEnded:
    audio: Samples
    """The whole utterance: pre-roll, speech and the trailing silence that closed it."""
    start_s: float
    end_s: float
    reason: EndReason
    voiced: int = -1
    """Samples from the utterance's first to its last voiced one (-1: all of it)."""


SegmentEvent = UtteranceStarted | UtteranceEnded


@dataclass
class SpeechSegmenter:
    """Feed frames with their speech probability; get utterance start and end events back."""

    sample_rate: int = 16_000
    threshold: float = 0.5
    min_speech_s: float = 0.3
    min_silence_s: float = 0.7
    pre_roll_s: float = 0.5
    max_utterance_s: float = 15.0
    _in_speech: bool = field(default=False, init=False)
    _speech_run: int = field(default=0, init=False)
    """Voiced samples of the candidate start while idle (dips shorter than `min_silence_s`
    between them do not reset it)."""
    _candidate: int = field(default=0, init=False)
    """Samples from the candidate's first voiced frame to now (0: no candidate)."""
    _silence_run: int = field(default=0, init=False)
    """Samples since the last voiced frame: of the open utterance, or of the candidate start."""
    _frames: deque[Samples] = field(default_factory=deque, init=False)
    _buffered: int = field(default=0, init=False)
    _position: int = field(default=0, init=False)
    """Samples seen since the start of the stream."""

    @property
    def in_utterance(self) -> bool:
        return self._in_speech

    @property
    def buffered_s(self) -> float:
        """Seconds of audio held: the open utterance, or pre-roll and a candidate start."""
        return self._seconds(self._buffered)

    @property
    def buffered_samples(self) -> int:
        return self._buffered

    @property
    def position(self) -> int:
        """Samples segmented since the start: the stream time of the audio fed next."""
        return self._position

    @property
    def silence_samples(self) -> int:
        """Samples of silence since the last voiced frame of the open utterance."""
        return self._silence_run if self._in_speech else 0

    def snapshot(self) -> Samples:
        """The open utterance so far (a copy), for a partial transcription."""
        return np.concatenate(list(self._frames)).astype(np.float32, copy=False)

    def end_early(self) -> UtteranceEnded:
        """Close the open utterance now: the speculative transcript says it is complete."""
        return self._close("early")

    @property
    def neg_threshold(self) -> float:
        return max(self.threshold - 0.15, 0.01)

    def process(self, frame: Samples, speech_prob: float) -> list[SegmentEvent]:
        """Take one frame (any length) and the VAD's speech probability for it."""
        events: list[SegmentEvent] = []
        self._frames.append(frame)
        self._buffered += len(frame)
        self._position += len(frame)
        if not self._in_speech:
            self._candidate_step(len(frame), speech_prob >= self.threshold)
            # Keep the candidate from its first voiced frame, and the pre-roll before that.
            self._trim_to(self._candidate + self._samples(self.pre_roll_s))
            if self._speech_run >= self._samples(self.min_speech_s):
                self._in_speech, self._silence_run, self._candidate = True, 0, 0
                events.append(UtteranceStarted(self._seconds(self._position - self._buffered)))
            return events
        silent = speech_prob < self.neg_threshold
        self._silence_run = self._silence_run + len(frame) if silent else 0
        if self._silence_run >= self._samples(self.min_silence_s):
            events.append(self._close("silence"))
        elif self._buffered >= self._samples(self.max_utterance_s):
            events.append(self._close("max_length"))
        return events

    def _candidate_step(self, length: int, voiced: bool) -> None:
        """Count one frame towards (or against) the start of an utterance."""
        if voiced:
            self._speech_run += length
            self._candidate += length
            self._silence_run = 0
        elif self._candidate:
            self._candidate += length
            self._silence_run += length
            if self._silence_run >= self._samples(self.min_silence_s):
                # As long a pause as ends an utterance: what came before was not its start.
                self._speech_run = self._candidate = self._silence_run = 0

    def flush(self) -> UtteranceEnded | None:
        """End of the stream: close an open utterance, forget a candidate one."""
        if self._in_speech:
            return self._close("end_of_stream")
        self.reset()
        return None

    def reset(self) -> None:
        """Drop everything buffered (used when muting); stream time keeps counting."""
        self._frames.clear()
        self._buffered = self._speech_run = self._silence_run = self._candidate = 0
        self._in_speech = False

    def _close(self, reason: EndReason) -> UtteranceEnded:
        audio = np.concatenate(list(self._frames)).astype(np.float32, copy=False)
        end, voiced = self._position, self._buffered - self._silence_run
        self.reset()
        start, stop = self._seconds(end - len(audio)), self._seconds(end)
        return UtteranceEnded(audio, start, stop, reason, voiced)

    def _trim_to(self, keep: int) -> None:
        """Drop whole frames from the front while the rest still holds `keep` samples."""
        while self._frames and self._buffered - len(self._frames[0]) >= keep:
            self._buffered -= len(self._frames.popleft())

    def _samples(self, seconds: float) -> int:
        return round(seconds * self.sample_rate)

    def _seconds(self, samples: int) -> float:
        return samples / self.sample_rate
