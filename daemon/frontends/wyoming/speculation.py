"""One Wyoming audio stream transcribed while it arrives, so the transcript is ready at its end.

Home Assistant runs its own voice activity detection and ends the stream (`audio-stop`) only
after its silence hangover. Tektra's speculative path fills that hangover: Silero VAD marks the
last voiced sample, a partial transcription starts when the speaker pauses (and at the
`[stt] partial_interval_ms` cadence while they speak), and when the newest partial heard every
voiced sample it *is* the transcript: nothing is left to recognise at `audio-stop`. The
decisions are `pipelines.speculative.Speculation`'s, the same as the microphone's.

A client sending faster than real time replays a recording: nobody is still speaking, so a
partial could only delay the final run; such a stream is transcribed once, at its end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from pipelines.audio import RATE, Samples
from pipelines.speculative import Speculation
from pipelines.stt import Recognition, Transcriber
from pipelines.vad import SileroVad

log = logging.getLogger("tektra.wyoming")

INLINE_VAD_SAMPLES = 4 * 512
"""Up to this, Silero runs on the loop (~0.5 ms); a larger chunk goes to a worker thread."""
AHEAD_S = 0.5
"""Audio this far ahead of the wall clock means the client is not streaming live speech."""


class StreamTranscription:
    """The audio of one stream, its voiced end, and the partial transcriptions run on it."""

    def __init__(
        self,
        transcriber: Transcriber,
        decoding: asyncio.Lock,
        vad: SileroVad | None,
        *,
        threshold: float,
        partial_interval_ms: int,
        clock: Callable[[], float] = time.monotonic,
        began: float | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.decoding = decoding
        """Shared by every Wyoming stream: one decoding at a time reaches a worker thread."""
        self.vad = vad.stream() if vad is not None else None
        """None: no speculation, one transcription at the end."""
        self.threshold = threshold
        self.speculation = Speculation(round(partial_interval_ms * RATE / 1000), 0)
        self.pieces: list[Samples] = []
        self.samples = 0
        self.scored = 0
        """Samples the VAD has scored (whole frames)."""
        self.heard = 0
        """Samples given to the VAD: behind `samples` while the stream runs ahead of real time."""
        self.voiced_end = 0
        """Samples up to the end of the last frame heard as speech."""
        self.partial: asyncio.Task[None] | None = None
        self.reused = False
        """The transcript came from a partial: no recognition ran after the stream ended."""
        self._clock = clock
        self._began = clock() if began is None else began
        """When the stream began (`audio-start` arrived), on `clock`: the models may have been
        loading since, with the audio waiting."""

    async def feed(self, audio: Samples) -> None:
        """Take 16 kHz mono samples; start a partial transcription when one is due."""
        self.pieces.append(audio)
        self.samples += len(audio)
        if self.vad is None:
            return
        if self.samples / RATE - (self._clock() - self._began) > AHEAD_S:
            # Ahead of real time no partial starts, so the VAD's answer would go unused: it
            # scores what it missed if the stream falls back to speaking pace.
            return
        await self._score(audio if self.heard == self.samples - len(audio) else None)
        spec, voiced = self.speculation, self.voiced_end
        # Nothing said since the newest partial: another one would only hear more silence.
        fresh = voiced > (spec.partials[-1].covered if spec.partials else 0)
        if fresh and spec.due(self.samples, voiced, self.samples - voiced):
            self.speculation.start(self.samples)
            self.partial = asyncio.create_task(
                self._partial(self.audio()), name="tektra-wyoming-partial"
            )

    async def _score(self, unheard: Samples | None = None) -> None:
        """Run the VAD over the audio it has not heard (`unheard` when that is all of it)."""
        assert self.vad is not None
        if unheard is None:
            unheard = self.audio()[self.heard :]
        self.heard = self.samples
        if len(unheard) <= INLINE_VAD_SAMPLES:
            frames = self.vad.process(unheard)
        else:
            frames = await asyncio.to_thread(self.vad.process, unheard)
        for frame, probability in frames:
            self.scored += len(frame)
            if probability >= self.threshold:
                self.voiced_end = self.scored

    def audio(self) -> Samples:
        if len(self.pieces) > 1:
            self.pieces = [np.concatenate(self.pieces)]
        return self.pieces[0] if self.pieces else np.zeros(0, np.float32)

    async def settled(self) -> None:
        """Wait for the partial transcription in flight, if one is."""
        if self.partial is not None:
            await asyncio.wait([self.partial])  # not `await`: a cancelled one raises

    async def finish(self) -> Recognition:
        """The transcript of the whole stream: the newest partial when it heard every voiced
        sample (waiting for it when it is in flight and will have), else one run now."""
        if self.vad is not None and self.partial is not None and self.heard < self.samples:
            await self._score()  # a partial is judged against every voiced sample, late ones too
        spec, voiced = self.speculation, self.voiced_end
        text = spec.final_text(voiced) if voiced else None
        if text is None and self.partial is not None and (spec.started_at or 0) >= voiced > 0:
            await self.settled()
            text = spec.final_text(voiced)
        if text is not None:
            self.reused = True
            return Recognition(text, self.transcriber.settings.language or "en")
        self.close()  # a partial that cannot be the answer only delays the one that is
        async with self.decoding:
            return await asyncio.to_thread(self.transcriber.transcribe, self.audio())

    def close(self) -> None:
        if self.partial is not None and not self.partial.done():
            self.partial.cancel()

    async def _partial(self, audio: Samples) -> None:
        text = ""
        try:
            async with self.decoding:
                heard = await asyncio.to_thread(self.transcriber.transcribe, audio)
            text = heard.text
        except (RuntimeError, ValueError, OSError) as exc:
            log.warning("partial transcription failed: %s", exc)
        finally:
            self.speculation.finish(text)
