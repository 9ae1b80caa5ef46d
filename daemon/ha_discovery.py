"""Home Assistant MQTT discovery: the daemon as one device with its entities.

Device-based discovery (one retained message on `<discovery_prefix>/device/<node_id>/config`), as
Home Assistant documents it: `device` and `origin` (required for device discovery) at the top, the
entities in `components`, each with its `platform` and a `unique_id`; availability follows the
daemon's retained `status` topic.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from daemon.states import STATE_NAMES


def tektra_version() -> str:
    try:
        return version("tektra")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def discovery_topic(discovery_prefix: str, node_id: str) -> str:
    return f"{discovery_prefix}/device/{node_id}/config"


def discovery_payload(base: str, node_id: str, models: list[str]) -> dict[str, Any]:
    """The device config: sensors for state, last transcript and last answer; a text entity to
    ask; a switch for the microphone; a select for the model."""
    uid = f"tektra_{node_id}"
    # Home Assistant rejects sensor states over 255 characters: the template cuts long texts.
    short = "{{ value_json.text[:255] }}"
    components: dict[str, dict[str, Any]] = {
        f"{uid}_state": {
            "platform": "sensor",
            "unique_id": f"{uid}_state",
            "name": "State",
            "icon": "mdi:robot",
            "state_topic": f"{base}/state",
            "device_class": "enum",
            "options": list(STATE_NAMES),
        },
        f"{uid}_transcript": {
            "platform": "sensor",
            "unique_id": f"{uid}_transcript",
            "name": "Last transcript",
            "icon": "mdi:account-voice",
            "state_topic": f"{base}/transcript",
            "value_template": short,
        },
        f"{uid}_answer": {
            "platform": "sensor",
            "unique_id": f"{uid}_answer",
            "name": "Last answer",
            "icon": "mdi:message-reply-text",
            "state_topic": f"{base}/response",
            "value_template": short,
            "json_attributes_topic": f"{base}/response",
            "json_attributes_template": (
                "{{ {'model': value_json.model, 'backend': value_json.backend} | tojson }}"
            ),
        },
        f"{uid}_ask": {
            "platform": "text",
            "unique_id": f"{uid}_ask",
            "name": "Ask",
            "icon": "mdi:chat-question",
            "command_topic": f"{base}/command/ask",
            "command_template": '{"id": "homeassistant", "text": {{ value | tojson }}}',
            "min": 1,
            "max": 255,
            "mode": "text",
        },
        f"{uid}_microphone": {
            "platform": "switch",
            "unique_id": f"{uid}_microphone",
            "name": "Microphone",
            "icon": "mdi:microphone",
            "command_topic": f"{base}/command/microphone",
            "payload_on": '{"id": "homeassistant", "on": true}',
            "payload_off": '{"id": "homeassistant", "on": false}',
            "state_topic": f"{base}/microphone",
            "state_on": "ON",
            "state_off": "OFF",
        },
    }
    if models:  # a select needs at least one option
        components[f"{uid}_model"] = {
            "platform": "select",
            "unique_id": f"{uid}_model",
            "name": "Model",
            "icon": "mdi:brain",
            "command_topic": f"{base}/command/load_model",
            "command_template": '{"id": "homeassistant", "model": {{ value | tojson }}}',
            "state_topic": f"{base}/model",
            "options": models,
        }
    return {
        "device": {
            "identifiers": [uid],
            "name": f"Tektra {node_id}",
            "manufacturer": "Tektra",
            "model": "Tektra voice assistant daemon",
            "sw_version": tektra_version(),
        },
        "origin": {"name": "tektra", "sw_version": tektra_version()},
        "availability_topic": f"{base}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "components": components,
    }
