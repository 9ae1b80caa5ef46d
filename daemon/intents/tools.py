"""The home's actions as tools, for models that take them ("make it cosier in here").

Each tool is one of the intents Tektra carries out, under Home Assistant's own name (its LLM API
offers the same ones), and a call runs through the same handlers as a matched sentence: the same
command on the entity's own topic, the same truthful reply, the same `intent` event (marked as
coming from the model). The parameters are built from what is known now: the devices' names and
aliases, the areas, the kinds of device there are. A call that names no known tool or whose
arguments are wrong is refused in words, and nothing is published."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from daemon.home.entity import Entity
from daemon.home.registry import EntityRegistry
from daemon.intents.handlers import COLOURS, Handlers, Outcome
from daemon.intents.matcher import Match
from daemon.models.backends.base import ToolCall, ToolSpec

log = logging.getLogger("tektra.intents")

Schema = dict[str, Any]


@dataclass(frozen=True)
class _Known:
    """What the parameters offer: names as people say them, areas, kinds of device."""

    names: list[str]
    areas: list[str]
    domains: list[str]
    temperature_sensors: bool


@dataclass(frozen=True)
class _Tool:
    intent: str
    description: str
    parameters: Callable[[_Known], dict[str, Schema]]
    offered: Callable[[_Known], bool]


def _targets(known: _Known) -> dict[str, Schema]:
    """Which devices: one by name, or every one of a kind (in an area)."""
    out: dict[str, Schema] = {
        "name": {"type": "string", "description": "The device's name.", "enum": known.names},
        "domain": {
            "type": "string",
            "description": "Every device of this kind.",
            "enum": known.domains,
        },
    }
    if known.areas:
        out["area"] = {"type": "string", "description": "The room or area.", "enum": known.areas}
    return out


def _percent(what: str) -> Schema:
    return {"type": "integer", "minimum": 0, "maximum": 100, "description": what}


def _without_domain(known: _Known) -> dict[str, Schema]:
    return {k: v for k, v in _targets(known).items() if k != "domain"}


def _devices(known: _Known) -> bool:
    return bool(known.names)


def _has(*domains: str) -> Callable[[_Known], bool]:
    return lambda known: any(d in known.domains for d in domains)


def _nothing(_: _Known) -> dict[str, Schema]:
    return {}


def _always(_: _Known) -> bool:
    return True


TOOLS = (
    _Tool(
        "HassTurnOn",
        "Turn on, open, lock, press or activate devices (by name, or all of a kind in an area).",
        _targets,
        _devices,
    ),
    _Tool(
        "HassTurnOff",
        "Turn off, close or unlock devices (by name, or all of a kind in an area).",
        _targets,
        _devices,
    ),
    _Tool("HassToggle", "Switch devices to the other state.", _targets, _devices),
    _Tool(
        "HassLightSet",
        "Set the brightness (percent) or the colour of lights.",
        lambda known: {
            **_without_domain(known),
            "brightness": _percent("Brightness in percent."),
            "color": {"type": "string", "enum": sorted(COLOURS)},
        },
        _has("light"),
    ),
    _Tool(
        "HassGetState",
        "Tell the state a device last reported (on, off, open, locked, a reading).",
        _targets,
        _devices,
    ),
    _Tool(
        "HassSetPosition",
        "Open covers (blinds, garage doors) to a position in percent.",
        lambda known: {**_without_domain(known), "position": _percent("0 closed, 100 open.")},
        _has("cover"),
    ),
    _Tool(
        "HassClimateSetTemperature",
        "Set the temperature a thermostat aims for.",
        lambda known: {
            **_without_domain(known),
            "temperature": {"type": "number", "description": "Degrees."},
        },
        _has("climate"),
    ),
    _Tool(
        "HassClimateGetTemperature",
        "Tell the temperature a thermostat or temperature sensor last reported.",
        _without_domain,
        lambda known: "climate" in known.domains or known.temperature_sensors,
    ),
    _Tool(
        "HassStartTimer",
        "Start a timer, announced when it ends.",
        lambda _: {
            "hours": {"type": "integer", "minimum": 0},
            "minutes": {"type": "integer", "minimum": 0},
            "seconds": {"type": "integer", "minimum": 0},
            "name": {"type": "string", "description": "What the timer is for."},
        },
        _always,
    ),
    _Tool("HassCancelTimer", "Cancel the timer started last.", _nothing, _always),
    _Tool("HassTimerStatus", "Tell how long the running timers have left.", _nothing, _always),
    _Tool("HassGetCurrentTime", "Tell the time now, from the clock.", _nothing, _always),
    _Tool("HassGetCurrentDate", "Tell today's date, from the clock.", _nothing, _always),
)


class HomeTools:
    """The tools of one request: `specs` for the model, `call` for what it asks."""

    def __init__(
        self,
        registry: EntityRegistry,
        handlers: Handlers,
        report: Callable[[Match, Outcome], None],
    ) -> None:
        self._registry = registry
        self._handlers = handlers
        self._report = report
        """Publishes the `intent` event of a call: the call read as a match, and its outcome."""

    def specs(self) -> tuple[ToolSpec, ...]:
        known = _known(self._registry.entities())
        return tuple(
            ToolSpec(tool.intent, tool.description, _object(tool.parameters(known)))
            for tool in TOOLS
            if tool.offered(known)
        )

    async def call(self, call: ToolCall) -> str:
        tools = {spec.name: spec for spec in self.specs()}
        spec = tools.get(call.name)
        if spec is None:
            log.warning("a model called %r, which is no tool it was given", call.name)
            return f"I couldn't do that: I have no action called {call.name}."
        arguments = call.arguments
        problem = argument_problem(arguments, spec.parameters)
        if problem is not None or not isinstance(arguments, dict):
            outcome = Outcome(False, "bad_call", f"I couldn't do that: {problem}.")
            self._report(
                Match(call.name, arguments if isinstance(arguments, dict) else {}), outcome
            )
            return outcome.speech
        found = self._match(call.name, arguments)
        outcome = await self._handlers.handle(found)
        log.info("tool %s (%s): %s", call.name, outcome.code, outcome.speech)
        self._report(found, outcome)
        return outcome.speech

    def _match(self, intent: str, arguments: dict[str, Any]) -> Match:
        """The call as a matched sentence would have it: the device's id for its name."""
        slots = {k: v for k, v in arguments.items() if k != "name" or intent == "HassStartTimer"}
        if intent == "HassLightSet" and "name" not in arguments:
            slots["domain"] = "light"
        name = arguments.get("name")
        if not isinstance(name, str) or intent == "HassStartTimer":
            return Match(intent, slots)
        entity = _named(self._registry.entities(), name)
        if entity is None:
            return Match(intent, {}, unknown=name)
        slots["name"] = entity.id
        return Match(intent, slots, {"name": name}, {"domain": entity.domain})


def _known(entities: list[Entity]) -> _Known:
    names = sorted({_spoken(n) for e in entities for n in (e.name, *e.aliases)})
    return _Known(
        names,
        sorted({_spoken(e.area) for e in entities if e.area}),
        sorted({e.domain for e in entities}),
        any(e.device_class == "temperature" for e in entities),
    )


def _named(entities: list[Entity], name: str) -> Entity | None:
    wanted = _spoken(name)
    return next((e for e in entities if wanted in {_spoken(n) for n in (e.name, *e.aliases)}), None)


def _object(properties: dict[str, Schema]) -> Schema:
    return {"type": "object", "properties": properties, "additionalProperties": False}


def argument_problem(arguments: dict[str, Any] | str, schema: Schema) -> str | None:
    """Why the arguments do not fit the tool's parameters (the flat kinds these tools use).

    Names, areas and colours nobody knows are left to the handlers, whose replies say so
    ("I don't know a device called kitchen heater")."""
    if not isinstance(arguments, dict):
        return f"the model's arguments were not a JSON object ({str(arguments)[:80]!r})"
    properties: dict[str, Schema] = schema["properties"]
    for key, value in arguments.items():
        kind = properties.get(key)
        if kind is None:
            return f"the action takes no {key!r}"
        if kind["type"] == "string" and not isinstance(value, str):
            return f"{key} must be text, not {value!r}"
        if kind["type"] in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"{key} must be a number, not {value!r}"
            if kind["type"] == "integer" and not float(value).is_integer():
                return f"{key} must be a whole number, not {value!r}"
            low, high = kind.get("minimum"), kind.get("maximum")
            if (low is not None and value < low) or (high is not None and value > high):
                return f"{key} must be between {low} and {high if high is not None else 'more'}"
    return None


def _spoken(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").split())
