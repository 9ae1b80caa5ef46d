"""The tools a model is offered are built from what the home holds now, and a call's arguments
are checked against them before anything is done (pure logic; the daemon tests carry calls to
real devices)."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.core.config.schema import EntitySettings
from daemon.home.configured import configured_entities
from daemon.home.registry import EntityRegistry
from daemon.intents.tools import TOOLS, HomeTools, argument_problem


def tools_for(*entries: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entities = configured_entities([EntitySettings.model_validate(e) for e in entries])
    registry = EntityRegistry("homeassistant", entities)
    home = HomeTools(registry, None, lambda found, outcome: None)  # type: ignore[arg-type]
    return {spec.name: spec.parameters for spec in home.specs()}


PORCH = {
    "name": "Porch Light",
    "aliases": ["front light"],
    "area": "Porch",
    "domain": "light",
    "command_topic": "porch/set",
}
BLIND = {"name": "blind", "area": "bedroom", "domain": "cover", "command_topic": "blind/set"}


def test_the_parameters_offer_the_names_areas_and_kinds_the_home_holds() -> None:
    offered = tools_for(PORCH, BLIND)
    turn_on = offered["HassTurnOn"]["properties"]
    assert turn_on["name"]["enum"] == ["blind", "front light", "porch light"]
    assert turn_on["area"]["enum"] == ["bedroom", "porch"]
    assert turn_on["domain"]["enum"] == ["cover", "light"]
    assert offered["HassSetPosition"]["properties"]["position"]["maximum"] == 100
    # No thermostat, no temperature sensor: nothing to set or read a temperature with.
    assert "HassClimateSetTemperature" not in offered
    assert "HassClimateGetTemperature" not in offered


def test_an_empty_home_offers_only_the_clock_and_timers() -> None:
    assert sorted(tools_for()) == [
        "HassCancelTimer",
        "HassGetCurrentDate",
        "HassGetCurrentTime",
        "HassStartTimer",
        "HassTimerStatus",
    ]


def test_every_tool_is_an_intent_the_handlers_carry_out() -> None:
    from daemon.intents.handlers import INTENTS

    assert {tool.intent for tool in TOOLS} <= set(INTENTS)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"name": "porch light", "brightness": 30}, None),
        ({"name": "a heater nobody has"}, None),  # the handler's reply says it is unknown
        ({"brightness": "lots"}, "brightness must be a number, not 'lots'"),
        ({"brightness": True}, "brightness must be a number, not True"),
        ({"brightness": 30.5}, "brightness must be a whole number, not 30.5"),
        ({"brightness": -1}, "brightness must be between 0 and 100"),
        ({"name": 7}, "name must be text, not 7"),
        ({"colour": "red"}, "the action takes no 'colour'"),
        ("turn it on", "the model's arguments were not a JSON object ('turn it on')"),
    ],
)
def test_arguments_are_checked_against_the_tool_s_parameters(
    arguments: dict[str, Any] | str, problem: str | None
) -> None:
    light_set = tools_for(PORCH)["HassLightSet"]
    assert argument_problem(arguments, light_set) == problem
