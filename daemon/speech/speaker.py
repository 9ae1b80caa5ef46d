"""The voice of the daemon: reads answers out as they stream, and speaks on request.

It listens to the event bus, as MQTT and the socket do, and changes nothing in the assistant:
a `transcript` event marks an answer as one to a spoken query; its `response_chunk`s are cut
into sentences (the first may end at a clause, to be heard sooner), each synthesised (in the
engine's process) and queued on the player while the model goes on writing; the `response`
event ends it. One worker speaks one sentence after another, so answers and `say` requests never
talk over each other. An answer heard to its end is a `spoken` event with the time its first
sample became audible. A `say` with `stream` is not played: its audio goes to the caller.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from daemon.core.config.schema import TtsSettings
from daemon.core.errors import TektraError
from daemon.core.events import (
    ErrorRaised,
    Event,
    EventBus,
    PipelineNotice,
    RequestId,
    ResponseChunk,
    ResponseDone,
    SpeakerChanged,
    SpeechChanged,
    TranscriptReady,
)
from daemon.core.supervisor import cancel_and_wait
from daemon.speech.engines import FallbackEngine, SpeechFailed, from_first_sound, make_engine
from daemon.speech.player import OutputLost, Player
from daemon.speech.text import SentenceSplitter, sentences
from pipelines.audio import float_to_pcm

log = logging.getLogger("tektra.speech")
STREAM_CHUNK_S = 0.5  # audio per streamed line: small lines, few of them
SPOKEN_IDS_KEPT = 64  # answers to spoken queries remembered until their `response` arrives


class NotSpeaking(TektraError):
    code = "unavailable"


@dataclass
class _Item:
    """A sentence to speak, or (text None) the end of what `id` has to say."""

    id: RequestId
    text: str | None
    epoch: int
    """`stop` ends every item of an earlier epoch."""
    done: asyncio.Future[dict[str, object]] | None = None


@dataclass
class _Said:
    """What was spoken of one answer or request so far."""

    sentences: int = 0
    seconds: float = 0.0
    problems: list[TektraError] = field(default_factory=list)
    started: float | None = None
    """When the request began (time.monotonic()): the origin of its `timings_ms`."""
    audible: float | None = None
    """When its first sample left the device, as the device reported it."""

    def heard(self, at: float) -> None:
        if self.audible is None:
            self.audible = at

    def timings_ms(self) -> dict[str, float]:
        if self.started is None or self.audible is None:
            return {}
        return {"first_audible": round((self.audible - self.started) * 1000, 1)}


@dataclass(frozen=True)
class AnswerSpoken(Event):
    """An answer was read out to its end (published after its `response`, which comes when the
    text is complete): how long it took to be heard, on the clock of the response's own
    `timings_ms`. An answer cut off by `stop` has none."""

    kind: ClassVar[str] = "spoken"
    id: RequestId
    sentences: int
    seconds: float
    engine: str
    timings_ms: dict[str, float]
    """`first_audible`: from the request to the first sample of the answer leaving the device."""


class Speaker:
    """Speaks answers (per `[tts] speak`) and `say` requests through one engine and player."""

    def __init__(self, settings: TtsSettings, bus: EventBus) -> None:
        self.settings = settings
        self.bus = bus
        self.engine: FallbackEngine | None = None
        if settings.engine != "none":
            # Made with `output = "none"` too: a socket `say` with `stream` takes the audio.
            self.engine = make_engine(settings)
        self.player = Player(
            settings.output,
            volume=settings.volume,
            hold_s=settings.hold_ms / 1000,
            on_state=lambda state, detail: bus.publish(SpeakerChanged(state, detail)),
        )
        self._spoken: list[RequestId] = []  # ids of answers to spoken queries
        self._splitters: dict[RequestId, SentenceSplitter] = {}
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._said: dict[RequestId, _Said] = {}
        self._warming: asyncio.Task[None] | None = None
        self._epoch = 0
        # Answers a `stop` cut off: their later chunks stay unsaid.
        self._silenced: list[RequestId] = []
        self._speaking: RequestId | None = None
        self.on_answer_spoken: Callable[[], None] | None = None
        """Called when an answer to a spoken query has been heard to its end: the follow-up
        window opens then, not while the microphone was still held for the answer's voice."""

    @property
    def enabled(self) -> bool:
        """There is a voice (and so a task to `run`), audible or not."""
        return self.engine is not None

    @property
    def audible(self) -> bool:
        """Answers and `say` are played: there is a voice and an output to play it on."""
        return self.engine is not None and self.settings.output != "none"

    def holding(self) -> bool:
        """Whether the microphone must not open an utterance now (half duplex)."""
        return self.player.holding()

    # --- requests ------------------------------------------------------------------------------

    async def say(self, request_id: RequestId, text: str) -> dict[str, object]:
        """Speak `text`; return once it has been played, with what was spoken."""
        if not self.audible:
            raise NotSpeaking("speech is off ([tts] engine or output is `none`)")
        parts = sentences(text)
        if not parts:
            raise NotSpeaking("nothing in the text can be spoken")
        done: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self._said[request_id] = _Said(started=time.monotonic())
        for part in parts:
            self._put(request_id, part)
        self._put(request_id, None, done)
        return await done

    async def stream(
        self, request_id: RequestId, text: str, send: Callable[[dict[str, object]], None]
    ) -> dict[str, object]:
        """`text` as audio for the caller, not played (so `output = "none"` is no obstacle):
        each sentence is sent as it is synthesised, in `{"audio", "rate"}` lines of base64
        16-bit mono PCM of at most STREAM_CHUNK_S each, at the engine's own rate."""
        if self.engine is None:
            raise NotSpeaking("speech is off ([tts] engine is `none`)")
        parts = sentences(text)
        if not parts:
            raise NotSpeaking("nothing in the text can be spoken")
        seconds = 0.0
        for part in parts:
            audio = await self.engine.synthesize(part)  # SpeechFailed: the caller hears why
            pcm = float_to_pcm((audio.samples * self.settings.volume).astype(np.float32))
            step = 2 * max(1, round(STREAM_CHUNK_S * audio.rate))
            for start in range(0, len(pcm), step):
                chunk = base64.b64encode(pcm[start : start + step]).decode()
                send({"audio": chunk, "rate": audio.rate})
            seconds += audio.seconds
        log.info("say %s: %d sentences streamed to the caller", request_id, len(parts))
        return {"sentences": len(parts), "seconds": round(seconds, 2), "engine": self.engine.name}

    def say_elsewhere(self, answer_id: RequestId) -> None:
        """The answer `answer_id` is spoken somewhere else (a satellite's room): never here,
        whatever `[tts] speak` says."""
        self._silenced = [*self._silenced[-SPOKEN_IDS_KEPT:], answer_id]

    async def stop(self) -> dict[str, object]:
        """Silence now: what plays is cut, what waits is dropped, and the answers being read
        are not read further. Returns the ids that were cut off."""
        self._epoch += 1
        cut = set(self._splitters)
        self._silenced = [*self._silenced[-SPOKEN_IDS_KEPT:], *cut]
        self._splitters.clear()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            cut.add(item.id)
            if item.done is not None and not item.done.done():
                item.done.set_result({"stopped": True})
        if self._speaking is not None:
            cut.add(self._speaking)
        await self.player.cut()
        if self._speaking is not None:
            self.bus.publish(SpeechChanged("idle", self._speaking))
            self._speaking = None
        self._said.clear()
        return {"stopped": sorted(cut)}

    def _put(
        self,
        item_id: RequestId,
        text: str | None,
        done: asyncio.Future[dict[str, object]] | None = None,
    ) -> None:
        self._queue.put_nowait(_Item(item_id, text, self._epoch, done))

    # --- the bus -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the bus and speak until cancelled."""
        if self.engine is None:
            return
        if not self.audible:  # only `say` with `stream` uses the voice: nothing to follow
            try:
                await asyncio.Event().wait()
            finally:
                await self.engine.close()
        tasks = [
            asyncio.create_task(self._speak_forever(), name="tektra-speech-worker"),
            asyncio.create_task(self.player.run(), name="tektra-speech-player"),
        ]
        try:
            with self.bus.subscribe(maxsize=10_000) as events:
                async for event in events:
                    self.on_event(event)
        finally:
            await cancel_and_wait(*tasks)
            await self.engine.close()

    def on_event(self, event: Event) -> None:
        if isinstance(event, TranscriptReady):
            self._spoken = [*self._spoken[-SPOKEN_IDS_KEPT:], event.id]
        elif isinstance(event, PipelineNotice) and event.name == "SpeechStarted":
            self._warm()  # the engine loads its voice while the user is still speaking
        elif isinstance(event, ResponseChunk) and self._wanted(event.id):
            splitter = self._splitters.get(event.id)
            if splitter is None:  # the first piece may be a clause: heard while the rest is written
                splitter = self._splitters[event.id] = SentenceSplitter(first_clause=True)
            for sentence in splitter.feed(event.text):
                self._put(event.id, sentence)
        elif isinstance(event, ResponseDone) and event.id in self._splitters:
            # The response's timings count from when the answer began: `total` ago.
            started = time.monotonic() - event.timings_ms.get("total", 0.0) / 1000
            self._said.setdefault(event.id, _Said()).started = started
            for sentence in self._splitters.pop(event.id).finish():
                self._put(event.id, sentence)
            self._put(event.id, None)
        elif isinstance(event, ErrorRaised) and event.id in self._splitters:
            del self._splitters[event.id]  # the answer broke off: what was said stands
            self._put(event.id, None)

    def _wanted(self, answer_id: RequestId) -> bool:
        if answer_id in self._silenced:
            return False
        speak = self.settings.speak
        return speak == "all" or (speak == "voice" and answer_id in self._spoken)

    def _warm(self) -> None:
        if self.engine is not None and (self._warming is None or self._warming.done()):
            self._warming = asyncio.get_running_loop().create_task(self._get_ready())

    async def _get_ready(self) -> None:
        """The voice loaded and the output stream open before the answer's first sentence."""
        assert self.engine is not None
        if self.settings.speak == "none":
            await self.engine.warm()
        else:
            await asyncio.gather(self.player.prepare(), self.engine.warm())

    # --- speaking ------------------------------------------------------------------------------

    async def _speak_forever(self) -> None:
        assert self.engine is not None
        while True:
            item = await self._queue.get()
            said = self._said.setdefault(item.id, _Said())
            if item.text is None:
                await self._finish(item, said)
                continue
            try:
                audio = await self.engine.synthesize(item.text)
            except SpeechFailed as exc:
                said.problems.append(exc)
                # No request id: the answer itself did not fail, and a client waiting for it
                # must not take this for its end.
                self.bus.publish(ErrorRaised(None, exc.code, f"not spoken: {exc.message}"))
                continue
            if item.epoch != self._epoch:
                continue  # a `stop` came while it was being synthesised
            if said.sentences == 0:
                audio = from_first_sound(audio)  # the voice's lead-in silence is only a wait
                self._speaking = item.id
                self.bus.publish(SpeechChanged("speaking", item.id, self.engine.name))
            try:
                await self.player.play(audio, said.heard if said.sentences == 0 else None)
            except OutputLost as exc:
                said.problems.append(exc)
                continue
            said.sentences += 1
            said.seconds += audio.seconds

    async def _finish(self, item: _Item, said: _Said) -> None:
        """The end of one answer or request: wait until it is heard, then report."""
        await self.player.drained()
        self._said.pop(item.id, None)
        if said.sentences and self._speaking == item.id:
            self._speaking = None
            if item.done is None:  # an answer (a `say` reports in its own result)
                assert self.engine is not None
                seconds = round(said.seconds, 2)
                spoken = AnswerSpoken(
                    item.id, said.sentences, seconds, self.engine.name, said.timings_ms()
                )
                self.bus.publish(spoken)
            self.bus.publish(SpeechChanged("idle", item.id))
            if item.id in self._spoken and self.on_answer_spoken is not None:
                self.on_answer_spoken()
        if item.done is None or item.done.done():
            return
        if item.epoch != self._epoch:  # cut off by `stop`: how much was heard is unknown
            item.done.set_result({"stopped": True})
            return
        if said.problems and not said.sentences:
            item.done.set_exception(said.problems[-1])  # nothing was heard: say why
        else:
            assert self.engine is not None
            item.done.set_result(
                {
                    "sentences": said.sentences,
                    "seconds": round(said.seconds, 2),
                    "engine": self.engine.name,
                    **({"timings_ms": said.timings_ms()} if said.timings_ms() else {}),
                    **({"problems": [p.message for p in said.problems]} if said.problems else {}),
                }
            )

    async def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warming
