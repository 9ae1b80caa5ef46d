"""A satellite in Home Assistant: a device of its own, in the room it serves, behind the hub.

Device-based discovery as the hub's own (`daemon.frontends.mqtt.discovery`), published by the
satellite itself (it knows its room): `suggested_area` is the room, `via_device` the hub's device.
Entities: its state, a microphone switch, and the last transcript the hub heard from it.
Availability follows the satellite's retained `status` (its last will says `offline`).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from daemon.frontends.mqtt.discovery import SENSOR_STATE_MAX, support_url, tektra_version

SatelliteState = Literal["idle", "listening", "waiting", "speaking", "muted"]
"""`listening`: woken, hearing the request; `waiting`: the request went to the hub."""
STATES: tuple[SatelliteState, ...] = get_args(SatelliteState)


def device_id(hub_node: str, satellite: str) -> str:
    return f"tektra_{hub_node}_satellite_{satellite}"


def discovery_topic(discovery_prefix: str, hub_node: str, satellite: str) -> str:
    return f"{discovery_prefix}/device/{device_id(hub_node, satellite)}/config"


def satellite_payload(base: str, hub_node: str, satellite: str, room: str) -> dict[str, Any]:
    uid = device_id(hub_node, satellite)
    entities: dict[str, dict[str, Any]] = {
        "state": {
            "platform": "sensor",
            "name": "State",
            "icon": "mdi:microphone-message",
            "device_class": "enum",
            "options": list(STATES),
            "state_topic": f"{base}/state",
        },
        "microphone": {
            "platform": "switch",
            "name": "Microphone",
            "icon": "mdi:microphone",
            "state_topic": f"{base}/mic",
            "command_topic": f"{base}/mic/set",
            "payload_on": "ON",
            "payload_off": "OFF",
        },
        "transcript": {
            "platform": "sensor",
            "name": "Last transcript",
            "icon": "mdi:account-voice",
            "state_topic": f"{base}/transcript",
            "value_template": f"{{{{ value_json.text[:{SENSOR_STATE_MAX}] }}}}",
            "json_attributes_topic": f"{base}/transcript",
        },
    }
    components = {
        f"{uid}_{key}": {"unique_id": f"{uid}_{key}", **entity} for key, entity in entities.items()
    }
    origin = {"name": "Tektra", "sw_version": tektra_version()}
    url = support_url()
    if url:
        origin["support_url"] = url
    return {
        "device": {
            "identifiers": [uid],
            "name": f"Tektra satellite {room}",
            "manufacturer": "Tektra",
            "model": "Tektra satellite",
            "sw_version": tektra_version(),
            "suggested_area": room,
            "via_device": f"tektra_{hub_node}",
        },
        "origin": origin,
        "availability_topic": f"{base}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "components": components,
    }
