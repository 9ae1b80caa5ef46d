"""Reading devices' discovery configs and messages as Home Assistant reads them (pure logic)."""

from __future__ import annotations

import json
from typing import Any

from daemon.core.config.schema import EntitySettings
from daemon.home import actions
from daemon.home.configured import configured_entities
from daemon.home.entity import Entity
from daemon.home.registry import EntityRegistry


def discovered(topic: str, config: dict[str, Any]) -> list[Entity]:
    registry = EntityRegistry("homeassistant")
    registry.take(topic, json.dumps(config).encode())
    return registry.entities()


def test_short_keys_are_written_out_and_the_tilde_becomes_the_base_topic() -> None:
    (plug,) = discovered(
        "homeassistant/switch/A1B2C3_RL_1/config",
        {
            "name": "Desk Lamp",
            "~": "tasmota_A1B2C3/",
            "cmd_t": "~cmnd/POWER",
            "stat_t": "~stat/RESULT",
            "val_tpl": "{{value_json.POWER}}",
            "avty_t": "~tele/LWT",
            "pl_avail": "Online",
            "pl_not_avail": "Offline",
            "uniq_id": "A1B2C3_RL_1",
            "dev": {"ids": ["A1B2C3"], "sa": "study"},
        },
    )
    assert (plug.id, plug.domain, plug.name, plug.area) == (
        "switch.a1b2c3_rl_1",
        "switch",
        "Desk Lamp",
        "study",
    )
    assert plug.config["command_topic"] == "tasmota_A1B2C3/cmnd/POWER"
    assert plug.topics() == {"tasmota_A1B2C3/stat/RESULT", "tasmota_A1B2C3/tele/LWT"}
    assert actions.turn_on(plug) == actions.DeviceCommand("tasmota_A1B2C3/cmnd/POWER", "ON")


def test_state_is_read_through_the_value_template_and_availability_through_its_payloads() -> None:
    (plug,) = discovered(
        "homeassistant/switch/A1B2C3_RL_1/config",
        {
            "name": "Desk Lamp",
            "cmd_t": "lamp/cmnd/POWER",
            "stat_t": "lamp/stat/RESULT",
            "val_tpl": "{{value_json.POWER}}",
            "avty_t": "lamp/tele/LWT",
            "pl_avail": "Online",
            "pl_not_avail": "Offline",
        },
    )
    assert (plug.available, plug.state) == (False, None)  # nothing heard yet
    plug.hear("lamp/tele/LWT", "Online")
    plug.hear("lamp/stat/RESULT", '{"POWER":"ON"}')
    assert (plug.available, plug.state) == (True, "on")
    plug.hear("lamp/stat/RESULT", '{"Dimmer":40}')  # another message on the topic: no change
    plug.hear("lamp/tele/LWT", "Offline")
    assert (plug.available, plug.state) == (False, "on")


def test_a_device_based_config_gives_each_component_the_shared_options() -> None:
    lock, sensor = discovered(
        "homeassistant/device/door01/config",
        {
            "dev": {"ids": ["door01"], "name": "Back Door"},
            "o": {"name": "fw"},
            "~": "door01",
            "avty_t": "~/status",
            "cmps": {
                "l": {"p": "lock", "name": None, "cmd_t": "~/lock/set", "stat_t": "~/lock"},
                "t": {"p": "sensor", "name": "Battery", "stat_t": "~/bat", "unit_of_meas": "%"},
                "x": {"p": "vacuum", "name": "Not one Tektra knows"},
            },
        },
    )
    assert (lock.id, lock.name, lock.config["command_topic"]) == (
        "lock.l",
        "Back Door",
        "door01/lock/set",
    )
    assert (sensor.name, sensor.aliases, sensor.unit) == ("Back Door Battery", ("Battery",), "%")
    assert lock.topics() == {"door01/lock", "door01/status"}


def test_an_empty_config_removes_the_device() -> None:
    registry = EntityRegistry("homeassistant")
    topic = "homeassistant/light/bulb/config"
    registry.take(topic, b'{"name": "Bulb", "cmd_t": "bulb/set"}')
    assert [e.id for e in registry.entities()] == ["light.bulb"]
    registry.take(topic, b"")
    assert registry.entities() == []


def test_json_schema_lights_get_json_commands_on_their_own_brightness_scale() -> None:
    (bulb,) = discovered(
        "homeassistant/light/0x01/light/config",
        {"name": None, "schema": "json", "cmd_t": "z2m/bulb/set", "stat_t": "z2m/bulb",
         "brightness": True, "bri_scl": 254, "sup_clrm": ["xy"], "dev": {"name": "Bulb"}},
    )  # fmt: skip
    bulb.hear("z2m/bulb", '{"state":"ON","brightness":127}')
    assert (bulb.name, bulb.state, bulb.brightness) == ("Bulb", "on", 50)
    assert actions.set_brightness(bulb, 100).payload == '{"state":"ON","brightness":254}'
    assert actions.set_color(bulb, (255, 0, 0)).payload == (
        '{"state":"ON","color":{"r":255,"g":0,"b":0}}'
    )
    assert actions.turn_off(bulb).payload == '{"state":"OFF"}'


def test_entities_from_models_toml_take_home_assistant_s_default_payloads() -> None:
    (lock,) = configured_entities(
        [EntitySettings(name="shed lock", domain="lock", command_topic="shed/lock/set")]
    )
    assert (lock.id, lock.origin, lock.source) == (
        "lock.shed_lock",
        "models.toml",
        "[[entities]] #1",
    )
    assert actions.turn_on(lock) == actions.DeviceCommand("shed/lock/set", "LOCK")
    assert actions.turn_off(lock) == actions.DeviceCommand("shed/lock/set", "UNLOCK")
    assert lock.available  # no availability topic: always
