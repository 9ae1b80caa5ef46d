"""The event bus: typed facts about the daemon, fanned out to every subscriber.

Each fact is one frozen dataclass with a `kind`; `to_wire()` is the one JSON shape every sink (MQTT,
the socket's `subscribe`) sends. Subscribers read from their own bounded queue, so a slow client
loses its own oldest events (counted in `dropped`) and never slows the daemon or other clients.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from daemon.core.states import StateName

RequestId = str | int
"""A request's id as its client sent it; replies and events carry it with its type."""


def new_request_id(origin: str) -> str:
    """The one source of made-up request ids (`voice-…`, `mqtt-…`, `cli-…`): random, so unique
    across restarts too, where a counter would say `voice-1` again."""
    return f"{origin}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Event:
    """Base of every event; `kind` names it on the wire."""

    kind: ClassVar[str] = "event"

    def to_wire(self) -> dict[str, Any]:
        """The JSON object sinks send: the event's fields plus `event` (its kind)."""
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class StateChanged(Event):
    """The assistant's state: idle, loading, listening, transcribing, thinking or responding."""

    kind: ClassVar[str] = "state"
    state: StateName
    detail: str = ""
    """What the state is about, e.g. the model being loaded (`loading`)."""


@dataclass(frozen=True)
class TranscriptReady(Event):
    """What the user said, as heard by speech-to-text."""

    kind: ClassVar[str] = "transcript"
    id: RequestId
    """The id of the query the transcript starts."""
    text: str


@dataclass(frozen=True)
class ModelProgress(Event):
    """Slow work a backend is doing for a model, such as Ollama pulling it (`auto_pull`)."""

    kind: ClassVar[str] = "model_progress"
    backend: str
    model: str
    status: str


@dataclass(frozen=True)
class PartialTranscript(Event):
    """What speech-to-text has heard so far of an utterance still being spoken."""

    kind: ClassVar[str] = "transcript_partial"
    text: str


@dataclass(frozen=True)
class ResponseChunk(Event):
    """A piece of an answer as the model streams it."""

    kind: ClassVar[str] = "response_chunk"
    id: RequestId
    """The request id the answer belongs to."""
    seq: int
    """0, 1, 2, … within one answer, so a reader can spot gaps."""
    text: str


@dataclass(frozen=True)
class ResponseDone(Event):
    """A complete answer, with where it came from and how long each stage took."""

    kind: ClassVar[str] = "response"
    id: RequestId
    text: str
    model: str
    backend: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    """Per stage: `first_chunk` (time to first text), `total`, and the engine's own timings."""


@dataclass(frozen=True)
class ErrorRaised(Event):
    """Something failed that a user should hear about; `id` ties it to a request, if any."""

    kind: ClassVar[str] = "error"
    id: RequestId | None
    code: str
    message: str


@dataclass(frozen=True)
class MicrophoneChanged(Event):
    """The microphone was muted or unmuted."""

    kind: ClassVar[str] = "microphone"
    muted: bool


@dataclass(frozen=True)
class ModelChanged(Event):
    """The default model was loaded or switched."""

    kind: ClassVar[str] = "model"
    model: str
    backend: str


@dataclass(frozen=True)
class PipelineNotice(Event):
    """An event of the voice pipeline (speech started/ended, device state, frames dropped)."""

    kind: ClassVar[str] = "pipeline"
    name: str
    """The pipeline event's class name, e.g. `SpeechStarted`."""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BrokerLink(Event):
    """The MQTT link went up or down."""

    kind: ClassVar[str] = "mqtt"
    connected: bool
    detail: str = ""


@dataclass(frozen=True)
class SpeechChanged(Event):
    """Tektra started or stopped speaking (the half-duplex hold follows this)."""

    kind: ClassVar[str] = "tts"
    state: str
    """`speaking` or `idle`."""
    id: RequestId = ""
    """The answer or `say` request being spoken (with the type its request id was sent with)."""
    engine: str = ""


@dataclass(frozen=True)
class SpeakerChanged(Event):
    """The output device opened, closed after a quiet spell, or was lost."""

    kind: ClassVar[str] = "speaker"
    state: str
    """`open`, `closed` or `lost`."""
    detail: str = ""


class Subscription:
    """One subscriber's bounded queue; iterate it for events."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0
        """Events lost because this subscriber fell behind."""

    def put(self, event: Event) -> None:
        if self._queue.full():
            # The oldest goes: for a live view the newest facts matter most.
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        return await self._queue.get()

    def close(self) -> None:
        self._bus.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()


class EventBus:
    """Publish events to every current subscriber. Publishing never blocks and never fails."""

    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []
        self.started = time.monotonic()

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        subscription = Subscription(self, maxsize)
        self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def publish(self, event: Event) -> None:
        for subscription in list(self._subscribers):
            subscription.put(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
