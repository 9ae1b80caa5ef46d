"""The voice pipeline: audio, Silero VAD, segmenter, Whisper, wake gate, camera frames → queries.

Three tasks share one loop. Capture (microphone, WAV replay, or a client's pushed PCM) only puts
chunks in a bounded queue. The VAD task scores and segments them (in a worker thread) per
*lane*, one lane per source so a client's pushed audio never interleaves with the microphone's.
The STT task transcribes closed utterances (in a worker thread), applies the wake gate, attaches
the camera frame the policy asks for, and hands the query to the handler, which is the daemon's:
it asks the model manager. Each handler call runs in its own task, so the next utterance is
transcribed while an answer is still being given (the daemon's assistant answers one query at a
time, in the order asked); were transcription to wait for answers, the utterance queue would back
up into capture and audio would be dropped. Nothing here blocks the loop, and a lost device is a
state, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.core.config.schema import AudioSettings, CameraSettings, SttSettings, TektraConfig
from daemon.core.errors import TektraError
from pipelines.audio import (
    RATE,
    DropOldestQueue,
    Resampler,
    Samples,
    float_to_wav,
    pcm_to_float,
    read_wav,
)
from pipelines.barge_in import BargeIn
from pipelines.camera import CameraReader, encode_jpeg
from pipelines.echo import EchoReference
from pipelines.echo import available as echo_available
from pipelines.events import (
    DeviceState,
    FramesDropped,
    PipelineError,
    PipelineEvent,
    PipelineState,
    PushedAudioEnded,
    SpeechEnded,
    SpeechStarted,
    StateName,
    Transcript,
    TranscriptIgnored,
    WakeDetected,
)
from pipelines.fusion import wants_images
from pipelines.microphone import QUIET_BATCH, Microphone
from pipelines.segmenter import SegmentEvent, SpeechSegmenter, UtteranceEnded, UtteranceStarted
from pipelines.speculative import Speculation
from pipelines.stt import Recognition, Transcriber, load_transcriber
from pipelines.vad import FRAME, VadStream, shared_vad
from pipelines.wake import WakeGate
from pipelines.wakeword import MicroWakeWordDetector, Wake, WakeWordDetector

log = logging.getLogger(__name__)

# Audio waiting for the VAD, in samples: beyond 20 s behind, the oldest audio is dropped. Pushed
# PCM may come much faster than real time (a satellite sending a whole utterance at once).
QUEUE_SAMPLES = 20 * RATE
REPLAY_CHUNK_S = 0.1
INLINE_VAD_SAMPLES = 4 * FRAME  # ~0.5 ms of Silero: cheaper on the loop than a worker-thread hop
CAPTURE, PUSHED = "capture", "pushed"
_POKE: Samples = np.zeros(0, np.float32)  # an empty chunk: look at the lane again, no audio
# After a wake word heard inside an utterance, less voiced audio than this is the wake word's own
# tail (it fires ~0.1 s after the word ends): the wake word was said alone, with no request.
MIN_REQUEST_S = 0.3


@dataclass(frozen=True)
class VoiceQuery:
    """One spoken question, ready for the model manager."""

    text: str
    """The transcript with the wake phrase (and anything before it) stripped."""
    audio_wav: bytes
    """The utterance as a 16 kHz mono 16-bit WAV file."""
    images: tuple[bytes, ...]
    """JPEG frames attached per the `[camera]` attach policy (empty when none)."""
    transcript: Transcript
    """The transcript event the query came from (text as heard, timings)."""
    continues: bool = False
    """Said inside the follow-up window of the last answer: it continues that conversation.
    Outside it a query starts afresh (an hour-old exchange is no context for a new request)."""


@dataclass
class _Lane:
    """The VAD state and segmenter of one audio source."""

    vad: VadStream
    segmenter: SpeechSegmenter
    last_audio: float = 0.0
    """Clock time audio last reached this lane: a lane gone quiet closes its utterance."""
    speculation: Speculation | None = None
    """Partial transcripts of the utterance being spoken (speculative transcription)."""
    partial: asyncio.Task[None] | None = None
    """The partial transcription in flight, if one is."""
    start_s: float = 0.0
    opened: int = 0
    """Utterances opened since the lane's last end of stream."""
    detector: WakeWordDetector | None = None
    """The wake-word detector (`[audio.wake] engine = "micro"`), fed the same audio."""
    last_wake: _HeardWake | None = None
    fed: int = 0
    """Samples fed to the lane: the stream position wakes are placed at (the segmenter's, but
    for the VAD's part-frame; realigned at each end of stream, where the VAD drops it)."""

    def feed(self, chunk: Samples) -> list[SegmentEvent | _HeardWake]:
        """Blocking (Silero inference, ~0.1 ms a frame): one call at a time, on the loop for a
        capture block, in a worker thread for a large chunk. Wakes come in stream order among
        the segmenter's events (a replayed chunk may hold several utterances)."""
        events: list[SegmentEvent | _HeardWake] = []
        done = 0
        for wake in self.detector.process(chunk) if self.detector is not None else []:
            upto = min(max(wake.offset, done), len(chunk))
            events += self._segment(chunk[done:upto])
            events.append(_HeardWake(wake, self.fed + upto))
            done = upto
        events += self._segment(chunk[done:])
        self.fed += len(chunk)
        return events

    def _segment(self, audio: Samples) -> list[SegmentEvent]:
        events: list[SegmentEvent] = []
        for frame, prob in self.vad.process(audio, may_gate=not self.segmenter.in_utterance):
            events += self.segmenter.process(frame, prob)
        return events


class VoicePipeline:
    """Turns audio (and camera frames) into `VoiceQuery`s for `handler`, reporting every stage."""

    def __init__(
        self,
        audio: AudioSettings,
        stt: SttSettings,
        camera: CameraSettings,
        handler: Callable[[VoiceQuery], Awaitable[None]],
        on_event: Callable[[PipelineEvent], None],
        *,
        image_capable: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audio, self._stt, self._camera_settings = audio, stt, camera
        self._handler, self._emit = handler, on_event
        self._image_capable = image_capable
        self._clock = clock
        phrase = audio.wake.engine == "phrase"
        self._gate = WakeGate(tuple(audio.wake.phrases) if phrase else (), audio.wake.follow_up_s)
        self._micro = audio.wake.engine == "micro"
        self._woken_until = float("-inf")
        """Clock time until which utterances need no wake word, after one heard without a
        request (a wake does not make the request a follow-up of the last answer)."""
        self._queue: DropOldestQueue[tuple[str, Samples | None]] = DropOldestQueue(
            QUEUE_SAMPLES, lambda item: 0 if item[1] is None else len(item[1])
        )
        self._utterances: DropOldestQueue[_Closed] = DropOldestQueue(4)
        self._lanes: dict[str, _Lane] = {}
        self._transcriber: Transcriber | None = None
        self._pushed_rest = b""  # an odd trailing byte of pushed PCM, waiting for its pair
        self._pushed_resampler = Resampler(RATE)
        self._muted = False
        self.hold: Callable[[], bool] = lambda: False
        """True while the daemon speaks: the microphone then hears silence (half duplex)."""
        self.echo_reference: EchoReference | None = None
        """What the daemon plays (set with `hold`): with it, `[audio.wake] barge_in` hears the
        wake word over the daemon's own voice, echo cancelled, while the VAD is held."""
        self._barge_in: BargeIn | None = None
        self._microphone: Microphone | None = None
        self._busy = False
        self._working = 0  # VAD batches in progress
        self._answers: set[asyncio.Task[None]] = set()
        """Handler calls not finished yet: queries being answered or waiting their turn."""
        self._state: StateName | None = None
        # No reader where no frame could ever be attached: decoding a stream costs a core.
        unused = camera.source == "none" or camera.attach == "never" or not image_capable
        self.camera = None if unused else CameraReader(camera.source, self._emit_event)

    @classmethod
    def from_config(
        cls,
        config: TektraConfig,
        handler: Callable[[VoiceQuery], Awaitable[None]],
        on_event: Callable[[PipelineEvent], None],
        *,
        image_capable: bool,
    ) -> VoicePipeline:
        """The pipeline the `[audio]`, `[stt]` and `[camera]` tables describe."""
        return cls(
            config.audio, config.stt, config.camera, handler, on_event, image_capable=image_capable
        )

    # --- control, from the event loop --------------------------------------------------------

    def push_pcm(self, pcm: bytes, sample_rate: int = RATE) -> None:
        """Feed s16le mono audio from a client; it is segmented apart from the microphone.

        Any sample rate is converted to 16 kHz; a rate that is not positive is a ValueError.
        """
        if sample_rate != self._pushed_resampler.rate_in:
            self._pushed_resampler = Resampler(sample_rate)  # raises ValueError on nonsense
        data = self._pushed_rest + pcm
        even = len(data) - len(data) % 2
        self._pushed_rest = data[even:]
        if even:
            self._queue.put((PUSHED, self._pushed_resampler(pcm_to_float(data[:even]))))

    def end_pcm(self) -> None:
        """The client finished an utterance: close it now instead of waiting for silence."""
        self._queue.put((PUSHED, None))

    def set_muted(self, muted: bool) -> None:
        """While muted, audio is discarded (an utterance in progress too)."""
        self._muted = muted

    def note_answered(self) -> None:
        """An answer was given: open the wake follow-up window."""
        self._gate.note_answered(self._clock())

    @property
    def state(self) -> StateName | None:
        return self._state

    @property
    def drained(self) -> bool:
        """Nothing queued, open or in progress: every audio chunk given so far was dealt with."""
        return (
            not self._queue
            and not self._utterances
            and not self._busy
            and not self._working
            and not self._answers
            and not any(lane.segmenter.in_utterance for lane in self._lanes.values())
        )

    # --- the tasks ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled. Raises only for configuration problems (no Whisper model)."""
        self._transcriber = await asyncio.to_thread(load_transcriber, self._stt)
        vad = await asyncio.to_thread(shared_vad)
        settings = self._audio.vad
        for name in (CAPTURE, PUSHED):
            segmenter = SpeechSegmenter(
                threshold=settings.threshold,
                min_speech_s=settings.min_speech_ms / 1000,
                min_silence_s=settings.min_silence_ms / 1000,
                pre_roll_s=settings.pre_roll_ms / 1000,
                max_utterance_s=settings.max_utterance_s,
            )
            # The energy gate for the live microphone only: pushed audio comes when there is
            # something to hear, and its end of stream must not wait on held frames.
            self._lanes[name] = _Lane(vad.stream(gate=name == CAPTURE), segmenter)
            if self._micro:
                wake = self._audio.wake
                self._lanes[name].detector = await asyncio.to_thread(
                    MicroWakeWordDetector, wake.model, wake.refractory_s
                )
                reference = self.echo_reference
                if name == CAPTURE and wake.barge_in and reference and echo_available():
                    self._barge_in = await asyncio.to_thread(
                        BargeIn, reference, wake.model, wake.refractory_s
                    )
        self._update_state()
        tasks: dict[str, Coroutine[Any, Any, None]] = {
            "tektra-voice-vad": self._segment_forever(),
            "tektra-voice-stt": self._transcribe_forever(),
        }
        source = self._audio.source
        if source.startswith("file:"):
            tasks["tektra-voice-replay"] = self._replay(Path(source[len("file:") :]))
        elif source != "none":
            self._microphone = Microphone(
                source, self._deliver_capture, self._emit_event, self._audio.block_ms
            )
            tasks["tektra-voice-microphone"] = self._microphone.run()
        if self.camera is not None:
            tasks["tektra-camera"] = self.camera.run()
        try:
            await _run_together(tasks)
        finally:
            for answer in self._answers:
                answer.cancel()
            await asyncio.gather(*self._answers, return_exceptions=True)

    def _deliver_capture(self, block: Samples) -> None:
        # Asked as the block arrives, not when the VAD reaches it (it may be behind).
        held = self.hold()
        if held and self._microphone is not None:
            self._microphone.quiet_below = None  # barge-in hears every block as it comes
        if held and self._barge_in is not None and (wake := self._barge_in.hear(block)):
            # Said over the daemon's voice: it stops (on this event); the request after needs
            # no second wake word.
            self._emit(WakeDetected(wake.name, wake.score, self._lanes[CAPTURE].fed / RATE, True))
            self._woken_until = self._clock() + self._audio.wake.follow_up_s
        self._queue.put((CAPTURE, np.zeros_like(block) if held else block))

    async def _replay(self, path: Path) -> None:
        try:
            audio = await asyncio.to_thread(read_wav, path)
        except (OSError, ValueError, EOFError) as exc:
            self._emit(DeviceState("microphone", self._audio.source, "lost", str(exc)))
            return
        self._emit(DeviceState("microphone", self._audio.source, "open", f"{len(audio)} samples"))
        loop = asyncio.get_running_loop()
        step, started = int(REPLAY_CHUNK_S * RATE), loop.time()
        for offset in range(0, len(audio), step):
            chunk = audio[offset : offset + step]
            if self._audio.file_pace == "fast":
                await self._queue.put_wait((CAPTURE, chunk))
            else:
                await asyncio.sleep(max(0.0, started + offset / RATE - loop.time()))
                self._queue.put((CAPTURE, chunk))
        await self._queue.put_wait((CAPTURE, None))
        self._emit(DeviceState("microphone", self._audio.source, "closed", "end of file"))

    async def _segment_forever(self) -> None:
        # A lane silent this long with an utterance open is closed: a client stopped pushing, or
        # the microphone was lost mid-sentence.
        gap_s = self._audio.vad.min_silence_ms / 1000
        while True:
            item = await self._queue.get(timeout=max(gap_s, 0.1))
            dropped = self._queue.take_dropped()
            if dropped:
                self._emit(FramesDropped(dropped, self._queue.dropped))
            for idle in self._lanes.values():
                if idle.segmenter.in_utterance and self._clock() - idle.last_audio > gap_s:
                    await self._segmented(idle, idle.segmenter.flush())
            if item is None:
                continue
            name, chunk = item
            lane = self._lanes[name]
            if chunk is None:
                await self._segmented(lane, lane.segmenter.flush())
                lane.vad.reset()
                lane.fed = lane.segmenter.position
                if lane.detector is not None:
                    lane.detector.reset()
                if name == PUSHED:  # so a client can tell "nothing heard" from "still working"
                    self._emit(PushedAudioEnded(lane.opened))
                lane.opened = 0
            elif self._muted:
                if lane.segmenter.in_utterance:
                    self._emit(SpeechEnded(lane.segmenter.buffered_s, "muted"))
                lane.segmenter.reset()
                self._update_state()
            elif not len(chunk):  # a poke from a finished partial: decide, nothing to score
                await self._speculate(lane)
            else:
                chunk = self._take_more(name, chunk)
                lane.last_audio = self._clock()
                self._working += 1
                try:
                    # A capture block's few frames take a fraction of a millisecond: scored
                    # right here, as a thread hop there and back would cost more than the work.
                    # Larger chunks (pushed or replayed audio) go to a worker thread.
                    # Quiet blocks handed over together while the VAD is paused cost a dot
                    # product a frame: inline too.
                    quiet = lane.vad.gated and len(chunk) <= QUIET_BATCH * INLINE_VAD_SAMPLES
                    if len(chunk) <= INLINE_VAD_SAMPLES or quiet:
                        events = lane.feed(chunk)
                    else:
                        events = await asyncio.to_thread(lane.feed, chunk)
                    if name == CAPTURE and self._microphone is not None and not self.hold():
                        self._microphone.quiet_below = lane.vad.quiet_limit
                    for event in events:
                        if isinstance(event, _HeardWake):
                            self._on_wake(lane, event)
                        else:
                            await self._segmented(lane, event)
                    await self._speculate(lane)
                    lane.last_audio = self._clock()  # the wait for STT above is no gap in audio
                finally:
                    self._working -= 1

    def _take_more(self, name: str, chunk: Samples) -> Samples:
        """Join the chunks of the same lane already waiting: one worker-thread hop for them all
        (PortAudio may deliver a block every few milliseconds)."""
        pieces = [chunk]
        while (following := self._queue.peek()) is not None and following[0] == name:
            if following[1] is None:
                break
            pieces.append(following[1])
            self._queue.get_nowait()
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    async def _segmented(self, lane: _Lane, event: SegmentEvent | None) -> None:
        if isinstance(event, UtteranceStarted):
            self._emit(SpeechStarted(event.start_s))
            lane.start_s = event.start_s
            lane.opened += 1
            if self._stt.speculative:
                lane.speculation = Speculation(
                    interval=round(self._stt.partial_interval_ms * RATE / 1000),
                    early_silence=round(self._audio.vad.early_silence_ms * RATE / 1000),
                )
        elif isinstance(event, UtteranceEnded):
            trailing = len(event.audio) - event.voiced if event.voiced >= 0 else 0
            self._emit(SpeechEnded(event.end_s - event.start_s, event.reason, trailing / RATE))
            heard = _Closed(event, lane.speculation, lane.partial)
            lane.speculation = lane.partial = None
            closed = self._woken(lane, heard) if self._micro else heard
            if closed is None:  # not addressed: never transcribed
                self._update_state()
                return
            # Waiting here when STT is behind backs up into the audio queue, the one place where
            # audio is dropped (and counted); an utterance already cut is never thrown away.
            await self._utterances.put_wait(closed)
        self._update_state()

    async def _speculate(self, lane: _Lane) -> None:
        """Start a partial transcription when one is due; end the utterance when the newest
        partial shows the request is complete (see pipelines.speculative)."""
        spec, segmenter = lane.speculation, lane.segmenter
        if spec is None or not segmenter.in_utterance or self._transcriber is None:
            return
        if self._micro and not self._listening_without_wake_word():
            return  # Whisper runs only once addressed (a woken utterance is cut at the wake)
        buffered, silence = segmenter.buffered_samples, segmenter.silence_samples
        voiced = buffered - silence
        if spec.complete(silence, voiced):
            await self._segmented(lane, segmenter.end_early())
        elif spec.due(buffered, voiced, silence):
            audio = segmenter.snapshot()
            spec.start(len(audio))
            lane.partial = asyncio.create_task(
                self._partial(spec, audio, lane.start_s, lane), name="tektra-voice-partial"
            )

    def _on_wake(self, lane: _Lane, heard: _HeardWake) -> None:
        self._emit(WakeDetected(heard.wake.name, heard.wake.score, heard.at_sample / RATE))
        lane.last_wake = heard
        if not lane.segmenter.in_utterance:  # said too softly to open one: the next counts
            self._woken_until = self._clock() + self._audio.wake.follow_up_s

    def _listening_without_wake_word(self) -> bool:
        """An answer is being given or was just given, or a wake word was said alone."""
        now = self._clock()
        return bool(self._answers) or self._gate.in_follow_up(now) or now <= self._woken_until

    def _woken(self, lane: _Lane, closed: _Closed) -> _Closed | None:
        """Engine `micro`: what of a closed utterance goes to Whisper, or None. An utterance with
        the wake word in it is cut at the wake, so Whisper hears only the request said in the
        same breath (tiny.en writes "okay nabu" as "okay now boo": no transcript to strip it
        from); the wake word alone opens the follow-up window instead."""
        utterance = closed.utterance
        start, end = round(utterance.start_s * RATE), round(utterance.end_s * RATE)
        wake = lane.last_wake
        if wake is not None and start <= wake.at_sample <= end:
            cut = min(wake.at_sample - start, len(utterance.audio))
            voiced = utterance.voiced if utterance.voiced >= 0 else len(utterance.audio)
            if voiced - cut < MIN_REQUEST_S * RATE:
                self._woken_until = self._clock() + self._audio.wake.follow_up_s
                self._emit(TranscriptIgnored("", "wake_only"))
                return None
            request = UtteranceEnded(
                utterance.audio[cut:],
                utterance.start_s + cut / RATE,
                utterance.end_s,
                utterance.reason,
                voiced - cut,
            )
            return _Closed(request, None, None)  # partials heard the wake word: start afresh
        if self._listening_without_wake_word():
            return closed
        self._emit(TranscriptIgnored("", "no_wake"))
        return None

    async def _partial(
        self, spec: Speculation, audio: Samples, start_s: float, lane: _Lane | None = None
    ) -> None:
        assert self._transcriber is not None
        started = time.perf_counter()
        try:
            heard = await asyncio.to_thread(self._transcriber.transcribe, audio)
        except (RuntimeError, ValueError, OSError) as exc:
            log.warning("partial transcription failed: %s", exc)
            spec.finish("")
            return
        if spec.finish(heard.text) is not None:
            stt_ms = (time.perf_counter() - started) * 1000
            end_s = start_s + len(audio) / RATE
            self._emit(Transcript(heard.text, heard.language, start_s, end_s, stt_ms, False))
        if lane is not None and lane.speculation is spec:
            # Wake the VAD task now: if this partial shows the request complete, the utterance
            # ends at once rather than when the next capture block arrives (up to 100 ms on).
            self._queue.put((next(n for n, known in self._lanes.items() if known is lane), _POKE))

    async def _transcribe_forever(self) -> None:
        while True:
            closed = await self._utterances.get()
            if closed is None:
                continue
            self._busy = True
            self._update_state()
            try:
                query = await self._recognise(closed)
            finally:
                self._busy = False
                self._update_state()
            if query is not None:
                self._answer_later(query)

    async def _recognise(self, closed: _Closed) -> VoiceQuery | None:
        assert self._transcriber is not None
        utterance = closed.utterance
        started = time.perf_counter()
        try:
            heard = await self._speculated(closed)
            if heard is None:
                heard = await asyncio.to_thread(self._transcriber.transcribe, utterance.audio)
        except (RuntimeError, ValueError, OSError) as exc:
            log.exception("speech-to-text failed")
            self._emit(PipelineError("stt_failed", f"speech-to-text failed: {exc}"))
            return None
        if not heard.text:  # the hallucination filter found nothing spoken
            self._emit(TranscriptIgnored("", "no_words"))
            return None
        stt_ms = (time.perf_counter() - started) * 1000
        transcript = Transcript(
            heard.text, heard.language, utterance.start_s, utterance.end_s, stt_ms
        )
        self._emit(transcript)
        now = self._clock()
        if self._answers:
            # Said while an answer is still being given: as good as just after it, so the
            # follow-up window is open (and the query continues that conversation).
            self._gate.note_answered(now)
        continues = self._gate.in_follow_up(now)
        decision = self._gate.decide(heard.text, now)
        if decision.query is None:
            wake_only = decision.reason == "wake_only"
            self._emit(TranscriptIgnored(heard.text, "wake_only" if wake_only else "not_addressed"))
            return None
        wav = await asyncio.to_thread(float_to_wav, utterance.audio)
        images = await self._images_for(decision.query)
        return VoiceQuery(decision.query, wav, images, transcript, continues)

    async def _speculated(self, closed: _Closed) -> Recognition | None:
        """The final transcript a partial already produced, so none has to run now."""
        spec, utterance = closed.speculation, closed.utterance
        if spec is None:
            return None
        voiced = utterance.voiced if utterance.voiced >= 0 else len(utterance.audio)
        if closed.partial is not None and (spec.started_at or 0) >= voiced:
            await closed.partial  # in flight and it heard every voiced sample: worth the wait
        text = spec.final_text(voiced)
        return None if text is None else Recognition(text, self._stt.language or "en")

    async def _images_for(self, text: str) -> tuple[bytes, ...]:
        settings = self._camera_settings
        wanted = wants_images(
            settings.attach,
            text,
            image_capable=self._image_capable,
            request_phrases=tuple(settings.request_phrases),
        )
        frame = self.camera.latest(settings.max_frame_age_s) if wanted and self.camera else None
        if frame is None:
            return ()
        return (await asyncio.to_thread(encode_jpeg, frame, settings.max_side),)

    def _answer_later(self, query: VoiceQuery) -> None:
        """Hand `query` to the handler in a task of its own: transcription does not wait."""
        task = asyncio.create_task(self._ask(query), name="tektra-voice-answer")
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _ask(self, query: VoiceQuery) -> None:
        try:
            await self._handler(query)
        except TektraError as exc:
            self._emit(PipelineError(exc.code, exc.message))
        except Exception as exc:  # the handler is the daemon's; its bug must not stop listening
            log.exception("the voice query handler failed")
            self._emit(PipelineError("handler_failed", f"{type(exc).__name__}: {exc}"))

    # --- events ------------------------------------------------------------------------------

    def _update_state(self) -> None:
        listening = any(lane.segmenter.in_utterance for lane in self._lanes.values())
        busy = self._busy or len(self._utterances) > 0
        state: StateName = "listening" if listening else "transcribing" if busy else "idle"
        if state != self._state:
            self._state = state
            self._emit(PipelineState(state))

    def _emit_event(self, event: PipelineEvent) -> None:
        self._emit(event)


@dataclass(frozen=True)
class _HeardWake:
    """A wake, placed in the stream of its lane."""

    wake: Wake
    at_sample: int


@dataclass(frozen=True)
class _Closed:
    """An utterance waiting for speech-to-text, with what speculation already heard of it."""

    utterance: UtteranceEnded
    speculation: Speculation | None
    partial: asyncio.Task[None] | None


async def _run_together(coroutines: dict[str, Coroutine[Any, Any, None]]) -> None:
    """Run named tasks until one fails or we are cancelled; then cancel and await the rest."""
    tasks = [asyncio.create_task(coro, name=name) for name, coro in coroutines.items()]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
