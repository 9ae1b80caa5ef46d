"""`command/say` over MQTT speaks any text (for automations), and `tts` tells whether Tektra is
speaking: `idle` on connect, `speaking`, then `idle` again."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.daemon.conftest import Daemon, Mosquitto, listening
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
