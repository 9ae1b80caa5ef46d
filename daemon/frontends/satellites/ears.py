"""A satellite's ears: microphone blocks in; wakes and the requests said after them out.

The same pieces as the daemon's own pipeline (`pipelines`): Silero VAD and the segmenter cut
utterances, microWakeWord hears the wake word in the same audio. What goes to the hub is the
request: an utterance holding the wake word is cut at the wake (the hub's Whisper hears only
"what time is it"); a wake word said alone lets the next utterance in `follow_up_s` through; so
does an answer just heard. Nothing else ever leaves the room. No Whisper here: a satellite is
small.

`feed` is blocking (Silero, ~0.1 ms a frame; microWakeWord, ~0.03 ms): called on the loop for a
capture block, one call at a time.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from daemon.frontends.satellites.wire import Heard, loudness_db
from pipelines.audio import RATE, Samples
from pipelines.segmenter import SegmentEvent, SpeechSegmenter, UtteranceEnded
from pipelines.vad import VadStream
from pipelines.wakeword import WakeWordDetector

LOUDNESS_WINDOW = RATE
"""The wake's loudness is measured over the second of audio before it fired (the wake word)."""
MIN_REQUEST_S = 0.3
"""Less voiced audio than this after the wake is the wake word's own tail: it was said alone."""


@dataclass(frozen=True)
class Request:
    """What was said after wake `wake`, as 16 kHz float samples."""

    wake: str
    audio: Samples


@dataclass
class _Woken:
    wake: str
    at: int | None
    """Stream position of the wake inside the utterance being heard; None: the next utterance
    (until `until`) is the request."""
    until: float = float("inf")


class Ears:
    """Turns capture blocks into `Heard` wakes and `Request`s."""

    def __init__(
        self,
        detector: WakeWordDetector,
        vad: VadStream,
        segmenter: SpeechSegmenter,
        *,
        follow_up_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.detector, self.vad, self.segmenter = detector, vad, segmenter
        self.follow_up_s = follow_up_s
        self.clock = clock
        self.woken: _Woken | None = None
        self._recent: deque[Samples] = deque()
        self._recent_len = 0
        self._fed = 0

    def feed(self, block: Samples) -> list[Heard | Request]:
        out: list[Heard | Request] = []
        done = 0
        for wake in self.detector.process(block):
            upto = min(max(wake.offset, done), len(block))
            out += self._segment(block[done:upto])
            self._remember(block[done:upto])
            done = upto
            heard = Heard(
                uuid.uuid4().hex[:12], wake.name, wake.score, self._loudness(), time.time()
            )
            at = self._fed + upto
            in_utterance = self.segmenter.in_utterance
            self.woken = _Woken(heard.wake, at if in_utterance else None)
            if not in_utterance:  # said too softly to open one: the next utterance is the request
                self.woken.until = self.clock() + self.follow_up_s
            out.append(heard)
        out += self._segment(block[done:])
        self._remember(block[done:])
        self._fed += len(block)
        woken = self.woken
        if woken is not None and not self.segmenter.in_utterance and self.clock() > woken.until:
            self.woken = None  # nothing followed the wake word
        return out

    def listen_without_wake(self, wake: str) -> None:
        """An answer was just heard: the next utterance within `follow_up_s` is a request (it
        goes to the hub under `wake`, an id no other room's wake competes with)."""
        self.woken = _Woken(wake, None, self.clock() + self.follow_up_s)

    def forget(self, wake: str) -> None:
        """Another room keeps `wake` (the hub's `cancel`): its request is not sent."""
        if self.woken is not None and self.woken.wake == wake:
            self.woken = None

    def _remember(self, audio: Samples) -> None:
        if not len(audio):
            return
        self._recent.append(audio)
        self._recent_len += len(audio)
        while self._recent_len - len(self._recent[0]) >= LOUDNESS_WINDOW:
            self._recent_len -= len(self._recent.popleft())

    def _loudness(self) -> float:
        if not self._recent:
            return loudness_db(np.zeros(0, np.float32))
        return loudness_db(np.concatenate(list(self._recent))[-LOUDNESS_WINDOW:])

    def _segment(self, audio: Samples) -> list[Request]:
        out: list[Request] = []
        for frame, prob in self.vad.process(audio):
            for event in self.segmenter.process(frame, prob):
                request = self._closed(event)
                if request is not None:
                    out.append(request)
        return out

    def _closed(self, event: SegmentEvent) -> Request | None:
        woken = self.woken
        if not isinstance(event, UtteranceEnded) or woken is None:
            return None
        start, end = round(event.start_s * RATE), round(event.end_s * RATE)
        voiced = event.voiced if event.voiced >= 0 else len(event.audio)
        if woken.at is not None and start <= woken.at <= end:
            cut = min(woken.at - start, len(event.audio))
            if voiced - cut < MIN_REQUEST_S * RATE:  # the wake word alone: listen on
                woken.at, woken.until = None, self.clock() + self.follow_up_s
                return None
            self.woken = None
            return Request(woken.wake, event.audio[cut:])
        if woken.at is None and self.clock() <= woken.until:
            self.woken = None
            return Request(woken.wake, event.audio)
        return None
