"""The intent path of an answer: match the request, carry it out, tell the bus.

`IntentEngine.answer` is what the assistant asks first; None sends the request on to the model.
Every handled request is also an `intent` event (`<prefix>/<node_id>/intent` on MQTT), for the
automations people already have."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from hassil import Intents
from hassil.errors import HassilError
from hassil.intents import SlotList

from daemon.core.config.schema import TektraConfig
from daemon.core.events import Event, EventBus, RequestId, ResponseDone
from daemon.home.registry import EntityRegistry
from daemon.intents.handlers import Handlers, Outcome, Publisher
from daemon.intents.matcher import Match, load_intents, match, slot_lists
from daemon.intents.timers import Timer, Timers
from daemon.intents.tools import HomeTools

log = logging.getLogger("tektra.intents")

LONGEST_REQUEST = 300
"""Longer texts are never a home request ("turn on the kitchen light" is 26 characters); they go
straight to the model instead of through hassil's matching, whose cost grows with the text."""

ANSWERED_BY = "intents"
"""The `model` and `backend` of a response the intents gave: no model was asked."""


@dataclass(frozen=True)
class IntentHandled(Event):
    """A request Tektra carried out itself, and what came of it."""

    kind: ClassVar[str] = "intent"
    id: RequestId
    text: str
    """The request as typed or heard."""
    intent: str
    """Home Assistant's intent name (`HassTurnOn`, …)."""
    slots: dict[str, Any]
    """What the request said: slot name -> value (an entity's id for `name`)."""
    entities: list[str]
    """Ids of the entities acted on or asked about (timers' ids for timer intents)."""
    result: dict[str, Any]
    """`success`, `code`, `speech` (the reply) and the device commands `published`."""
    source: str = "sentence"
    """`sentence` (the request matched a sentence template) or `model` (a model called the
    intent as a tool)."""


def intent_language(config: TektraConfig) -> str:
    return config.intents.language or config.stt.language or "en"


class IntentEngine:
    """Matches requests against the sentence templates of one language and carries them out."""

    def __init__(
        self,
        config: TektraConfig,
        registry: EntityRegistry,
        publisher: Publisher,
        bus: EventBus,
    ) -> None:
        self.language = intent_language(config)
        self.registry = registry
        self.bus = bus
        self.timers = Timers(self._timer_done)
        self.handlers = Handlers(registry, publisher, self.timers, config.intents.command_timeout_s)
        self._load()

    def reconfigure(self, config: TektraConfig) -> None:
        """Take a reloaded configuration (timers keep running)."""
        self.handlers.timeout_s = config.intents.command_timeout_s
        if intent_language(config) != self.language:
            self.language = intent_language(config)
            self._load()

    def _load(self) -> None:
        self._intents: Intents | None = load_intents(self.language)
        if self._intents is None:
            log.warning(
                "no sentence templates for language %r: requests go to the model", self.language
            )
        self._lists: dict[str, SlotList] = {}
        self._lists_version = -1

    async def answer(self, request_id: RequestId, text: str) -> str | None:
        """The reply when `text` is a request Tektra carries out itself, else None."""
        if self._intents is None or not text.strip() or len(text) > LONGEST_REQUEST:
            return None
        if self._lists_version != self.registry.version:
            self._lists = slot_lists(self.registry.entities())
            self._lists_version = self.registry.version
        # Matching is CPU work (milliseconds; the first builds hassil's index): off the loop.
        try:
            found = await asyncio.to_thread(match, text, self._intents, self._lists, self.language)
        except HassilError as exc:  # templates of a language that want a list we do not make
            log.warning("intents: %r could not be matched (%s); the model answers", text, exc)
            return None
        if found is None:
            return None
        outcome = await self.handlers.handle(found)
        log.info("intent %s (%s): %s", found.intent, outcome.code, outcome.speech)
        self.bus.publish(_event(request_id, text, found, outcome))
        return outcome.speech

    async def warm(self) -> None:
        """Build hassil's index now (a few hundred milliseconds), not on the first request."""
        if self._intents is not None:
            lists = slot_lists([])
            await asyncio.to_thread(match, "what time is it", self._intents, lists, self.language)

    def tools(self, request_id: RequestId, text: str) -> HomeTools:
        """The intents as tools for a model that takes them, for request `request_id`."""

        def report(found: Match, outcome: Outcome) -> None:
            event = _event(request_id, text, found, outcome)
            self.bus.publish(dataclasses.replace(event, source="model"))

        return HomeTools(self.registry, self.handlers, report)

    def close(self) -> None:
        self.timers.cancel_all()

    def _timer_done(self, timer: Timer) -> None:
        speech = f"Your {timer.described} is done."
        self.bus.publish(
            ResponseDone(
                id=timer.id,
                text=speech,
                model=ANSWERED_BY,
                backend=ANSWERED_BY,
                finish_reason="timer",
                prompt_tokens=0,
                completion_tokens=0,
            )
        )


def _event(request_id: RequestId, text: str, found: Match, outcome: Outcome) -> IntentHandled:
    slots = dict(found.slots)
    if found.unknown is not None:
        slots["name"] = found.unknown
    return IntentHandled(
        id=request_id,
        text=text,
        intent=found.intent,
        slots=_plain(slots),
        entities=list(outcome.entities),
        result=outcome.result(),
    )


def _plain(slots: dict[str, Any]) -> dict[str, Any]:
    """Slot values as JSON takes them (hassil gives numbers as floats: 30.0 reads as 30)."""
    out: dict[str, Any] = {}
    for key, value in slots.items():
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif not isinstance(value, str | int | float | bool) and value is not None:
            value = str(value)
        out[key] = value
    return out
