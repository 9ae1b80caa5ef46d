"""Barge-in: the wake word said over Tektra's own voice stops it.

While Tektra speaks, the microphone's VAD is held (half duplex): nothing it hears becomes an
utterance. Only this listener still hears it, through the echo canceller (Tektra's own voice,
which the player knows it played, taken out) and a wake-word detector of its own, so that
"okay nabu" said over an answer ends it, and Tektra then listens for the request without a
second wake word. Called on the loop with each microphone block while the hold lasts: ~0.3 ms
of speexdsp and microWakeWord per 100 ms block.
"""

from __future__ import annotations

import time

from pipelines.audio import Samples
from pipelines.echo import GAP_S, EchoCanceller, EchoReference
from pipelines.wakeword import MicroWakeWordDetector, Wake


class BargeIn:
    """Hears the wake word in the microphone with Tektra's own voice cancelled out."""

    def __init__(self, reference: EchoReference, model: str, refractory_s: float = 2.0) -> None:
        self.canceller = EchoCanceller(reference)
        self._detector = MicroWakeWordDetector(model, refractory_s)
        self._last = float("-inf")

    def hear(self, block: Samples, now: float | None = None) -> Wake | None:
        """The wake heard in this microphone block (16 kHz), if any. Blocking but short."""
        now = time.monotonic() if now is None else now
        if now - self._last > GAP_S:
            self._detector.reset()  # a new hold: the audio before the last one is long gone
        self._last = now
        wakes = self._detector.process(self.canceller.cancel(block, now))
        return wakes[0] if wakes else None
