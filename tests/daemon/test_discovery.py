"""Home Assistant MQTT discovery, checked against HA's documented device-discovery schema and
driven the way Home Assistant drives it: by rendering the entities' templates and publishing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from daemon.assistant.assistant import Assistant
from daemon.assistant.commands import COMMANDS
from daemon.assistant.protocol import Request, check_args, read_payload
from daemon.assistant.voice import VoiceBridge
from daemon.core.config.load import check_text
from daemon.core.events import (
    ErrorRaised,
    Event,
    EventBus,
    ResponseDone,
    SpeechChanged,
    TranscriptReady,
)
from daemon.frontends.mqtt.discovery import BUTTONS, discovery_payload, pick_support_url
from daemon.frontends.mqtt.retained import RetainedTopics
from daemon.intents.engine import IntentHandled
from daemon.intents.handlers import INTENTS
from pipelines.events import DeviceState
from tests.daemon.conftest import Daemon, Mosquitto, SocketClient, listening

BASE = "tektra/testnode"
CONFIG_TOPIC = "homeassistant/device/testnode/config"

# --- Home Assistant's documented schema --------------------------------------------------------
# Device-based discovery (https://www.home-assistant.io/integrations/mqtt/#discovery-messages):
# the payload needs `device` (with `identifiers` or `connections`), `origin` (with `name`; may
# also carry `sw_version` and `support_url`) and `components`, each with its `platform`. Shared
# at the top: availability options, `state_topic`, `command_topic`, `qos`, `encoding`.
DEVICE_KEYS = {
    "device", "origin", "components", "availability", "availability_mode",
    "availability_template", "availability_topic", "payload_available",
    "payload_not_available", "state_topic", "command_topic", "qos", "encoding",
}  # fmt: skip
DEVICE_INFO_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
# Options every MQTT entity platform lists (each platform's page, e.g.
# https://www.home-assistant.io/integrations/sensor.mqtt/#configuration-variables).
COMMON_KEYS = {
    "platform", "unique_id", "name", "icon", "entity_category", "entity_picture",
    "enabled_by_default", "availability", "availability_mode", "availability_template",
    "availability_topic", "payload_available", "payload_not_available", "device", "origin",
    "json_attributes_topic", "json_attributes_template", "object_id", "default_entity_id",
    "qos", "encoding",
}  # fmt: skip
# Each platform's own options, from its page https://www.home-assistant.io/integrations/<p>.mqtt/
PLATFORM_KEYS = {
    "sensor": {
        "state_topic", "value_template", "device_class", "unit_of_measurement", "state_class",
        "expire_after", "force_update", "last_reset_value_template", "options",
        "suggested_display_precision",
    },
    "binary_sensor": {
        "state_topic", "value_template", "device_class", "expire_after", "force_update",
        "off_delay", "payload_on", "payload_off",
    },
    "event": {"state_topic", "value_template", "device_class", "event_types"},
    "button": {"command_topic", "command_template", "device_class", "payload_press", "retain"},
    "switch": {
        "command_topic", "command_template", "state_topic", "value_template", "device_class",
        "optimistic", "payload_on", "payload_off", "state_on", "state_off", "retain",
    },
    "select": {
        "command_topic", "command_template", "state_topic", "value_template", "options",
        "optimistic", "retain",
    },
    "text": {
        "command_topic", "command_template", "state_topic", "value_template", "min", "max",
        "mode", "pattern", "optimistic", "retain",
    },
}  # fmt: skip
REQUIRED_KEYS = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "event": {"state_topic", "event_types"},
    "button": {"command_topic"},
    "switch": {"command_topic"},
    "select": {"command_topic", "options"},
    "text": {"command_topic"},
}
# `entity_category` is `config` or `diagnostic`; Home Assistant refuses a sensor or binary
# sensor in `config` (they show readings, not settings).
CATEGORIES = {"config", "diagnostic"}
READ_ONLY = {"sensor", "binary_sensor"}  # their entity classes raise "cannot be added … config"
SENSOR_STATE_MAX = 255  # a longer sensor state is refused
ABBREVIATIONS = {
    "dev": "device", "o": "origin", "cmps": "components", "p": "platform",
    "avty_t": "availability_topic", "stat_t": "state_topic", "cmd_t": "command_topic",
    "uniq_id": "unique_id", "ent_cat": "entity_category", "val_tpl": "value_template",
    "cmd_tpl": "command_template", "json_attr_t": "json_attributes_topic",
}  # fmt: skip


def _full(options: dict[str, Any]) -> dict[str, Any]:
    return {ABBREVIATIONS.get(k, k): v for k, v in options.items()}


def schema_problems(payload: dict[str, Any], base: str = BASE) -> list[str]:
    """Every way `payload` breaks HA's documented device-based discovery schema, or our rule
    that an entity reads and writes only our topics and sends only commands we accept."""
    payload = _full(payload)
    problems = [f"unknown device-discovery key {k!r}" for k in sorted(set(payload) - DEVICE_KEYS)]
    device = payload.get("device", {})
    if not device.get("identifiers") and not device.get("connections"):
        problems.append("device needs identifiers or connections")
    problems += [f"unknown device key {k!r}" for k in sorted(set(device) - DEVICE_INFO_KEYS)]
    origin = payload.get("origin", {})
    if not origin.get("name"):
        problems.append("origin.name is required for device discovery")
    problems += [f"unknown origin key {k!r}" for k in sorted(set(origin) - ORIGIN_KEYS)]
    for where, url in [("device", device.get("configuration_url")), ("origin", origin.get(
        "support_url"))]:  # fmt: skip
        if url is not None and not str(url).startswith(("http://", "https://", "homeassistant://")):
            problems.append(f"{where}: {url!r} is not an http(s) or homeassistant:// link")
    components = payload.get("components") or {}
    if not components:
        problems.append("components must list at least one entity")
    seen: set[str] = set()
    for key, raw in components.items():
        component = _full(raw)
        platform = component.get("platform")
        if platform not in PLATFORM_KEYS:
            problems.append(f"{key}: platform {platform!r} is not one we expect")
            continue
        unknown = set(component) - COMMON_KEYS - PLATFORM_KEYS[platform]
        if unknown:
            problems.append(f"{key}: {platform} does not accept {sorted(unknown)}")
        missing = REQUIRED_KEYS[platform] - set(component)
        if missing:
            problems.append(f"{key}: {platform} needs {sorted(missing)}")
        uid = component.get("unique_id")
        if not uid or uid in seen:
            problems.append(f"{key}: unique_id missing or repeated")
        seen.add(str(uid))
        category = component.get("entity_category")
        if category is not None and category not in CATEGORIES:
            problems.append(f"{key}: entity_category {category!r} is not config or diagnostic")
        if category == "config" and platform in READ_ONLY:
            problems.append(f"{key}: a {platform} cannot be a config entity")
        for option, value in component.items():
            if not option.endswith("_topic"):
                continue
            if "+" in value or "#" in value:
                problems.append(f"{key}.{option}: a topic to publish to has no wildcards")
            if not value.startswith(f"{base}/"):
                problems.append(f"{key}.{option}: {value!r} is not under {base}/")
        command = component.get("command_topic", f"{base}/command/")
        name = command.removeprefix(f"{base}/command/")
        if "command_topic" in component and (name not in COMMANDS or "/" in name):
            problems.append(f"{key}: the daemon takes no command {name!r}")
        options = component.get("options", [])
        if platform == "select" and not all(isinstance(o, str) for o in options):
            problems.append(f"{key}: select options are strings")
    return problems


def render(template: str, **variables: Any) -> str:
    """A template rendered as Home Assistant renders it: Jinja2 in an immutable sandbox."""
    return ImmutableSandboxedEnvironment().from_string(template).render(**variables)


def render_value(template: str, payload: bytes) -> str:
    """A `value_template` as HA renders it on a received message: `value` is the payload as
    text, `value_json` the payload parsed, when it is JSON."""
    value = payload.decode()
    try:
        value_json = json.loads(value)
    except ValueError:
        value_json = None
    return render(template, value=value, value_json=value_json)


# --- what the topics carry, made by the daemon's own code --------------------------------------

LONG = "A long answer. " * 40  # 600 characters: more than a sensor state may hold


def _wire(event: Event) -> bytes:
    wire = event.to_wire()
    del wire["event"]
    return json.dumps(wire).encode()


def _assistant() -> Assistant:
    text = (
        '[daemon]\nnode_id = "testnode"\n[audio]\nsource = "none"\n[mqtt]\nbroker = "none"\n'
        '[[models]]\nid = "echo"\nsource = { path = "models.toml" }\n'
    )
    config, issues = check_text(text, Path(__file__).parents[2])
    assert config is not None, issues
    return Assistant(config, None, EventBus())


def sample_topics() -> dict[str, bytes]:
    """One message of every topic the entities read, as the daemon publishes it."""
    assistant = _assistant()
    retained = RetainedTopics(BASE, 1, assistant, assistant.bus.started)
    answer = ResponseDone("q1", LONG, "echo", "llama_cpp", "stop", 3, 120, {"total": 9.5})
    heard = TranscriptReady("voice-1", "turn on the light")
    failed = ErrorRaised("q2", "backend_failed", "llama_cpp: " + "x" * 300)
    acted = IntentHandled(
        "voice-1",
        "turn on the light",
        "HassTurnOn",
        {"name": "light.kitchen"},
        ["light.kitchen"],
        {"success": True, "code": "done", "speech": "Turned on the kitchen light"},
    )
    stream = {
        "response": _wire(answer),
        "transcript": _wire(heard),
        "error": _wire(failed),
        "intent": _wire(acted),
    }
    topics = {f"{BASE}/{sub}": payload for sub, payload in stream.items()}
    for event in (answer, heard, failed, SpeechChanged("speaking", "voice-1", "espeak")):
        topics |= {m.topic: m.payload for m in retained.messages_for(event)}
    for message in retained.snapshot(waiting=0, dropped=2, reconnects=1):
        topics[message.topic] = message.payload
    topics[f"{BASE}/state"] = b"listening"
    topics[f"{BASE}/model"] = b"echo"
    return topics


# --- the payload against the schema ------------------------------------------------------------


def components_by_name(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in payload["components"].values()}


def test_the_discovery_payload_follows_home_assistants_documented_schema() -> None:
    for models, url in [(["echo", "parrot"], None), ([], "https://tektra.lan/"), (["e"], None)]:
        payload = discovery_payload(BASE, "testnode", models, url)
        assert schema_problems(payload) == []
    assert payload["origin"]["name"] == "Tektra" and payload["origin"]["sw_version"]
    assert "configuration_url" not in payload["device"]  # the daemon serves no web page
    with_url = discovery_payload(BASE, "testnode", [], "https://tektra.lan/")
    assert with_url["device"]["configuration_url"] == "https://tektra.lan/"


def test_entities_a_home_assistant_user_expects_with_their_categories() -> None:
    by_name = components_by_name(discovery_payload(BASE, "testnode", ["echo", "parrot"]))
    buttons = {name: cmd for cmd, name, _, _ in BUTTONS if cmd in COMMANDS}
    expected = {
        ("Listening", "binary_sensor", None),
        ("Transcript", "event", None),
        ("Answer", "event", None),
        ("Intent", "event", None),
        ("Speaking", "binary_sensor", None),
        ("Last transcript", "sensor", None),
        ("Last answer", "sensor", None),
        ("Ask", "text", None),
        ("Say", "text", None),
        ("Microphone", "switch", "config"),
        ("Model", "select", "config"),
        ("State", "sensor", "diagnostic"),
        ("Backend", "sensor", "diagnostic"),
        ("MQTT messages dropped", "sensor", "diagnostic"),
        ("Uptime", "sensor", "diagnostic"),
        ("Last error", "sensor", "diagnostic"),
        *{(name, "button", "config" if cmd == "reload" else None) for name, cmd in buttons.items()},
    }
    seen = {(n, c["platform"], c.get("entity_category")) for n, c in by_name.items()}
    assert seen == expected
    assert "Reload configuration" in buttons  # `reload` is a command today
    assert buttons["Stop"] == "stop"
    for name, command in buttons.items():
        assert by_name[name]["command_topic"] == f"{BASE}/command/{command}"
        assert by_name[name]["payload_press"] == ""


def test_a_control_is_offered_only_for_a_command_mqtt_accepts() -> None:
    # E.g. an `[mqtt]` allow-list that opens asking and reloading, nothing else.
    payload = discovery_payload(BASE, "testnode", ["echo"], commands={"ask", "reload"})
    controls = {
        c["name"]: c["command_topic"]
        for c in payload["components"].values()
        if "command_topic" in c
    }
    assert controls == {
        "Ask": f"{BASE}/command/ask",
        "Reload configuration": f"{BASE}/command/reload",
    }
    assert schema_problems(payload) == []


def test_every_topic_an_entity_reads_is_published_by_the_daemon() -> None:
    payload = discovery_payload(BASE, "testnode", ["echo"])
    published = sample_topics()
    read = {payload["availability_topic"]} - {f"{BASE}/status"}
    for component in payload["components"].values():
        read |= {v for k, v in component.items() if k in ("state_topic", "json_attributes_topic")}
    assert sorted(read - set(published)) == []


def test_templates_render_as_home_assistant_renders_them() -> None:
    by_name = components_by_name(discovery_payload(BASE, "testnode", ["echo"]))
    topics = sample_topics()

    def shown(name: str) -> str:
        entity = by_name[name]
        return render_value(entity["value_template"], topics[entity["state_topic"]])

    # Sensors: the state is cut to what HA accepts; the attributes keep the whole text.
    assert shown("Last answer") == LONG[:SENSOR_STATE_MAX]
    attributes = json.loads(topics[by_name["Last answer"]["json_attributes_topic"]])
    assert attributes["text"] == LONG and attributes["model"] == "echo"
    assert shown("Last transcript") == "turn on the light"
    assert shown("Last error") == ("llama_cpp: " + "x" * 300)[:SENSOR_STATE_MAX]
    assert json.loads(topics[by_name["Last error"]["json_attributes_topic"]])["code"] == (
        "backend_failed"
    )
    assert shown("MQTT messages dropped") == "2"
    assert topics[by_name["Backend"]["state_topic"]] == b"llama_cpp"
    assert topics[by_name["Uptime"]["state_topic"]].decode().endswith("+00:00")
    # The binary sensor follows `state`.
    listening_ = by_name["Listening"]
    assert render_value(listening_["value_template"], b"listening") == "ON"
    assert render_value(listening_["value_template"], b"thinking") == "OFF"
    # Events: each message becomes `{"event_type": …}` of one of the declared types, with the
    # rest as the event's attributes.
    for name, event_type, text in [("Answer", "answer", LONG), ("Transcript", "transcript", None)]:
        entity = by_name[name]
        event = json.loads(shown(name))
        assert event["event_type"] == event_type and event_type in entity["event_types"]
        assert event["text"] == (text or "turn on the light")
    # The intent event: its type is the intent's name, one of those Tektra carries out.
    intent = by_name["Intent"]
    assert sorted(intent["event_types"]) == sorted(INTENTS)
    assert {"HassTurnOn", "HassStartTimer", "HassGetCurrentTime"} <= set(INTENTS)
    assert json.loads(shown("Intent")) == {
        "event_type": "HassTurnOn",
        "id": "voice-1",
        "text": "turn on the light",
        "slots": {"name": "light.kitchen"},
        "entities": ["light.kitchen"],
        "result": {"success": True, "code": "done", "speech": "Turned on the kitchen light"},
    }
    # Speaking follows the retained `tts` topic.
    assert shown("Speaking") == "ON"
    assert render_value(by_name["Speaking"]["value_template"], b"idle") == "OFF"


def parse_payload(command: str, payload: bytes) -> Request:
    """What the daemon's MQTT reader makes of a payload on `command/<command>`."""
    row = COMMANDS[command]
    envelope = read_payload(command, payload, plain=row.plain, optional=row.optional)
    return Request("t", command, check_args(row.args, envelope, "t"), "mqtt")


def test_what_the_entities_send_is_a_command_the_daemon_accepts() -> None:
    by_name = components_by_name(discovery_payload(BASE, "testnode", ["echo"]))
    sent = [
        ("ask", render(by_name["Ask"]["command_template"], value='Say "hi" \u00e9')),
        ("say", render(by_name["Say"]["command_template"], value='{"washing": "done"}')),
        ("say", "the washing machine is done"),  # plain text, as an automation sends it
        ("load_model", render(by_name["Model"]["command_template"], value="echo")),
        ("microphone", by_name["Microphone"]["payload_on"]),
        ("microphone", by_name["Microphone"]["payload_off"]),
    ]
    parsed = [parse_payload(command, payload.encode()) for command, payload in sent]
    assert [(r.command, r.args.model_dump()) for r in parsed] == [
        (
            "ask",
            {
                "text": 'Say "hi" é',
                "model": None,
                "preset": None,
                "session": None,
                "image": None,
            },
        ),
        ("say", {"text": '{"washing": "done"}', "stream": False}),
        ("say", {"text": "the washing machine is done", "stream": False}),
        ("load_model", {"model": "echo", "backend": None}),
        ("microphone", {"on": True}),
        ("microphone", {"on": False}),
    ]


def test_a_pressed_button_sends_a_payload_the_daemon_accepts() -> None:
    by_name = components_by_name(discovery_payload(BASE, "testnode", ["echo"]))
    pressed = [c for c in by_name.values() if c["platform"] == "button"]
    for button in pressed:
        command = button["command_topic"].rsplit("/", 1)[1]
        assert parse_payload(command, button["payload_press"].encode()).command == command


def test_the_schema_check_catches_what_home_assistant_would_reject() -> None:
    broken = {
        "device": {"name": "x"},
        "components": {
            "a": {"platform": "select", "unique_id": "u", "command_topic": "t/#"},
            "b": {"platform": "sensor", "unique_id": "u", "state_topic": f"{BASE}/s"},
            "c": {
                "platform": "sensor",
                "unique_id": "c",
                "state_topic": f"{BASE}/state",
                "entity_category": "config",
                "payload_press": "x",
            },
            "d": {"platform": "button", "unique_id": "d", "command_topic": f"{BASE}/command/x"},
        },
    }
    assert schema_problems(broken) == [
        "device needs identifiers or connections",
        "origin.name is required for device discovery",
        "a: select needs ['options']",
        "a.command_topic: a topic to publish to has no wildcards",
        "a.command_topic: 't/#' is not under tektra/testnode/",
        "a: the daemon takes no command 't/#'",
        "b: unique_id missing or repeated",
        "c: sensor does not accept ['payload_press']",
        "c: a sensor cannot be a config entity",
        "d: the daemon takes no command 'x'",
    ]


def test_support_url_comes_from_the_packages_project_urls() -> None:
    entries = ["Homepage, https://tektra.example/", "Issues, https://tektra.example/issues"]
    assert pick_support_url(entries) == "https://tektra.example/issues"
    assert pick_support_url(["Documentation, https://tektra.example/docs"]) == (
        "https://tektra.example/docs"
    )
    assert pick_support_url(["Weird, ftp://x"]) is None
    assert pick_support_url([]) is None


# --- the retained microphone tells the truth ---------------------------------------------------


def test_the_retained_microphone_says_off_while_the_device_is_lost() -> None:
    assistant = _assistant()
    bridge = VoiceBridge(assistant)
    retained = RetainedTopics(BASE, 1, assistant, assistant.bus.started)
    shown: list[bytes] = []
    with assistant.bus.subscribe() as events:

        def happen(action: Callable[[], None]) -> None:
            action()
            while not events._queue.empty():
                event = events._queue.get_nowait()
                shown.extend(
                    m.payload for m in retained.messages_for(event) if "microph" in m.topic
                )

        happen(lambda: bridge.on_event(DeviceState("microphone", "auto", "open", "16 kHz")))
        happen(lambda: bridge.on_event(DeviceState("microphone", "auto", "lost", "unplugged")))
        happen(lambda: assistant.set_muted(False))  # asked for ON: still no device, still OFF
        happen(lambda: bridge.on_event(DeviceState("microphone", "auto", "open", "16 kHz")))
        happen(lambda: assistant.set_muted(True))
    assert shown == [b"ON", b"OFF", b"OFF", b"ON", b"OFF"]
    assert [m.payload for m in retained.snapshot(waiting=0, dropped=0, reconnects=0)
            if m.topic == f"{BASE}/microphone"] == [b"OFF"]  # fmt: skip


# --- driven as Home Assistant drives it, against a real broker and daemon ----------------------


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
        by_name = components_by_name(payload)
        assert by_name["Model"]["options"] == ["echo", "parrot"]

        # The text entity, as HA sends it: its command template around what the user typed.
        ask = by_name["Ask"]
        await ha.publish(ask["command_topic"], render(ask["command_template"], value='Say "hi"'), 1)
        answer = await mqtt.wait_for(lambda m: m.topic == by_name["Last answer"]["state_topic"])
        assert answer.retain is False  # live, to subscribers already there
        shown = render_value(by_name["Last answer"]["value_template"], answer.payload)
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


async def test_two_identical_answers_are_two_events_and_the_last_one_survives_restarts(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"\nreconnect_max_s = 0.5')
    async with listening(mosquitto, [CONFIG_TOPIC, f"{BASE}/#"]) as mqtt:
        by_name = components_by_name(
            (await mqtt.wait_for(lambda m: m.topic == CONFIG_TOPIC)).json()
        )
        answers = by_name["Answer"]
        client = await SocketClient.connect(daemon.socket)
        for request_id in ("a1", "a2"):  # the same question twice: the same text twice
            await client.call({"id": request_id, "cmd": "ask", "text": "lights"})
        await mqtt.wait_until(lambda: len(mqtt.on(answers["state_topic"])) == 2)
        # What HA's event entity does with each message: a retained replay is ignored, every
        # other message is one event, even when it repeats the one before.
        events = [
            json.loads(render_value(answers["value_template"], m.payload))
            for m in mqtt.on(answers["state_topic"])
            if not m.retain
        ]
        assert [(e["event_type"], e["id"], e["text"]) for e in events] == [
            ("answer", "a1", "You said: lights"),
            ("answer", "a2", "You said: lights"),
        ]

    # The broker restarts; the daemon reconnects and publishes the retained present again.
    mosquitto.stop()
    mosquitto.start()
    status = by_name["MQTT messages dropped"]["json_attributes_topic"]
    retained_topics = {
        by_name[name]["state_topic"]
        for name in ("Last answer", "State", "Backend", "Uptime", "Microphone", "Model")
    } | {status}
    async with listening(mosquitto, [status]) as watcher:
        await watcher.wait_until(
            lambda: any(m.json()["reconnects"] >= 1 for m in watcher.on(status))
        )
    # Then Home Assistant restarts too: it finds every topic its entities read, retained.
    async with listening(mosquitto, [f"{BASE}/#"]) as ha_restarted:
        await ha_restarted.wait_until(
            lambda: retained_topics <= {m.topic for m in ha_restarted.messages if m.retain}
        )
        assert ha_restarted.on(status)[-1].json()["reconnects"] >= 1
        last = ha_restarted.on(by_name["Last answer"]["state_topic"])[-1]
        assert last.json()["id"] == "a2"
        assert ha_restarted.payloads(by_name["Backend"]["state_topic"])[-1] == "recorder"
        assert ha_restarted.payloads(by_name["Microphone"]["state_topic"])[-1] == "ON"
        # The answer events' topic keeps nothing: a restarted HA fires no old answer again.
        assert [m for m in ha_restarted.on(answers["state_topic"]) if m.retain] == []
    await client.close()
    assert daemon.stop() == 0


async def test_the_retained_microphone_is_off_while_the_microphone_is_lost(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"', audio="no-such-microphone", start=False)
    topic = f"{BASE}/microphone"
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt, mosquitto.client() as ha:
        daemon.start()
        await mqtt.wait_until(lambda: mqtt.payloads(topic)[-1:] == ["OFF"])
        # The switch turned on: unmuted, but there is still no device to listen with.
        before = len(mqtt.on(topic))
        await ha.publish(f"{BASE}/command/microphone", b'{"id": "ha", "on": true}', 1)
        await mqtt.wait_until(lambda: len(mqtt.on(topic)) > before)
        assert mqtt.payloads(topic)[-1] == "OFF"
    # Home Assistant starting now is told the same.
    async with listening(mosquitto, [topic]) as late:
        retained = await late.wait_for(lambda m: True)
        assert (retained.payload, retained.retain) == (b"OFF", True)
    assert daemon.stop() == 0


def test_a_configuration_url_must_be_a_link_home_assistant_can_open() -> None:
    text = '[mqtt]\ndiscovery_configuration_url = "ftp://tektra.lan/"\n[[models]]\nid = "e"\n'
    text += 'source = { path = "models.toml" }\n'
    config, issues = check_text(text, Path(__file__).parents[2])
    assert config is None
    assert [issue.path for issue in issues] == ["mqtt.discovery_configuration_url"]
