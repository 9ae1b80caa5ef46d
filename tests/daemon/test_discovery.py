"""Home Assistant MQTT discovery, checked against HA's documented device-discovery schema and
driven the way Home Assistant drives it: by rendering the entities' templates and publishing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jinja2

from tests.daemon.conftest import Daemon, Mosquitto, listening

BASE = "tektra/testnode"
CONFIG_TOPIC = "homeassistant/device/testnode/config"

# From Home Assistant's MQTT discovery documentation: a device discovery payload needs `device`
# (with identifiers) and `origin` (with name), and `components`, each with its `platform` and a
# `unique_id`; each platform has options it cannot do without.
REQUIRED_BY_PLATFORM = {
    "sensor": {"state_topic"},
    "text": {"command_topic"},
    "switch": {"command_topic"},
    "select": {"command_topic", "options"},
}
ABBREVIATIONS = {"dev": "device", "o": "origin", "cmps": "components", "p": "platform"}


def schema_problems(payload: dict[str, Any]) -> list[str]:
    """Every way `payload` breaks HA's device-based discovery schema (empty: it conforms)."""
    payload = {ABBREVIATIONS.get(k, k): v for k, v in payload.items()}
    problems = []
    device = payload.get("device", {})
    if not device.get("identifiers") and not device.get("connections"):
        problems.append("device needs identifiers or connections")
    if not payload.get("origin", {}).get("name"):
        problems.append("origin.name is required for device discovery")
    components = payload.get("components") or {}
    if not components:
        problems.append("components must list at least one entity")
    seen: set[str] = set()
    for key, raw in components.items():
        component = {ABBREVIATIONS.get(k, k): v for k, v in raw.items()}
        platform = component.get("platform")
        if platform not in REQUIRED_BY_PLATFORM:
            problems.append(f"{key}: platform {platform!r} is not one we expect")
            continue
        missing = REQUIRED_BY_PLATFORM[platform] - set(component)
        if missing:
            problems.append(f"{key}: {platform} needs {sorted(missing)}")
        uid = component.get("unique_id")
        if not uid or uid in seen:
            problems.append(f"{key}: unique_id missing or repeated")
        seen.add(str(uid))
        for option, value in component.items():
            if option.endswith("_topic") and ("+" in value or "#" in value):
                problems.append(f"{key}.{option}: a topic to publish to has no wildcards")
        options = component.get("options", [])
        if platform == "select" and not all(isinstance(o, str) for o in options):
            problems.append(f"{key}: select options are strings")
    return problems


def render(template: str, **variables: Any) -> str:
    """A template rendered as Home Assistant renders it (Jinja2, with `tojson`)."""
    return jinja2.Environment().from_string(template).render(**variables)


async def test_discovery_follows_home_assistants_schema_and_drives_the_daemon(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"')
    async with (
        listening(mosquitto, ["homeassistant/#", f"{BASE}/#"]) as mqtt,
        mosquitto.client() as ha,
    ):
        config = await mqtt.wait_for(lambda m: m.topic == CONFIG_TOPIC)
        payload = config.json()
        assert schema_problems(payload) == []
        assert payload["availability_topic"] == f"{BASE}/status"
        assert (payload["payload_available"], payload["payload_not_available"]) == (
            "online",
            "offline",
        )
        by_name = {c["name"]: c for c in payload["components"].values()}
        assert {n: c["platform"] for n, c in by_name.items()} == {
            "State": "sensor",
            "Last transcript": "sensor",
            "Last answer": "sensor",
            "Ask": "text",
            "Microphone": "switch",
            "Model": "select",
        }
        assert by_name["Model"]["options"] == ["echo", "parrot"]

        # The text entity, as HA sends it: its command template around what the user typed.
        ask = by_name["Ask"]
        await ha.publish(ask["command_topic"], render(ask["command_template"], value='Say "hi"'), 1)
        answer = await mqtt.wait_for(lambda m: m.topic == by_name["Last answer"]["state_topic"])
        shown = render(by_name["Last answer"]["value_template"], value_json=answer.json())
        assert shown == 'You said: Say "hi"'

        # The switch: OFF mutes, and the state topic says so in the switch's own words.
        switch = by_name["Microphone"]
        await ha.publish(switch["command_topic"], switch["payload_off"], 1)
        await mqtt.wait_until(lambda: mqtt.payloads(switch["state_topic"])[-1:] == ["OFF"])
        assert switch["state_off"] == "OFF"

        # The select: picking a model loads it, and the state topic reports it.
        select = by_name["Model"]
        await ha.publish(
            select["command_topic"], render(select["command_template"], value="parrot")
        )
        await mqtt.wait_until(lambda: mqtt.payloads(select["state_topic"])[-1:] == ["parrot"])

        # Home Assistant restarted: discovery is sent again.
        before = len(mqtt.on(CONFIG_TOPIC))
        await ha.publish("homeassistant/status", b"online", 1)
        await mqtt.wait_until(lambda: len(mqtt.on(CONFIG_TOPIC)) == before + 1)
        assert json.loads(mqtt.on(CONFIG_TOPIC)[-1].payload) == payload
        assert mqtt.on(f"{BASE}/error") == []
    # Home Assistant starting later finds it retained.
    async with listening(mosquitto, [CONFIG_TOPIC]) as late:
        retained = await late.wait_for(lambda m: True)
        assert retained.retain and retained.json() == payload
    assert daemon.stop() == 0


def test_the_schema_check_catches_what_home_assistant_would_reject() -> None:
    broken = {
        "device": {"name": "x"},
        "components": {
            "a": {"platform": "select", "unique_id": "u", "command_topic": "t/#"},
            "b": {"platform": "sensor", "unique_id": "u", "state_topic": "s"},
        },
    }
    assert schema_problems(broken) == [
        "device needs identifiers or connections",
        "origin.name is required for device discovery",
        "a: select needs ['options']",
        "a.command_topic: a topic to publish to has no wildcards",
        "b: unique_id missing or repeated",
    ]
