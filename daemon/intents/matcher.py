"""Home Assistant's intent matcher (hassil) over its own sentence templates, with the names,
aliases and areas of the entities Tektra knows as slot lists.

Matching is CPU work of a few milliseconds (the first match builds hassil's index); callers run it
off the loop. A request that names a device nobody knows still matches, with that name in
`unknown`, so the reply can say so instead of handing the request to the model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from hassil import Intents, recognize_best
from hassil.intents import SlotList, TextSlotList
from hassil.models import UnmatchedTextEntity
from hassil.recognize import MISSING_ENTITY as MISSING
from home_assistant_intents import get_intents

from daemon.home.discovery import DOMAINS
from daemon.home.entity import Entity

log = logging.getLogger("tektra.intents")

HANDLED = frozenset(
    {
        "HassTurnOn",
        "HassTurnOff",
        "HassToggle",
        "HassLightSet",
        "HassGetState",
        "HassSetPosition",
        "HassClimateSetTemperature",
        "HassClimateGetTemperature",
        "HassStartTimer",
        "HassCancelTimer",
        "HassTimerStatus",
        "HassGetCurrentTime",
        "HassGetCurrentDate",
        "HassNevermind",
    }
)
"""The intents Tektra carries out; any other match (the weather, shopping lists) goes to the
model, which may know more."""
ABOUT_A_DEVICE = frozenset(
    {"HassTurnOn", "HassTurnOff", "HassToggle", "HassLightSet", "HassGetState", "HassSetPosition"}
)


@dataclass(frozen=True)
class Match:
    """A request as hassil understood it."""

    intent: str
    slots: dict[str, Any]
    """Slot values: `name` is an entity id, `area` an area, numbers are numbers."""
    heard: dict[str, str] = field(default_factory=dict)
    """The words each slot matched."""
    context: dict[str, Any] = field(default_factory=dict)
    """What the matched names imply (`domain`, `device_class`) or the sentence says (`state`)."""
    unknown: str | None = None
    """The device name heard that no entity has (the request then matched nothing else)."""


def load_intents(language: str) -> Intents | None:
    """The sentence templates for `language` (`en`, `de`, `pt-BR`…; `en-US` falls back to `en`);
    None when the package has none."""
    for candidate in (language, language.split("-")[0].split("_")[0]):
        data = get_intents(candidate)
        if data is not None:
            return Intents.from_dict(data)
    return None


def slot_lists(entities: list[Entity]) -> dict[str, SlotList]:
    names: list[tuple[str, Any, dict[str, Any]]] = []
    for entity in entities:
        context: dict[str, Any] = {"domain": entity.domain}
        if entity.device_class:
            context["device_class"] = entity.device_class
        for name in (entity.name, *entity.aliases):
            names.append((_spoken(name), entity.id, context))
    areas = sorted({_spoken(e.area) for e in entities if e.area})
    return {
        "name": TextSlotList.from_tuples(names, allow_template=False),
        "area": TextSlotList.from_strings(areas, allow_template=False),
        "floor": TextSlotList.from_strings([], allow_template=False),
    }


def match(text: str, intents: Intents, lists: dict[str, SlotList], language: str) -> Match | None:
    """The intent `text` asks for, if it is one Tektra carries out."""
    result = recognize_best(
        text,
        intents,
        slot_lists=lists,
        language=language,
        best_metadata_key="hass_custom_sentence",
        best_slot_name="name",
    )
    if result is not None:
        if result.intent.name not in HANDLED:
            return None
        domain = result.context.get("domain")
        slot = result.entities.get("domain")
        domain = slot.value if slot is not None else domain
        if isinstance(domain, str) and domain not in DOMAINS:
            return None  # people, media players, …: "who is at the door" is for the model
        return Match(
            result.intent.name,
            {k: e.value for k, e in result.entities.items()},
            {k: e.text.strip() for k, e in result.entities.items()},
            dict(result.context),
        )
    return _unknown_device(text, intents, lists, language)


def _unknown_device(
    text: str, intents: Intents, lists: dict[str, SlotList], language: str
) -> Match | None:
    """A device request whose name matches no entity ("turn on the kitchen heater"), read as
    Home Assistant reads it: the sentence matched around a name it does not know."""
    result = recognize_best(
        text, intents, slot_lists=lists, language=language, allow_unmatched_entities=True
    )
    if result is None or result.intent.name not in ABOUT_A_DEVICE:
        return None
    if result.intent.name == "HassGetState" and "state" not in result.entities:
        # "What is the weather like today" reads as a state question about a device called
        # "weather like today": only "is the X open/on/locked" is surely about a device.
        return None
    # Exactly one thing heard that nothing is called, a device (by name or kind). More than
    # one ("look at this": a device "look" in an area "this") is no device request.
    heard = {
        slot: entity.text.strip()
        for slot, entity in result.unmatched_entities.items()
        if isinstance(entity, UnmatchedTextEntity) and entity.text.strip() not in ("", MISSING)
    }
    if len(heard) != 1 or result.text_chunks_matched < 1:
        return None
    ((slot, name),) = heard.items()
    # An unknown area is not answered here: hassil reads too much as one ("lights off please"
    # names an area "please"); such requests go on to the model.
    if slot not in ("name", "device_class") or _spoken(name) == _spoken(text):
        return None
    area = result.entities.get("area")
    if area is not None:
        name = f"{area.text.strip()} {name}"
    return Match(result.intent.name, {}, {}, {}, unknown=name)


def _spoken(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").split())
