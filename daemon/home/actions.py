"""The message that makes a device do something, in the device's own format.

Each action reads the entity's own options (its topics, its payloads, JSON or plain), with Home
Assistant's defaults where the device gave none, so the command works with the device alone,
whether or not Home Assistant runs. An action the device does not offer raises `NotOffered`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.home.entity import Entity, dumps, option
from daemon.home.templates import render


@dataclass(frozen=True)
class DeviceCommand:
    topic: str
    payload: str
    qos: int = 0
    retain: bool = False


class NotOffered(Exception):
    """The device has no way to do this (a sensor switched on, a plain switch dimmed)."""


def turn_on(entity: Entity) -> DeviceCommand:
    c = entity.config
    if entity.json_schema:
        return _command(entity, "command_topic", dumps({"state": "ON"}))
    payloads = {
        "light": ("payload_on", "ON"),
        "switch": ("payload_on", "ON"),
        "fan": ("payload_on", "ON"),
        "scene": ("payload_on", "ON"),
        "cover": ("payload_open", "OPEN"),
        "lock": ("payload_lock", "LOCK"),
        "button": ("payload_press", "PRESS"),
    }
    if entity.domain not in payloads:
        raise NotOffered
    key, default = payloads[entity.domain]
    return _command(entity, "command_topic", option(c, key, default))


def turn_off(entity: Entity) -> DeviceCommand:
    c = entity.config
    if entity.json_schema:
        return _command(entity, "command_topic", dumps({"state": "OFF"}))
    payloads = {
        "light": ("payload_off", "OFF"),
        "switch": ("payload_off", "OFF"),
        "fan": ("payload_off", "OFF"),
        "cover": ("payload_close", "CLOSE"),
        "lock": ("payload_unlock", "UNLOCK"),
    }
    if entity.domain not in payloads:
        raise NotOffered
    key, default = payloads[entity.domain]
    return _command(entity, "command_topic", option(c, key, default))


def set_brightness(entity: Entity, percent: int) -> DeviceCommand:
    if entity.domain != "light":
        raise NotOffered
    scale = entity.config.get("brightness_scale", 255)
    level = round(max(0, min(100, percent)) * (scale if isinstance(scale, int) else 255) / 100)
    if entity.json_schema:
        if entity.config.get("brightness") is False:
            raise NotOffered
        return _command(entity, "command_topic", dumps({"state": "ON", "brightness": level}))
    return _command(entity, "brightness_command_topic", str(level))


def set_color(entity: Entity, rgb: tuple[int, int, int]) -> DeviceCommand:
    if entity.domain != "light":
        raise NotOffered
    r, g, b = rgb
    if entity.json_schema:
        modes = entity.config.get("supported_color_modes") or []
        if not any(m in ("rgb", "hs", "xy", "rgbw", "rgbww") for m in modes):
            raise NotOffered
        return _command(
            entity, "command_topic", dumps({"state": "ON", "color": {"r": r, "g": g, "b": b}})
        )
    return _command(entity, "rgb_command_topic", f"{r},{g},{b}")


def set_position(entity: Entity, percent: int) -> DeviceCommand:
    if entity.domain != "cover":
        raise NotOffered
    closed = _int(entity.config.get("position_closed"), 0)
    opened = _int(entity.config.get("position_open"), 100)
    position = round(closed + (opened - closed) * max(0, min(100, percent)) / 100)
    return _command(entity, "set_position_topic", str(position))


def set_temperature(entity: Entity, degrees: float) -> DeviceCommand:
    if entity.domain != "climate":
        raise NotOffered
    text = str(int(degrees)) if float(degrees).is_integer() else str(degrees)
    return _command(entity, "temperature_command_topic", text)


def _command(entity: Entity, topic_key: str, payload: str) -> DeviceCommand:
    topic = entity.config.get(topic_key)
    if not isinstance(topic, str) or not topic:
        raise NotOffered
    if topic_key == "command_topic":
        # A device that wants its commands shaped (`{"cmd": "{{ value }}"}`) says so.
        payload = _shaped(entity.config.get("command_template"), payload)
    qos = entity.config.get("qos", 0)
    retain = entity.config.get("retain", False)
    return DeviceCommand(
        topic,
        payload,
        qos if isinstance(qos, int) and 0 <= qos <= 2 else 0,
        retain if isinstance(retain, bool) else False,
    )


def _shaped(template: Any, payload: str) -> str:
    if not isinstance(template, str):
        return payload
    shaped = render(template, payload)
    return shaped if shaped is not None else payload


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
