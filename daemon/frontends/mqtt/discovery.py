"""Home Assistant MQTT discovery: the daemon as one device with its entities.

Device-based discovery (one retained message on `<discovery_prefix>/device/<node_id>/config`), as
Home Assistant documents it: `device` and `origin` (required for device discovery) at the top, the
entities in `components`, each with its `platform` and a `unique_id`; availability follows the
daemon's retained `status` topic. The entities read the stream topics (`transcript`, `response`,
`intent`, `state`) and the retained ones of `daemon.frontends.mqtt.retained`; their commands are the
daemon's own (`daemon.assistant.commands.COMMANDS`).

`configuration_url` is sent only when `[mqtt] discovery_configuration_url` names one: the daemon
serves no web page of its own, and a link to nothing would be a lie on the device page.
"""

from __future__ import annotations

from collections.abc import Collection
from importlib.metadata import PackageNotFoundError, metadata, version
from typing import Any

from daemon.assistant.commands import COMMANDS
from daemon.core.states import STATE_NAMES
from daemon.intents.handlers import INTENTS

STATES = list(STATE_NAMES)
"""The values of the `state` topic (the state sensor's `enum` options)."""

SENSOR_STATE_MAX = 255
"""Home Assistant refuses a sensor state longer than this; longer texts go to attributes."""

BUTTONS = [
    # (command, name, icon, entity_category): pressed, each sends its command an empty payload.
    ("cancel", "Cancel the answer", "mdi:stop-circle-outline", None),
    ("stop", "Stop", "mdi:stop", None),  # silence the voice at once (and the answer with it)
    ("new_conversation", "New conversation", "mdi:chat-plus-outline", None),
    ("reload", "Reload configuration", "mdi:reload", "config"),
]

_SUPPORT_LABELS = ("issues", "bug tracker", "support", "homepage", "source", "repository")
"""`Project-URL` labels in the order a user looking for help would want them."""


def tektra_version() -> str:
    try:
        return version("tektra")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def support_url() -> str | None:
    """Where users get help, from the package's own `[project.urls]` (none when it names none)."""
    try:
        entries = metadata("tektra").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    return pick_support_url(entries)


def pick_support_url(entries: list[str]) -> str | None:
    """The best of `Project-URL` entries (`"Label, https://…"`) for `origin.support_url`."""
    urls: dict[str, str] = {}
    for entry in entries:
        label, _, url = entry.partition(",")
        if url.strip().startswith(("https://", "http://")):
            urls.setdefault(label.strip().lower(), url.strip())
    for label in _SUPPORT_LABELS:
        if label in urls:
            return urls[label]
    return next(iter(urls.values()), None)


def discovery_payload(
    base: str,
    node_id: str,
    models: list[str],
    configuration_url: str | None = None,
    commands: Collection[str] = COMMANDS.keys(),
) -> dict[str, Any]:
    """The device config: what the assistant hears, says and does, as Home Assistant entities.

    An entity that sends a command is offered only when `commands` (what MQTT accepts) has it:
    a control that is always refused would be a broken promise on the dashboard."""
    uid = f"tektra_{node_id}"
    entities = [
        *_conversation(base),
        *_controls(base, models, commands),
        *_diagnostics(base),
    ]
    components = {f"{uid}_{key}": {"unique_id": f"{uid}_{key}", **e} for key, e in entities}
    device: dict[str, Any] = {
        "identifiers": [uid],
        "name": f"Tektra {node_id}",
        "manufacturer": "Tektra",
        "model": "Tektra voice assistant daemon",
        "sw_version": tektra_version(),
    }
    if configuration_url:
        device["configuration_url"] = configuration_url
    origin = {"name": "Tektra", "sw_version": tektra_version()}
    url = support_url()
    if url:
        origin["support_url"] = url
    return {
        "device": device,
        "origin": origin,
        "availability_topic": f"{base}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "components": components,
    }


Entity = tuple[str, dict[str, Any]]
"""A component's key (after the device's id) and its options."""


def _short(field: str) -> str:
    # Home Assistant rejects sensor states over 255 characters: the state is cut, the whole text
    # stays in the attributes (json_attributes_topic on the same retained message).
    return f"{{{{ value_json.{field}[:{SENSOR_STATE_MAX}] }}}}"


def _event(fields: list[str], event_type: str) -> str:
    """A value template that turns a stream message into an `event` entity's payload."""
    pairs = ", ".join(f"'{f}': value_json.{f}" for f in fields)
    return f"{{{{ {{'event_type': '{event_type}', {pairs}}} | tojson }}}}"


def _intent_event() -> str:
    """The `intent` topic's message as an `event` entity's payload: its `intent` (one of
    `INTENTS`) is the event type, the rest the event's attributes."""
    fields = ["id", "text", "slots", "entities", "result"]
    pairs = ", ".join(f"'{f}': value_json.{f}" for f in fields)
    return f"{{{{ {{'event_type': value_json.intent, {pairs}}} | tojson }}}}"


def _conversation(base: str) -> list[Entity]:
    """What was heard and answered: events fire on every message (a sensor would ignore the
    same text twice), sensors keep the last one across restarts (retained topics)."""
    return [
        (
            "listening",
            {
                "platform": "binary_sensor",
                "name": "Listening",
                "icon": "mdi:ear-hearing",
                "state_topic": f"{base}/state",
                # Derived from the one `state` topic, so the two can never disagree.
                "value_template": "{{ 'ON' if value == 'listening' else 'OFF' }}",
            },
        ),
        (
            "transcript_event",
            {
                "platform": "event",
                "name": "Transcript",
                "icon": "mdi:account-voice",
                "state_topic": f"{base}/transcript",
                "event_types": ["transcript"],
                "value_template": _event(["id", "text"], "transcript"),
            },
        ),
        (
            "answer_event",
            {
                "platform": "event",
                "name": "Answer",
                "icon": "mdi:message-reply-text",
                "state_topic": f"{base}/response",
                "event_types": ["answer"],
                "value_template": _event(["id", "text", "model", "backend"], "answer"),
            },
        ),
        (
            "intent_event",
            {
                "platform": "event",
                "name": "Intent",
                "icon": "mdi:home-lightning-bolt-outline",
                "state_topic": f"{base}/intent",
                "event_types": list(INTENTS),
                "value_template": _intent_event(),
            },
        ),
        (
            "speaking",
            {
                "platform": "binary_sensor",
                "name": "Speaking",
                "icon": "mdi:account-voice",
                "state_topic": f"{base}/tts",
                "value_template": "{{ 'ON' if value == 'speaking' else 'OFF' }}",
            },
        ),
        (
            "transcript",
            {
                "platform": "sensor",
                "name": "Last transcript",
                "icon": "mdi:account-voice",
                "state_topic": f"{base}/transcript/last",
                "value_template": _short("text"),
                "json_attributes_topic": f"{base}/transcript/last",
            },
        ),
        (
            "answer",
            {
                "platform": "sensor",
                "name": "Last answer",
                "icon": "mdi:message-reply-text",
                "state_topic": f"{base}/response/last",
                "value_template": _short("text"),
                "json_attributes_topic": f"{base}/response/last",
            },
        ),
    ]


def _controls(base: str, models: list[str], commands: Collection[str]) -> list[Entity]:
    entities: list[Entity] = [
        (
            "ask",
            {
                "platform": "text",
                "name": "Ask",
                "icon": "mdi:chat-question",
                "command_topic": f"{base}/command/ask",
                "command_template": '{"text": {{ value | tojson }}}',  # each ask gets its own id
                "min": 1,
                "max": SENSOR_STATE_MAX,
                "mode": "text",
            },
        ),
        (
            "say",
            {
                "platform": "text",
                "name": "Say",
                "icon": "mdi:bullhorn",
                "command_topic": f"{base}/command/say",
                # JSON, as for Ask: a plain payload would be read as JSON if it began with `{`.
                "command_template": '{"text": {{ value | tojson }}}',
                "min": 1,
                "max": SENSOR_STATE_MAX,
                "mode": "text",
            },
        ),
        (
            "microphone",
            {
                "platform": "switch",
                "name": "Microphone",
                "icon": "mdi:microphone",
                "entity_category": "config",
                "command_topic": f"{base}/command/microphone",
                "payload_on": "ON",
                "payload_off": "OFF",
                "state_topic": f"{base}/microphone",
                "state_on": "ON",
                "state_off": "OFF",
            },
        ),
    ]
    if models:  # a select needs at least one option
        select = {
            "platform": "select",
            "name": "Model",
            "icon": "mdi:brain",
            "entity_category": "config",
            "command_topic": f"{base}/command/load_model",
            "command_template": '{"model": {{ value | tojson }}}',
            "state_topic": f"{base}/model",
            "options": models,
        }
        entities.append(("model", select))
    for command, name, icon, category in BUTTONS:
        button: dict[str, Any] = {
            "platform": "button",
            "name": name,
            "icon": icon,
            "command_topic": f"{base}/command/{command}",
            "payload_press": "",
        }
        if category:
            button["entity_category"] = category
        entities.append((command, button))
    prefix = f"{base}/command/"
    return [e for e in entities if e[1]["command_topic"].removeprefix(prefix) in commands]


def _diagnostics(base: str) -> list[Entity]:
    diagnostic = {"platform": "sensor", "entity_category": "diagnostic"}
    return [
        (
            "state",
            {
                **diagnostic,
                "name": "State",
                "icon": "mdi:robot",
                "state_topic": f"{base}/state",
                "device_class": "enum",
                "options": STATES,
            },
        ),
        (
            "backend",
            {
                **diagnostic,
                "name": "Backend",
                "icon": "mdi:engine",
                "state_topic": f"{base}/backend",
            },
        ),
        (
            "outbox_dropped",
            {
                **diagnostic,
                "name": "MQTT messages dropped",
                "icon": "mdi:tray-remove",
                "state_topic": f"{base}/outbox",
                "value_template": "{{ value_json.dropped }}",
                "json_attributes_topic": f"{base}/outbox",
                "state_class": "total_increasing",
            },
        ),
        (
            "started",
            {
                **diagnostic,
                "name": "Uptime",
                "state_topic": f"{base}/started",
                "device_class": "timestamp",
            },
        ),
        (
            "last_error",
            {
                **diagnostic,
                "name": "Last error",
                "icon": "mdi:alert-circle-outline",
                "state_topic": f"{base}/error/last",
                "value_template": _short("message"),
                "json_attributes_topic": f"{base}/error/last",
            },
        ),
    ]
