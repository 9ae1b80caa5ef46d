"""Which requests Tektra carries out itself and which go on to the model (hassil with Home
Assistant's English templates, the entities' names as slot lists)."""

from __future__ import annotations

import pytest

from daemon.home.entity import Entity
from daemon.intents.matcher import Match, load_intents, match, slot_lists

INTENTS = load_intents("en-US")  # falls back to `en`
HOME = [
    Entity("light.kitchen_light", "light", "Kitchen Light", (), "kitchen", "discovery", "t", {}),
    Entity("lock.front", "lock", "Front Door", ("entrance",), "hall", "discovery", "t", {}),
]
LISTS = slot_lists(HOME)


def matched(text: str) -> Match | None:
    assert INTENTS is not None
    return match(text, INTENTS, LISTS, "en")


@pytest.mark.parametrize(
    ("text", "intent", "slots"),
    [
        ("turn on the kitchen light", "HassTurnOn", {"name": "light.kitchen_light"}),
        ("Turn off the kitchen light.", "HassTurnOff", {"name": "light.kitchen_light"}),
        ("lock the entrance", "HassTurnOn", {"name": "lock.front"}),
        ("turn on the kitchen lights", "HassTurnOn", {"area": "kitchen", "domain": "light"}),
        ("what time is it", "HassGetCurrentTime", {}),
        ("set a timer for 2 seconds", "HassStartTimer", {"seconds": 2}),
        ("nevermind", "HassNevermind", {}),
    ],
)
def test_requests_tektra_carries_out(text: str, intent: str, slots: dict[str, object]) -> None:
    found = matched(text)
    assert found is not None and (found.intent, found.slots, found.unknown) == (intent, slots, None)


@pytest.mark.parametrize(
    ("text", "name"),
    [("turn on the kitchen heater", "kitchen heater"), ("turn on the radio", "radio")],
)
def test_a_device_nobody_has_is_named_in_the_match(text: str, name: str) -> None:
    found = matched(text)
    assert found is not None and (found.intent, found.unknown) == ("HassTurnOn", name)


@pytest.mark.parametrize(
    "text",
    [
        "what is the weather like today",  # an intent Tektra does not carry out
        "who is at the door",  # about people: the camera and the model
        "look at this",
        "lights off please",
        "tell me a joke",
        "hello",
    ],
)
def test_everything_else_goes_to_the_model(text: str) -> None:
    assert matched(text) is None
