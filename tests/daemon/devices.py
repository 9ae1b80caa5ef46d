"""Simulated devices of a home: real MQTT clients that announce themselves with discovery configs
exactly as their firmware does, obey their own command topics and publish their own state.

Each device is a dict of retained messages to publish at start (discovery, availability, state)
and a function per command topic that returns the messages the real device would publish back.
`commands` records every command received, so a test can show what was (and was not) sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from daemon.core.supervisor import cancel_and_wait

Reply = list[tuple[str, str]]


@dataclass
class Device:
    name: str
    announce: list[tuple[str, str]]
    """Retained messages it publishes when it starts: discovery config, availability, state."""
    obeys: dict[str, Callable[[str], Reply]]
    """Command topic -> what the device publishes (retained) when it gets a payload there."""
    commands: list[tuple[str, str]] = field(default_factory=list)


def z2m_light(name: str, ieee: str, area: str | None = None) -> Device:
    """A Zigbee2MQTT bulb: JSON schema, brightness 0-254, per-device availability in JSON,
    the device name as the entity name (`name: null`), short keys and `~`."""
    base = f"zigbee2mqtt/{name}"
    config: dict[str, Any] = {
        "~": base,
        "avty": [
            {"t": "zigbee2mqtt/bridge/state", "val_tpl": "{{ value_json.state }}"},
            {"t": "~/availability", "val_tpl": "{{ value_json.state }}"},
        ],
        "avty_mode": "all",
        "brightness": True,
        "bri_scl": 254,
        "cmd_t": "~/set",
        "dev": {
            "ids": [f"zigbee2mqtt_{ieee}"],
            "mf": "IKEA",
            "mdl": "TRADFRI bulb E27 WS opal 980lm",
            "name": name,
            "via_device": "zigbee2mqtt_bridge_0x00124b0024c04c37",
            **({"sa": area} if area else {}),
        },
        "name": None,
        "o": {"name": "Zigbee2MQTT", "sw": "1.40.2", "url": "https://www.zigbee2mqtt.io"},
        "obj_id": name.lower().replace(" ", "_"),
        "schema": "json",
        "stat_t": "~",
        "sup_clrm": ["brightness"],
        "uniq_id": f"{ieee}_light_zigbee2mqtt",
    }
    state = {"state": "OFF", "brightness": 254, "linkquality": 120}

    def obey(payload: str) -> Reply:
        command = json.loads(payload)
        state.update({k: v for k, v in command.items() if k in ("state", "brightness")})
        return [(base, json.dumps(state))]

    return Device(
        name,
        [
            (f"homeassistant/light/{ieee}/light/config", json.dumps(config)),
            ("zigbee2mqtt/bridge/state", json.dumps({"state": "online"})),
            (f"{base}/availability", json.dumps({"state": "online"})),
            (base, json.dumps(state)),
        ],
        {f"{base}/set": obey},
    )


def tasmota_switch(name: str, mac: str) -> Device:
    """A Tasmota plug (SetOption19): default-schema switch, short keys, `~` in front of its
    topics, `Online`/`Offline` as its last will, its state in a JSON `RESULT`."""
    topic = f"tasmota_{mac[-6:]}"
    config = {
        "name": name,
        "~": f"{topic}/",
        "cmd_t": "~cmnd/POWER",
        "stat_t": "~stat/RESULT",
        "val_tpl": "{{value_json.POWER}}",
        "pl_off": "OFF",
        "pl_on": "ON",
        "avty_t": "~tele/LWT",
        "pl_avail": "Online",
        "pl_not_avail": "Offline",
        "uniq_id": f"{mac}_RL_1",
        "dev": {"ids": [mac], "name": name, "mdl": "Sonoff Basic", "sw": "13.2.0", "mf": "Tasmota"},
    }
    power = {"POWER": "OFF"}

    def obey(payload: str) -> Reply:
        power["POWER"] = payload.upper()
        return [(f"{topic}/stat/RESULT", json.dumps(power))]

    return Device(
        name,
        [
            (f"homeassistant/switch/{mac}_RL_1/config", json.dumps(config)),
            (f"{topic}/tele/LWT", "Online"),
            (f"{topic}/stat/RESULT", json.dumps(power)),
        ],
        {f"{topic}/cmnd/POWER": obey},
    )


def garage_door() -> Device:
    """A cover with a position (an ESPHome-style node id in its discovery topic)."""
    config = {
        "name": "Garage Door",
        "dev_cla": "garage",
        "cmd_t": "garage/door/set",
        "stat_t": "garage/door/state",
        "set_pos_t": "garage/door/position/set",
        "pos_t": "garage/door/position",
        "uniq_id": "garage_door_1",
        "dev": {"ids": ["garage1"], "name": "Garage", "sa": "garage"},
    }
    state: dict[str, Any] = {"state": "closed", "position": 0}

    def obey(payload: str) -> Reply:
        state["state"] = {"OPEN": "open", "CLOSE": "closed"}.get(payload, state["state"])
        state["position"] = 100 if state["state"] == "open" else 0
        return [
            ("garage/door/state", str(state["state"])),
            ("garage/door/position", str(state["position"])),
        ]

    def move(payload: str) -> Reply:
        state["position"] = int(payload)
        state["state"] = "open" if state["position"] > 0 else "closed"
        return [("garage/door/state", str(state["state"])), ("garage/door/position", payload)]

    return Device(
        "Garage Door",
        [
            ("homeassistant/cover/garage_node/garage_door/config", json.dumps(config)),
            ("garage/door/state", "closed"),
            ("garage/door/position", "0"),
        ],
        {"garage/door/set": obey, "garage/door/position/set": move},
    )


def front_door() -> Device:
    """A device-based discovery config (one topic, several components): a lock and its
    temperature sensor, sharing the device and the availability topic."""
    config = {
        "dev": {"ids": ["frontdoor01"], "name": "Front Door", "sa": "hall"},
        "o": {"name": "doorfw", "sw": "2.1"},
        "avty_t": "frontdoor/status",
        "cmps": {
            "lock": {"p": "lock", "name": None, "cmd_t": "frontdoor/lock/set",
                     "stat_t": "frontdoor/lock", "uniq_id": "frontdoor01_lock"},
            "temperature": {"p": "sensor", "name": "Temperature", "dev_cla": "temperature",
                            "unit_of_meas": "°C", "stat_t": "frontdoor/sensor",
                            "val_tpl": "{{ value_json.temperature }}",
                            "uniq_id": "frontdoor01_temp"},
        },
    }  # fmt: skip
    lock = {"state": "LOCKED"}

    def obey(payload: str) -> Reply:
        lock["state"] = {"LOCK": "LOCKED", "UNLOCK": "UNLOCKED"}[payload]
        return [("frontdoor/lock", lock["state"])]

    return Device(
        "Front Door",
        [
            ("homeassistant/device/frontdoor01/config", json.dumps(config)),
            ("frontdoor/status", "online"),
            ("frontdoor/lock", "LOCKED"),
            ("frontdoor/sensor", json.dumps({"temperature": 19.5, "battery": 90})),
        ],
        {"frontdoor/lock/set": obey},
    )


async def _serve(client: aiomqtt.Client, devices: list[Device]) -> None:
    routes = {topic: (device, obey) for device in devices for topic, obey in device.obeys.items()}
    async for message in client.messages:
        topic = message.topic.value
        payload = message.payload.decode() if isinstance(message.payload, bytes) else ""
        if topic in routes:
            device, obey = routes[topic]
            device.commands.append((topic, payload))
            for state_topic, state in obey(payload):
                await client.publish(state_topic, state, qos=1, retain=True)


@asynccontextmanager
async def running(client: aiomqtt.Client, devices: list[Device]) -> AsyncIterator[list[Device]]:
    """The devices live on `client` (one connection, as a Zigbee2MQTT bridge holds) while the
    block runs: announced, obeying, publishing their state."""
    async with client:
        for device in devices:
            for topic in device.obeys:
                await client.subscribe(topic, qos=1)
        for device in devices:
            for topic, payload in device.announce:
                await client.publish(topic, payload, qos=1, retain=True)
        task = asyncio.create_task(_serve(client, devices))
        try:
            yield devices
        finally:
            await cancel_and_wait(task)  # its cancel may be lost in aiomqtt (Python < 3.12)


async def publish(client: aiomqtt.Client, topic: str, payload: str) -> None:
    async with client:
        await client.publish(topic, payload, qos=1, retain=True)


def thermostat() -> Device:
    """An MQTT HVAC (climate) with its target and current temperature on their own topics."""
    config = {
        "name": "Thermostat",
        "mode_cmd_t": "hvac/mode/set",
        "mode_stat_t": "hvac/mode",
        "modes": ["off", "heat"],
        "temp_cmd_t": "hvac/target/set",
        "temp_stat_t": "hvac/target",
        "curr_temp_t": "hvac/current",
        "uniq_id": "hvac1",
        "dev": {"ids": ["hvac1"], "name": "Hallway Heating", "sa": "hallway"},
    }
    return Device(
        "Thermostat",
        [
            ("homeassistant/climate/hvac1/config", json.dumps(config)),
            ("hvac/mode", "heat"),
            ("hvac/target", "19"),
            ("hvac/current", "18.5"),
        ],
        {"hvac/target/set": lambda payload: [("hvac/target", payload)]},
    )
