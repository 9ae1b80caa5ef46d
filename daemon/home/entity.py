"""One device Tektra knows, and how it reads the device's messages into a state.

An entity keeps its options as Home Assistant names them (long keys, topics complete), whether it
came from a discovery config or from `[[entities]]`, so one reading serves both. Its state is
what the device last said, never what Tektra last asked for."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from daemon.home.templates import parse_json, render

ON_OFF_DOMAINS = ("light", "switch", "fan", "binary_sensor")


def option(config: dict[str, Any], key: str, default: str) -> str:
    """A payload option as text (devices send numbers and booleans too)."""
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Entity:
    """A device (or one part of one: a Zigbee plug's relay) that Tektra can act on or ask."""

    id: str
    """`<domain>.<object id>`, unique among the entities."""
    domain: str
    name: str
    aliases: tuple[str, ...]
    area: str | None
    origin: str
    """`discovery` or `models.toml`."""
    source: str
    """Where it was learned: its discovery topic, or `[[entities]]` entry."""
    config: dict[str, Any]
    state: str | None = None
    """`on`/`off`, `open`/`closed`/…, `locked`/`unlocked`, a sensor's reading; None until heard."""
    brightness: int | None = None
    """Lights: 0-100 percent."""
    position: int | None = None
    """Covers: 0 (closed) - 100 (open)."""
    current_temperature: float | None = None
    target_temperature: float | None = None
    _heard: dict[str, bool] = field(default_factory=dict)
    _latest: bool | None = None

    # --- what it is --------------------------------------------------------------------------

    @property
    def unit(self) -> str | None:
        unit = self.config.get("unit_of_measurement")
        return unit if isinstance(unit, str) else None

    @property
    def device_class(self) -> str | None:
        value = self.config.get("device_class")
        return value if isinstance(value, str) else None

    @property
    def json_schema(self) -> bool:
        return self.domain == "light" and self.config.get("schema") == "json"

    def availability(self) -> list[dict[str, Any]]:
        """The availability topics, each with its payloads and template."""
        items = [a for a in self.config.get("availability") or [] if isinstance(a, dict)]
        if isinstance(self.config.get("availability_topic"), str):
            items.append(
                {
                    "topic": self.config["availability_topic"],
                    "payload_available": self.config.get("payload_available"),
                    "payload_not_available": self.config.get("payload_not_available"),
                    "value_template": self.config.get("availability_template"),
                }
            )
        return [a for a in items if isinstance(a.get("topic"), str)]

    @property
    def available(self) -> bool:
        """As Home Assistant decides: always, without availability topics; else unavailable until
        one is heard, then by `availability_mode` (`latest`, `all` or `any`)."""
        topics = [a["topic"] for a in self.availability()]
        if not topics:
            return True
        mode = self.config.get("availability_mode", "latest")
        if mode == "all":
            return all(self._heard.get(t, False) for t in topics)
        if mode == "any":
            return any(self._heard.get(t, False) for t in topics)
        return bool(self._latest)

    def topics(self) -> set[str]:
        """Every topic whose messages change what this entity is known to be."""
        keys = (
            "state_topic",
            "brightness_state_topic",
            "position_topic",
            "current_temperature_topic",
            "temperature_state_topic",
            "mode_state_topic",
        )
        found = {self.config[k] for k in keys if isinstance(self.config.get(k), str)}
        return found | {a["topic"] for a in self.availability()}

    # --- reading the device's messages -------------------------------------------------------

    def hear(self, topic: str, payload: str) -> None:
        """Take one message from one of `topics()`."""
        for item in self.availability():
            if item["topic"] == topic:
                self._hear_availability(topic, item, payload)
        config = self.config
        if topic == config.get("state_topic"):
            if self.json_schema:
                self._hear_json_light(payload)
            else:
                template = config.get("state_value_template") or config.get("value_template")
                value = render(template, payload)
                if value is not None:
                    self._hear_state(value)
        if topic == config.get("brightness_state_topic"):
            level = _number(render(config.get("brightness_value_template"), payload))
            if level is not None:
                self.brightness = self._percent_of_scale(level)
        if topic == config.get("position_topic"):
            position = _number(render(config.get("position_template"), payload))
            if position is not None:
                self._hear_position(position)
        if topic == config.get("current_temperature_topic"):
            reading = render(config.get("current_temperature_template"), payload)
            self.current_temperature = _number(reading)
        if topic == config.get("temperature_state_topic"):
            reading = render(config.get("temperature_state_template"), payload)
            self.target_temperature = _number(reading)
        if topic == config.get("mode_state_topic"):
            mode = render(config.get("mode_state_template"), payload)
            if mode is not None:
                self.state = mode.lower()

    def _hear_availability(self, topic: str, item: dict[str, Any], payload: str) -> None:
        value = render(item.get("value_template"), payload)
        if value == option(item, "payload_available", "online"):
            self._heard[topic] = self._latest = True
        elif value == option(item, "payload_not_available", "offline"):
            self._heard[topic] = self._latest = False

    def _hear_json_light(self, payload: str) -> None:
        message = parse_json(payload)
        if not isinstance(message, dict):
            return
        state = message.get("state")
        if isinstance(state, str) and state.upper() in ("ON", "OFF"):
            self.state = state.lower()
        level = message.get("brightness")
        if isinstance(level, int | float) and not isinstance(level, bool):
            self.brightness = self._percent_of_scale(float(level))

    def _hear_state(self, value: str) -> None:
        config = self.config
        if self.domain in ON_OFF_DOMAINS:
            on = option(config, "state_on", option(config, "payload_on", "ON"))
            off = option(config, "state_off", option(config, "payload_off", "OFF"))
            if value == on or value.lower() == "on":
                self.state = "on"
            elif value == off or value.lower() == "off":
                self.state = "off"
        elif self.domain == "lock":
            states = {
                option(config, "state_locked", "LOCKED"): "locked",
                option(config, "state_unlocked", "UNLOCKED"): "unlocked",
            }
            self.state = states.get(value, value.lower())
        elif self.domain == "cover":
            states = {
                option(config, "state_open", "open"): "open",
                option(config, "state_closed", "closed"): "closed",
                option(config, "state_opening", "opening"): "opening",
                option(config, "state_closing", "closing"): "closing",
            }
            self.state = states.get(value, value.lower())
        else:
            self.state = value

    def _hear_position(self, position: float) -> None:
        closed = _number(self.config.get("position_closed")) or 0.0
        opened = _number(self.config.get("position_open")) or 100.0
        if opened == closed:
            return
        self.position = round(100 * (position - closed) / (opened - closed))
        if "state_topic" not in self.config:
            self.state = "closed" if self.position <= 0 else "open"

    def _percent_of_scale(self, level: float) -> int:
        scale = _number(self.config.get("brightness_scale")) or 255.0
        return max(0, min(100, round(100 * level / scale)))

    # --- telling -----------------------------------------------------------------------------

    def listing(self) -> dict[str, Any]:
        """What `tektra entities` shows of it."""
        return {
            "id": self.id,
            "name": self.name,
            "aliases": list(self.aliases),
            "domain": self.domain,
            "area": self.area,
            "origin": self.origin,
            "source": self.source,
            "available": self.available,
            "state": self.state,
            "command_topic": self.config.get("command_topic"),
            "state_topic": self.config.get("state_topic"),
        }


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))
