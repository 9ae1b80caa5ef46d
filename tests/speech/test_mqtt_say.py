"""`command/say` over MQTT speaks any text (for automations), and `tts` tells whether Tektra is
speaking: `idle` on connect, `speaking`, then `idle` again; Home Assistant's entities drive them."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.daemon.conftest import Daemon, Mosquitto, listening
from tests.daemon.test_discovery import CONFIG_TOPIC, components_by_name, render, render_value
from tests.pipelines.conftest import Pulse

pytestmark = pytest.mark.integration
BASE = "tektra/testnode"


async def test_mqtt_say_speaks_and_the_tts_topic_follows(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto, pulse: Pulse
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"', tts='engine = "espeak"', start=False)
    daemon.env.update(XDG_RUNTIME_DIR=pulse.env["XDG_RUNTIME_DIR"], HOME=pulse.env["HOME"])
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt:
        daemon.start()
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/tts" and m.payload == b"idle")
        async with mosquitto.client() as client:
            say = {"id": "wash", "text": "The washing machine is done."}
            await client.publish(f"{BASE}/command/say", json.dumps(say), qos=1)
            reply = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/reply", 60)
        assert reply.json()["id"] == "wash"
        assert reply.json()["result"]["sentences"] == 1
        assert reply.json()["result"]["engine"] == "espeak"
        states = [m.payload for m in mqtt.on(f"{BASE}/tts")]
        assert states == [b"idle", b"speaking", b"idle"]
    assert daemon.stop() == 0


async def test_a_spoken_answer_reports_when_it_was_first_heard_on_response_spoken(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto, pulse: Pulse
) -> None:
    # `response` is published when the text is complete, before it has all been heard; the time
    # to the first audible sample comes after, on `response/spoken`, with the same id and the
    # same clock as the response's own `timings_ms`.
    tts = 'engine = "espeak"\nspeak = "all"'
    daemon = make_daemon(f'broker = "{mosquitto.url}"', tts=tts, start=False)
    daemon.env.update(XDG_RUNTIME_DIR=pulse.env["XDG_RUNTIME_DIR"], HOME=pulse.env["HOME"])
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt:
        daemon.start()
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/tts" and m.payload == b"idle")
        async with mosquitto.client() as client:
            ask = {"id": "q", "text": "The lights are on."}
            await client.publish(f"{BASE}/command/ask", json.dumps(ask), qos=1)
            spoken = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/response/spoken", 60)
            say = {"id": "wash", "text": "The washing machine is done."}
            await client.publish(f"{BASE}/command/say", json.dumps(say), qos=1)
            reply = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/reply", 60)
        response = next(m.json() for m in mqtt.on(f"{BASE}/response"))
        topics = [m.topic for m in mqtt.messages]
        assert topics.index(f"{BASE}/response") < topics.index(f"{BASE}/response/spoken")
        heard = spoken.json()
        assert heard["id"] == "q" and heard["sentences"] == 1 and heard["engine"] == "espeak"
        assert set(heard["timings_ms"]) == {"first_audible"}
        # Nothing is heard before the model wrote its first words.
        assert heard["timings_ms"]["first_audible"] > response["timings_ms"]["first_chunk"]
        # A `say` reports it in its own result.
        assert reply.json()["result"]["timings_ms"]["first_audible"] > 0
    assert daemon.stop() == 0


async def test_home_assistants_say_stop_and_speaking_entities_drive_the_voice(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto, pulse: Pulse
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"', tts='engine = "espeak"', start=False)
    daemon.env.update(XDG_RUNTIME_DIR=pulse.env["XDG_RUNTIME_DIR"], HOME=pulse.env["HOME"])
    async with listening(mosquitto, ["homeassistant/#", f"{BASE}/#"]) as mqtt:
        daemon.start()
        config = await mqtt.wait_for(lambda m: m.topic == CONFIG_TOPIC)
        by_name = components_by_name(config.json())
        speaking = by_name["Speaking"]
        async with mosquitto.client() as ha:
            # The text entity, as Home Assistant sends it: its template around what was typed.
            say = by_name["Say"]
            text = "The washing machine is done."
            await ha.publish(say["command_topic"], render(say["command_template"], value=text), 1)
            said = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/reply", 60)
            assert said.json()["result"]["sentences"] == 1, said.json()
            shown = [render_value(speaking["value_template"], m.payload) for m in mqtt.on(
                speaking["state_topic"])]  # fmt: skip
            assert shown == ["OFF", "ON", "OFF"]
            # The button: silence now (nothing is speaking, and no answer is being written).
            stop = by_name["Stop"]
            await ha.publish(stop["command_topic"], stop["payload_press"], 1)
            await mqtt.wait_until(lambda: len(mqtt.on(f"{BASE}/reply")) == 2)
            # An automation's plain-text payload is spoken as it stands.
            await ha.publish(f"{BASE}/command/say", b"The dryer is done.", 1)
            await mqtt.wait_until(lambda: len(mqtt.on(f"{BASE}/reply")) == 3, 60)
            # Audio is streamed to socket callers only: MQTT says so in our words.
            streamed = {"id": "st", "text": "Hello.", "stream": True}
            await ha.publish(f"{BASE}/command/say", json.dumps(streamed), 1)
            refused = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/error")
        stopped, plain = [m.json() for m in mqtt.on(f"{BASE}/reply")[1:]]
        assert plain["command"] == "say" and plain["result"]["sentences"] == 1, plain
        assert stopped == {
            "id": stopped["id"],
            "command": "stop",
            "result": {"stopped": [], "cancelled": []},
        }
        assert refused.json() == {
            "id": "st",
            "code": "unsupported",
            "message": "say: `stream` works over the socket only",
        }
    assert daemon.stop() == 0
