"""One satellite as Home Assistant sees it (its own device in its room, behind the hub; its
state, microphone switch and last transcript), and a satellite that loses the broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon.conftest import Daemon, Mosquitto, MqttRecorder, free_port, listening, mqtt_login
from tests.pipelines.conftest import words
from tests.satellite.conftest import HUB_TTS, NODE, Room, padded, start_hub, topic, until
from tests.satellite.test_rooms import QUESTION, heard_from, spoken_to_its_end, states

pytestmark = pytest.mark.integration

DEVICE = f"tektra_{NODE}_satellite_kitchen"


def wakes(recorder: MqttRecorder) -> int:
    return len(recorder.on(topic("kitchen", "wake")))


async def test_a_satellite_is_a_home_assistant_device_of_its_room_with_a_microphone_switch(
    make_daemon: Callable[..., Daemon],
    mosquitto: Mosquitto,
    rooms: Callable[[str], Room],
    tmp_path: Path,
) -> None:
    hub = start_hub(make_daemon, mosquitto)
    kitchen = rooms("Kitchen")
    # Told who it is, where its hub is and which room it serves by its models.toml alone (no
    # flags), as a service starts it.
    kitchen.start(mosquitto.url, flags=False)
    kitchen.wait_listening()
    config = f"homeassistant/device/{DEVICE}/config"
    watched = [config, topic("kitchen", "#")]
    async with listening(mosquitto, watched) as recorder, mosquitto.client() as home_assistant:
        device = (await recorder.wait_for(lambda m: m.topic == config)).json()
        assert device["device"] == {
            "identifiers": [DEVICE],
            "name": "Tektra satellite Kitchen",
            "manufacturer": "Tektra",
            "model": "Tektra satellite",
            "sw_version": device["device"]["sw_version"],
            "suggested_area": "Kitchen",
            "via_device": f"tektra_{NODE}",  # the hub's device
        }
        assert device["availability_topic"] == topic("kitchen", "status")
        entities = {
            key.removeprefix(f"{DEVICE}_"): (
                e["platform"],
                e.get("command_topic"),
                e["state_topic"],
            )
            for key, e in device["components"].items()
        }
        assert entities == {
            "state": ("sensor", None, topic("kitchen", "state")),
            "microphone": ("switch", topic("kitchen", "mic/set"), topic("kitchen", "mic")),
            "transcript": ("sensor", None, topic("kitchen", "transcript")),
        }
        await recorder.wait_for(
            lambda m: m.topic == topic("kitchen", "status") and m.payload == b"online"
        )
        # The microphone switched off: the kitchen hears nothing, not even the wake word.
        await home_assistant.publish(topic("kitchen", "mic/set"), b"OFF", 1)
        await recorder.wait_until(
            lambda: recorder.payloads(topic("kitchen", "mic"))[-1:] == ["OFF"]
        )
        await recorder.wait_until(lambda: states(recorder, "kitchen")[-1:] == ["muted"])
        question = padded(tmp_path, QUESTION)
        assert kitchen.say(question).wait(60) == 0
        await home_assistant.publish(topic("kitchen", "mic/set"), b"ON", 1)
        await recorder.wait_until(lambda: recorder.payloads(topic("kitchen", "mic"))[-1:] == ["ON"])
        assert wakes(recorder) == 0
        # Switched on again, it is asked and answers; the transcript sensor shows the question.
        assert kitchen.say(question).wait(60) == 0
        await spoken_to_its_end(recorder, "kitchen")
        assert wakes(recorder) == 1
        transcript = recorder.on(topic("kitchen", "transcript"))[-1].json()
        assert words(transcript["text"]) == "what time is it"
    assert hub.stop() == 0


async def test_a_satellite_that_loses_the_broker_reconnects_and_is_answered_again(
    make_daemon: Callable[..., Daemon],
    mosquitto: Mosquitto,
    rooms: Callable[[str], Room],
    tmp_path: Path,
) -> None:
    hub = start_hub(make_daemon, mosquitto)
    kitchen = rooms("Kitchen")
    kitchen.start(mosquitto.url)
    kitchen.wait_listening()
    mosquitto.stop()
    mosquitto.start()  # the same port, a new process: every client must come back by itself
    await until(lambda: kitchen.log.count("connected to the MQTT broker") >= 2)
    await until(lambda: hub.log.count("satellites: connected to the MQTT broker") >= 2)
    async with listening(mosquitto, [topic("kitchen", "#")]) as recorder:
        assert "satellite kitchen: lost the MQTT broker" in kitchen.log
        assert kitchen.say(padded(tmp_path, QUESTION)).wait(60) == 0
        await spoken_to_its_end(recorder, "kitchen")
        assert heard_from(kitchen).startswith("you said what time")  # see `answered`
    assert hub.stop() == 0


async def test_a_satellite_on_the_hubs_machine_logs_in_to_its_embedded_broker_by_itself(
    make_daemon: Callable[..., Daemon],
    rooms: Callable[[str], Room],
    tmp_path: Path,
) -> None:
    port = free_port()
    hub = make_daemon(f'broker = "embedded"\nembedded_port = {port}', tts=HUB_TTS)
    kitchen = rooms("Kitchen")
    kitchen.extra_env = {"XDG_STATE_HOME": hub.env["XDG_STATE_HOME"]}  # the hub's machine
    kitchen.start(f"mqtt://127.0.0.1:{port}")
    kitchen.wait_listening()
    broker = Mosquitto(tmp_path, port, login=mqtt_login(hub))  # a client of the embedded broker
    async with listening(broker, [topic("kitchen", "state")]) as recorder:
        assert kitchen.say(padded(tmp_path, QUESTION)).wait(60) == 0
        await spoken_to_its_end(recorder, "kitchen")
        assert heard_from(kitchen).startswith("you said what time")  # see `answered`
    assert "cannot use" not in hub.log
    assert hub.stop() == 0
