"""Spoken replies over Wyoming: `synthesize` (text, optionally a voice) answered with
`audio-start`, `audio-chunk`s and `audio-stop`, in the voice Tektra itself speaks with.

The engines are `daemon.speech`'s: piper with its voice (espeak-ng when piper is missing or
fails), or espeak-ng alone, as `[tts] engine` says. Both synthesize in processes of their own,
so the loop never waits on them. The default voice is the daemon's own engine, shared with its
spoken replies: one piper process keeps its voice loaded once for both, and says one sentence at
a time anyway. The text is said sentence by
sentence, each sent as soon as it is ready, so a long answer starts playing early.
"""

from __future__ import annotations

import logging
from pathlib import PurePath

import numpy as np
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Attribution, Info, TtsProgram, TtsVoice
from wyoming.tts import Synthesize

from daemon.core.config.schema import TtsSettings
from daemon.frontends.mqtt.discovery import support_url, tektra_version
from daemon.frontends.wyoming.base import Send, WyomingRefusal
from daemon.speech.engines import (
    DEFAULT_VOICE,
    Audio,
    EspeakEngine,
    FallbackEngine,
    SpeechFailed,
    make_engine,
)
from daemon.speech.text import sentences

log = logging.getLogger("tektra.wyoming")

SAMPLES_PER_CHUNK = 1024
"""Samples per `audio-chunk` (as wyoming-piper sends them)."""
PIPER = Attribution("Michael Hansen (piper)", "https://github.com/OHF-Voice/piper1-gpl")
ESPEAK = Attribution("eSpeak NG", "https://github.com/espeak-ng/espeak-ng")


def voice_language(voice: str) -> str:
    """The language of a voice named the piper way (`en_US-joe-medium`) or the espeak way
    (`en-us`), as Home Assistant writes languages (`en_US`)."""
    head = voice.split("-", 1)[0] if "_" in voice.split("-", 1)[0] else voice
    parts = head.replace("_", "-").split("-")
    if len(parts) >= 2 and len(parts[1]) == 2:
        return f"{parts[0].lower()}_{parts[1].upper()}"
    return parts[0].lower()


class TtsService:
    """Tektra's voice, described and shared by every connection of one server."""

    def __init__(self, settings: TtsSettings, engine: FallbackEngine | None = None) -> None:
        self.settings = settings
        self._owns_engine = engine is None
        """The engine was made here (not the speaker's): closing the service ends it."""
        self.engine = make_engine(settings) if engine is None else engine
        """What speaks when no voice is asked for: `[tts] engine`, espeak-ng behind piper."""
        espeak = EspeakEngine(settings.espeak_voice, settings.rate)
        self.espeak = FallbackEngine(espeak, espeak)
        """The espeak-ng voice, for a client that asks for it by name."""
        self.piper_voice: str | None = None
        if settings.engine == "piper":
            source = settings.voice or DEFAULT_VOICE
            named = source.path or source.file or "piper"
            self.piper_voice = PurePath(named).name.removesuffix(".onnx")

    def voices(self) -> dict[str, FallbackEngine]:
        """The voices a client may name, the default first."""
        named: dict[str, FallbackEngine] = {}
        if self.piper_voice is not None:
            named[self.piper_voice] = self.engine
        named[self.settings.espeak_voice] = self.espeak
        return named

    def describe(self, info: Info) -> None:
        voices = [
            TtsVoice(
                name=name,
                attribution=ESPEAK if engine is self.espeak else PIPER,
                installed=True,
                description=f"{'espeak-ng' if engine is self.espeak else 'piper'} ({name})",
                version=None,
                languages=[voice_language(name)],
            )
            for name, engine in self.voices().items()
        ]
        info.tts.append(
            TtsProgram(
                name="tektra",
                attribution=Attribution("Tektra", support_url() or ""),
                installed=True,
                description=f"Tektra's voice ({self.settings.engine})",
                version=tektra_version(),
                voices=voices,
                supports_synthesize_streaming=False,
            )
        )

    def open(self) -> TtsSession:
        return TtsSession(self)

    async def aclose(self) -> None:
        """End the engines' processes (piper's, kept running with its voice); a shared engine
        is its owner's to end."""
        if self._owns_engine:
            await self.engine.close()
        await self.espeak.close()


class TtsSession:
    """One connection's spoken replies. A refused `synthesize` ends the connection after its
    `error`: Home Assistant's text-to-speech reads on until `audio-stop` and would wait forever,
    while a closed connection it reports as a failed synthesis."""

    takes = frozenset({"synthesize"})
    opens_audio: frozenset[str] = frozenset()

    def __init__(self, service: TtsService) -> None:
        self.service = service

    async def on_event(self, event: Event, send: Send) -> None:
        try:
            request = Synthesize.from_event(event)
        except (KeyError, TypeError, AttributeError) as exc:
            raise WyomingRefusal("bad_request", "synthesize needs `text`", final=True) from exc
        if not isinstance(request.text, str):
            raise WyomingRefusal("bad_request", "synthesize needs `text`", final=True)
        engine = self._engine(request.voice.name if request.voice else None)
        said = sentences(request.text)
        if not said:
            raise WyomingRefusal("bad_request", "synthesize: there is nothing to say", final=True)
        converter: AudioChunkConverter | None = None
        for sentence in said:
            try:
                audio = await engine.synthesize(sentence)
            except SpeechFailed as exc:
                # Audio already sent stays sent; no `audio-stop` claims the answer whole.
                raise WyomingRefusal(exc.code, exc.message, final=True) from exc
            if converter is None:
                # The first sentence's rate is the stream's (a later fallback to espeak-ng may
                # speak at another rate: converted to this one).
                converter = AudioChunkConverter(rate=audio.rate, width=2, channels=1)
                await send(AudioStart(rate=audio.rate, width=2, channels=1).event())
            for chunk in _chunks(audio):
                await send(converter.convert(chunk).event())
        await send(AudioStop().event())
        log.info("Wyoming synthesized %d sentence(s) with %s", len(said), engine.name)

    def _engine(self, voice: object) -> FallbackEngine:
        if voice is None:
            return self.service.engine
        voices = self.service.voices()
        if not isinstance(voice, str) or voice not in voices:
            message = f"synthesize: unknown voice {voice!s:.40} ({', '.join(voices)})"
            raise WyomingRefusal("bad_request", message, final=True)
        return voices[voice]

    def close(self) -> None:
        return None


def _chunks(audio: Audio) -> list[AudioChunk]:
    pcm = (np.clip(audio.samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    step = SAMPLES_PER_CHUNK * 2
    return [
        AudioChunk(rate=audio.rate, width=2, channels=1, audio=pcm[start : start + step])
        for start in range(0, len(pcm), step)
    ]
