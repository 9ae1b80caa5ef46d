"""What each intent does, and the reply that says truly what happened.

A reply is built from the outcome: a command the broker took ("Turned on the kitchen light"), a
state the device last reported ("The garage door is open"), or why nothing was done ("I don't know
a device called kitchen heater"; "The kitchen light is unavailable"). Nothing is published unless
the request named a device that can do it."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon.core.errors import TektraError
from daemon.home import actions
from daemon.home.actions import DeviceCommand, NotOffered
from daemon.home.entity import Entity
from daemon.home.registry import EntityRegistry
from daemon.intents.matcher import Match
from daemon.intents.timers import Timers, spoken_duration

COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "red": (255, 0, 0),
    "orange": (255, 165, 0),
    "yellow": (255, 255, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "purple": (128, 0, 128),
    "pink": (255, 192, 203),
    "brown": (165, 42, 42),
}


class Publisher(Protocol):
    async def publish(self, command: DeviceCommand, timeout_s: float) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What handling an intent came to: its `intent` event's `result`, and the reply."""

    success: bool
    code: str
    """`done`, `state`, `time`, `timer`, `nothing`, or why not: `no_entity`, `unavailable`,
    `not_offered`, `broker_unavailable`, `no_timer`."""
    speech: str
    entities: list[str] = field(default_factory=list)
    """Ids of the entities acted on or asked about."""
    published: list[dict[str, Any]] = field(default_factory=list)
    """The device commands the broker took: topic and payload."""

    def result(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "code": self.code,
            "speech": self.speech,
            "published": self.published,
        }


@dataclass
class Handlers:
    registry: EntityRegistry
    publisher: Publisher
    timers: Timers
    timeout_s: float
    now: Callable[[], datetime.datetime] = datetime.datetime.now

    async def handle(self, match: Match) -> Outcome:
        if match.unknown is not None:
            return Outcome(False, "no_entity", f"I don't know a device called {match.unknown}.")
        handler = _HANDLERS[match.intent]
        return await handler(self, match)

    # --- acting ------------------------------------------------------------------------------

    async def _turn_on(self, match: Match) -> Outcome:
        return await self._act(match, actions.turn_on, _did_on)

    async def _turn_off(self, match: Match) -> Outcome:
        return await self._act(match, actions.turn_off, _did_off)

    async def _toggle(self, match: Match) -> Outcome:
        def toggle(entity: Entity) -> DeviceCommand:
            on = entity.state in ("on", "open", "locked")
            return actions.turn_off(entity) if on else actions.turn_on(entity)

        def did(entity: Entity) -> str:
            on = entity.state in ("on", "open", "locked")
            return _did_off(entity) if on else _did_on(entity)

        return await self._act(match, toggle, did)

    async def _light_set(self, match: Match) -> Outcome:
        if "brightness" in match.slots:
            percent = int(match.slots["brightness"])
            return await self._act(
                match,
                lambda e: actions.set_brightness(e, percent),
                lambda e: f"Set the {e.name} to {percent} percent",
            )
        colour = str(match.slots.get("color", "")).lower()
        if colour not in COLOURS:
            return Outcome(False, "not_offered", f"I can't set lights to {colour or 'that'}.")
        return await self._act(
            match,
            lambda e: actions.set_color(e, COLOURS[colour]),
            lambda e: f"Set the {e.name} to {colour}",
        )

    async def _set_position(self, match: Match) -> Outcome:
        percent = int(match.slots.get("position", 0))
        return await self._act(
            match,
            lambda e: actions.set_position(e, percent),
            lambda e: f"Set the {e.name} to {percent} percent open",
        )

    async def _set_temperature(self, match: Match) -> Outcome:
        degrees = float(match.slots.get("temperature", 0))
        shown = f"{degrees:g}"
        return await self._act(
            match,
            lambda e: actions.set_temperature(e, degrees),
            lambda e: f"Set the {e.name} to {shown} degrees",
            domain="climate",
        )

    async def _act(
        self,
        match: Match,
        command_for: Callable[[Entity], DeviceCommand],
        said: Callable[[Entity], str],
        *,
        domain: str | None = None,
    ) -> Outcome:
        targets = self._targets(match, domain)
        if isinstance(targets, Outcome):
            return targets
        away = [e for e in targets if not e.available]
        if away and len(away) == len(targets):
            return _unavailable(away)
        ready = [e for e in targets if e.available]
        commands = []
        for entity in ready:
            try:
                commands.append((entity, command_for(entity)))
            except NotOffered:
                continue  # "the kitchen lights" may take in one that cannot dim: the others can
        if not commands:
            names = _names(ready)
            return Outcome(False, "not_offered", f"The {names} can't do that.", _ids(ready))
        done: list[Entity] = []
        told: list[str] = []
        published: list[dict[str, Any]] = []
        for entity, command in commands:
            # `said` reads the state before the device answers: what it was asked to leave.
            sentence = said(entity)
            try:
                await self.publisher.publish(command, self.timeout_s)
            except TektraError as exc:
                speech = f"I couldn't reach the {entity.name}: {exc.message}."
                if done:
                    speech = f"{_sentences(told)} But {speech[0].lower()}{speech[1:]}"
                return Outcome(False, "broker_unavailable", speech, _ids(done), published)
            done.append(entity)
            told.append(sentence)
            published.append({"topic": command.topic, "payload": command.payload})
        speech = _sentences(told)
        if away:
            speech += " " + _unavailable(away).speech
        return Outcome(True, "done", speech, _ids(done), published)

    # --- asking ------------------------------------------------------------------------------

    async def _get_state(self, match: Match) -> Outcome:
        targets = self._targets(match, None)
        if isinstance(targets, Outcome):
            return targets
        return _tell(targets, match)

    async def _get_temperature(self, match: Match) -> Outcome:
        targets = self._targets(match, "climate")
        if isinstance(targets, Outcome):
            # No thermostat there: a temperature sensor tells it as well.
            sensors = self._targets(match, "sensor")
            if isinstance(sensors, Outcome) or "name" in match.slots:
                return targets
            found = [e for e in sensors if e.device_class == "temperature"]
            if not found:
                return targets
            return _tell(found, match)
        entity = targets[0]
        if not entity.available:
            return _unavailable([entity])
        if entity.current_temperature is None:
            speech = f"I haven't heard the temperature of the {entity.name} yet."
            return Outcome(False, "unavailable", speech, [entity.id])
        speech = f"The {entity.name} says {entity.current_temperature:g} degrees."
        return Outcome(True, "state", speech, [entity.id])

    # --- clock and timers --------------------------------------------------------------------

    async def _time(self, _: Match) -> Outcome:
        return Outcome(True, "time", f"It's {self.now():%H:%M}.")

    async def _date(self, _: Match) -> Outcome:
        today = self.now()
        return Outcome(True, "time", f"Today is {today:%A}, {today.day} {today:%B %Y}.")

    async def _start_timer(self, match: Match) -> Outcome:
        seconds = 0.0
        for unit, factor in (("hours", 3600), ("minutes", 60), ("seconds", 1)):
            value = match.slots.get(unit)
            if isinstance(value, int | float):
                seconds += float(value) * factor
            elif value in ("half", "1/2") and unit == "minutes":
                seconds += 30.0
        if seconds <= 0:
            return Outcome(False, "not_offered", "How long should the timer run?")
        name = match.slots.get("name") if isinstance(match.slots.get("name"), str) else None
        timer = self.timers.start(seconds, name)
        return Outcome(True, "timer", f"Timer set for {spoken_duration(seconds)}.", [timer.id])

    async def _cancel_timer(self, _: Match) -> Outcome:
        timer = self.timers.cancel()
        if timer is None:
            return Outcome(False, "no_timer", "There is no timer running.")
        return Outcome(True, "timer", f"Cancelled the {timer.described}.", [timer.id])

    async def _timer_status(self, _: Match) -> Outcome:
        running = self.timers.running()
        if not running:
            return Outcome(False, "no_timer", "There is no timer running.")
        lines = [f"The {t.described} has {spoken_duration(t.left_s)} left." for t in running]
        return Outcome(True, "timer", " ".join(lines), [t.id for t in running])

    async def _nevermind(self, _: Match) -> Outcome:
        return Outcome(True, "nothing", "")

    # --- which devices -----------------------------------------------------------------------

    def _targets(self, match: Match, domain: str | None) -> list[Entity] | Outcome:
        """The entities a request names: by name, else every one of its domain (or device
        class) in its area; an honest refusal when there are none."""
        entity_id = match.slots.get("name")
        if isinstance(entity_id, str):
            entity = self.registry.get(entity_id)
            if entity is None:  # removed between matching and acting
                heard = match.heard.get("name", entity_id)
                return Outcome(False, "no_entity", f"I don't know a device called {heard}.")
            # Replies call it what the user called it ("kitchen light", not "Kitchen Light").
            return [dataclasses.replace(entity, name=match.heard.get("name", entity.name))]
        area = match.slots.get("area")
        wanted = domain or match.slots.get("domain") or match.context.get("domain")
        device_class = match.slots.get("device_class") or match.context.get("device_class")
        found = [
            e
            for e in self.registry.entities()
            if (area is None or (e.area or "").lower() == str(area).lower())
            and (wanted is None or e.domain == wanted)
            and (device_class is None or e.device_class == device_class)
        ]
        if area is None and wanted is None and device_class is None:
            found = []
        if not found:
            what = str(device_class or wanted or "device").replace("_", " ")
            where = f" in the {area}" if area else ""
            return Outcome(False, "no_entity", f"I don't know any {what}{where}.")
        return found


def _tell(targets: list[Entity], match: Match) -> Outcome:
    """The states the devices last reported; a yes or no first when the question named one."""
    lines = []
    for entity in targets:
        if not entity.available:
            lines.append(f"The {entity.name} is unavailable.")
        elif entity.state is None:
            lines.append(f"I haven't heard the state of the {entity.name} yet.")
        elif isinstance(match.slots.get("state"), str) and len(targets) == 1:
            # "Is the front door locked?" gets its yes or no, then the state that says so.
            yes = entity.state == match.slots["state"]
            said = f"The {entity.name} is {_state_words(entity)}."
            lines.append(f"{'Yes' if yes else 'No'}, {said[0].lower()}{said[1:]}")
        else:
            lines.append(f"The {entity.name} is {_state_words(entity)}.")
    success = all(e.available and e.state is not None for e in targets)
    code = "state" if success else "unavailable"
    return Outcome(success, code, " ".join(lines), _ids(targets))


def _did_on(entity: Entity) -> str:
    verbs = {"cover": "Opened", "lock": "Locked", "button": "Pressed", "scene": "Activated"}
    verb = verbs.get(entity.domain, "Turned on")
    return f"{verb} the {entity.name}"


def _did_off(entity: Entity) -> str:
    verbs = {"cover": "Closed", "lock": "Unlocked"}
    verb = verbs.get(entity.domain, "Turned off")
    return f"{verb} the {entity.name}"


def _state_words(entity: Entity) -> str:
    if entity.domain == "cover" and entity.position is not None and entity.state == "open":
        return f"open ({entity.position} percent)" if 0 < entity.position < 100 else "open"
    if entity.domain == "light" and entity.state == "on" and entity.brightness is not None:
        return f"on at {entity.brightness} percent"
    if entity.unit:
        return f"{entity.state} {entity.unit}".replace(" °", "°")
    return str(entity.state)


def _unavailable(entities: list[Entity]) -> Outcome:
    verb = "is" if len(entities) == 1 else "are"
    speech = f"The {_names(entities)} {verb} unavailable, so I didn't change anything."
    return Outcome(False, "unavailable", speech, _ids(entities))


def _names(entities: list[Entity]) -> str:
    names = [e.name for e in entities]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _ids(entities: list[Entity]) -> list[str]:
    return [e.id for e in entities]


def _sentences(parts: list[str]) -> str:
    return ". ".join(parts) + "."


_HANDLERS: dict[str, Callable[[Handlers, Match], Awaitable[Outcome]]] = {
    "HassTurnOn": Handlers._turn_on,
    "HassTurnOff": Handlers._turn_off,
    "HassToggle": Handlers._toggle,
    "HassLightSet": Handlers._light_set,
    "HassGetState": Handlers._get_state,
    "HassSetPosition": Handlers._set_position,
    "HassClimateSetTemperature": Handlers._set_temperature,
    "HassClimateGetTemperature": Handlers._get_temperature,
    "HassStartTimer": Handlers._start_timer,
    "HassCancelTimer": Handlers._cancel_timer,
    "HassTimerStatus": Handlers._timer_status,
    "HassGetCurrentTime": Handlers._time,
    "HassGetCurrentDate": Handlers._date,
    "HassNevermind": Handlers._nevermind,
}

INTENTS = tuple(_HANDLERS)
"""The intents Tektra carries out itself (the `intent` topic's `intent` values)."""
