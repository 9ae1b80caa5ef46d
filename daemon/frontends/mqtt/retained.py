"""The retained present: the topics a dashboard (Home Assistant's entities) reads, kept true.

The stream topics (`transcript`, `response`, `error`) are not retained, on purpose: a
request/reply client must never take an old answer for its own, and Home Assistant's `event`
entities fire once per message, so two identical answers are two events. What a dashboard shows
after Home Assistant or the broker restarts is published here as retained messages instead:

- `transcript/last`: the last `transcript` message (TranscriptReady);
- `response/last`: the last `response` message, whole text (ResponseDone);
- `error/last`: the last `error` event (ErrorRaised);
- `backend`: the backend that answered last, or was loaded (ResponseDone, ModelChanged);
- `microphone`: `ON` only while unmuted and the device works (MicrophoneChanged, DeviceState);
- `outbox`: `{"dropped", "waiting", "reconnects"}` of the MQTT outbox (each (re)connect);
- `started`: when the daemon started, ISO 8601 in UTC (each (re)connect);
- `tts`: `speaking` or `idle` (SpeechChanged).

These messages are not kept in the outbox while the broker is away: each (re)connect publishes
the latest of each (`snapshot`), so the broker ends on the truth either way.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from daemon.assistant.assistant import Assistant
from daemon.core.events import (
    ErrorRaised,
    Event,
    MicrophoneChanged,
    ModelChanged,
    PipelineNotice,
    ResponseDone,
    SpeechChanged,
    TranscriptReady,
)
from daemon.frontends.mqtt.outbox import Outgoing


class RetainedTopics:
    """Turns bus events into the retained topics above, and republishes them on reconnect."""

    def __init__(self, base: str, qos: int, assistant: Assistant, started: float) -> None:
        """`started`: the daemon's start on the monotonic clock (the bus's `started`)."""
        self.base = base
        self.qos = qos
        self.assistant = assistant
        self.started = started_at(started)
        self._latest: dict[str, bytes] = {}
        """The last payload of each event-driven sub-topic, for the next snapshot."""

    def messages_for(self, event: Event) -> list[Outgoing]:
        """The retained messages that one bus event changes (often none)."""
        values = self._values_for(event)
        self._latest.update(values)
        return [self._retained(sub, payload) for sub, payload in values.items()]

    def snapshot(self, *, waiting: int, dropped: int, reconnects: int) -> list[Outgoing]:
        """Every retained topic as it stands now, for a fresh broker connection. `waiting` is
        what the outbox holds at the reconnect, `dropped` what it lost since the start."""
        values = dict(self._latest)
        if "backend" not in values and self.assistant.backend is not None:
            values["backend"] = self.assistant.backend.encode()
        values["microphone"] = self.microphone()
        values.setdefault("tts", b"idle")
        outbox = {"dropped": dropped, "waiting": waiting, "reconnects": reconnects}
        values["outbox"] = json.dumps(outbox).encode()
        values["started"] = self.started.encode()
        return [self._retained(sub, payload) for sub, payload in values.items()]

    def microphone(self) -> bytes:
        # The switch must not say ON while the device is lost: that would claim Tektra listens.
        lost = "microphone" in self.assistant.problems
        return b"OFF" if self.assistant.muted or lost else b"ON"

    def _values_for(self, event: Event) -> dict[str, bytes]:
        if isinstance(event, ResponseDone):
            return {"response/last": _wire(event), "backend": event.backend.encode()}
        if isinstance(event, TranscriptReady):
            return {"transcript/last": _wire(event)}
        if isinstance(event, ErrorRaised):
            return {"error/last": _wire(event)}
        if isinstance(event, ModelChanged):
            return {"backend": event.backend.encode()}
        if isinstance(event, SpeechChanged):
            return {"tts": event.state.encode()}
        if isinstance(event, MicrophoneChanged) or _microphone_device(event):
            return {"microphone": self.microphone()}
        return {}

    def _retained(self, sub: str, payload: bytes) -> Outgoing:
        return Outgoing(f"{self.base}/{sub}", payload, self.qos, True, keep=False)


def started_at(monotonic_start: float) -> str:
    """The wall-clock time of a monotonic instant, as Home Assistant's timestamp sensors read it."""
    elapsed = time.monotonic() - monotonic_start
    moment = datetime.now(timezone.utc) - timedelta(seconds=elapsed)
    return moment.isoformat(timespec="seconds")


def _microphone_device(event: Event) -> bool:
    # The voice bridge records a lost device as a problem before it puts the notice on the bus,
    # so by the time this notice arrives `Assistant.problems` already says so.
    return (
        isinstance(event, PipelineNotice)
        and event.name == "DeviceState"
        and event.data.get("kind") == "microphone"
    )


def _wire(event: Event) -> bytes:
    """The same JSON the stream topic carries (the event's wire shape without `event`)."""
    wire = event.to_wire()
    del wire["event"]
    return json.dumps(wire, ensure_ascii=False).encode()
