"""The wake word over Wyoming: `detect` (the model names wanted), then `audio-start` /
`audio-chunk` / `audio-stop`, answered with a `detection` (the model's name, and when in the
audio it fired) each time a wake word is heard, or `not-detected` at `audio-stop` when none was.

The models are pymicro-wakeword's (`pipelines.wakeword`, the detector the microphone pipeline
uses with `[audio.wake] engine = "micro"`). Each connection has detectors of its own: they keep
the state of the stream they are fed. Feeding runs in a worker thread, one call at a time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Attribution, Info, WakeModel, WakeProgram
from wyoming.wake import Detect, Detection, NotDetected

from daemon.core.config.schema import WakeSettings
from daemon.frontends.mqtt.discovery import support_url, tektra_version
from daemon.frontends.wyoming.base import Send, WyomingRefusal, format_problem
from pipelines.audio import RATE, pcm_to_float
from pipelines.wakeword import SHIPPED as MODELS
from pipelines.wakeword import MicroWakeWordDetector

MICRO_WAKE_WORD = Attribution(
    "kahrendt (microWakeWord)", "https://github.com/kahrendt/microWakeWord"
)


def phrase(model: str) -> str:
    """What is said to wake a model (`okay_nabu`: "okay nabu")."""
    return model.replace("_", " ")


class WakeService:
    """Tektra's wake words, described and opened per connection."""

    def __init__(self, settings: WakeSettings) -> None:
        self.settings = settings
        # A client that names no model gets the one the microphone listens for, if shipped.
        self.default = settings.model if settings.model in MODELS else MODELS[0]

    def describe(self, info: Info) -> None:
        models = [
            WakeModel(
                name=name,
                attribution=MICRO_WAKE_WORD,
                installed=True,
                description=f"microWakeWord '{phrase(name)}'",
                version=None,
                languages=["en"],
                phrase=phrase(name),
            )
            for name in MODELS
        ]
        info.wake.append(
            WakeProgram(
                name="tektra",
                attribution=Attribution("Tektra", support_url() or ""),
                installed=True,
                description="Tektra's wake words (microWakeWord)",
                version=tektra_version(),
                models=models,
            )
        )

    def open(self) -> WakeSession:
        return WakeSession(self)


@dataclass
class _Stream:
    converter: AudioChunkConverter
    detectors: list[MicroWakeWordDetector]
    fed: int = 0
    """16 kHz samples fed so far."""
    heard: list[str] = field(default_factory=list)


class WakeSession:
    """One connection's wake-word detection: the models asked for and the stream being fed."""

    takes = frozenset({"detect", "audio-start", "audio-chunk", "audio-stop"})
    opens_audio = frozenset({"detect"})

    def __init__(self, service: WakeService) -> None:
        self.service = service
        self.names: list[str] = [service.default]
        self.stream: _Stream | None = None
        self.refused: WyomingRefusal | None = None
        """Why the last `detect` or the stream was refused: its audio is dropped, its
        `audio-stop` answered with the error again (never with a `not-detected` for a word not
        listened for)."""

    async def on_event(self, event: Event, send: Send) -> None:
        if Detect.is_type(event.type):
            self.refused = None
            try:
                self.names = self._names(Detect.from_event(event).names)
            except WyomingRefusal as exc:
                self.refused = exc
                raise
        elif self.refused is not None:
            if not AudioStop.is_type(event.type):
                return
            refused, self.refused = self.refused, None
            raise WyomingRefusal(refused.code, f"no detection: {refused.message}")
        elif AudioStart.is_type(event.type) or AudioChunk.is_type(event.type):
            try:
                if AudioStart.is_type(event.type):
                    await self._start(event)
                else:
                    await self._chunk(event, send)
            except WyomingRefusal as exc:
                self.stream, self.refused = None, exc  # the rest of this stream is dropped
                raise
        else:  # audio-stop
            stream, self.stream = self.stream, None
            if stream is None:
                raise WyomingRefusal("no_audio_start", "audio-stop before audio-start")
            if not stream.heard:
                await send(NotDetected().event())

    def _names(self, asked: object) -> list[str]:
        if not asked:
            return [self.service.default]  # None or []: any, which here is the default model
        if not isinstance(asked, list) or not all(isinstance(n, str) for n in asked):
            raise WyomingRefusal("bad_request", "detect: `names` is a list of model names")
        unknown = [name for name in asked if name not in MODELS]
        if unknown:
            shown = ", ".join(str(n)[:40] for n in unknown)
            message = f"detect: unknown wake word model(s) {shown} ({', '.join(MODELS)})"
            raise WyomingRefusal("bad_request", message)
        return list(dict.fromkeys(asked))

    async def _start(self, event: Event) -> None:
        self.stream = None
        try:
            AudioStart.from_event(event)  # the format is each chunk's own: the converter reads it
        except (KeyError, TypeError) as exc:
            message = "audio-start needs `rate`, `width` and `channels`"
            raise WyomingRefusal("bad_audio", message) from exc
        refractory = self.service.settings.refractory_s
        names = self.names
        # Loading a model reads its file: off the loop.
        detectors = await asyncio.to_thread(
            lambda: [MicroWakeWordDetector(name, refractory) for name in names]
        )
        self.stream = _Stream(AudioChunkConverter(rate=RATE, width=2, channels=1), detectors)

    async def _chunk(self, event: Event, send: Send) -> None:
        stream = self.stream
        if stream is None:
            raise WyomingRefusal("no_audio_start", "audio-chunk before audio-start")
        try:
            chunk = AudioChunk.from_event(event)
        except (KeyError, TypeError) as exc:
            message = "audio-chunk needs `rate`, `width` and `channels`"
            raise WyomingRefusal("bad_audio", message) from exc
        problem = format_problem(chunk.rate, chunk.width, chunk.channels)
        if problem or len(chunk.audio) % (chunk.width * chunk.channels):
            raise WyomingRefusal("bad_audio", problem or "an audio-chunk holds a partial sample")
        pcm = stream.converter.convert(chunk).audio
        samples = pcm_to_float(pcm)
        wakes = await asyncio.to_thread(
            lambda: [wake for d in stream.detectors for wake in d.process(samples)]
        )
        # Where the model fired, in ms on the client's clock: the chunk's own timestamp when it
        # has one (Home Assistant's, which it reads the detection against), else from our start.
        given = chunk.timestamp
        began = given if type(given) is int else stream.fed * 1000 // RATE
        for wake in wakes:
            stream.heard.append(wake.name)
            timestamp = max(0, began + wake.offset * 1000 // RATE)
            await send(Detection(name=wake.name, timestamp=timestamp).event())
        stream.fed += len(samples)

    def close(self) -> None:
        self.stream = None
