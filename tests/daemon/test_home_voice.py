"""Acting on the home by voice: speech played into the virtual microphone switches a simulated
Zigbee2MQTT light, and the answer says so (the model is never asked)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon.conftest import Daemon, Mosquitto, SocketClient, listening
from tests.daemon.devices import running, z2m_light
from tests.pipelines.conftest import Pulse, clip, silence, write_stream

pytestmark = pytest.mark.integration

BASE = "tektra/testnode"


async def test_turn_on_the_kitchen_lights_spoken_switches_the_light_and_says_so(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto, pulse: Pulse, tmp_path: Path
) -> None:
    light = z2m_light("Kitchen Light", "0x000b57fffec6a5b2", area="kitchen")
    daemon = make_daemon(f'broker = "{mosquitto.url}"', audio="auto", start=False, intents=True)
    daemon.env.update(XDG_RUNTIME_DIR=pulse.env["XDG_RUNTIME_DIR"], HOME=pulse.env["HOME"])
    topics = [f"{BASE}/transcript", f"{BASE}/response", f"{BASE}/intent"]
    async with running(mosquitto.client(), [light]), listening(mosquitto, topics) as mqtt:
        daemon.start()
        watcher = await SocketClient.connect(daemon.socket)
        await watcher.send({"id": "w", "cmd": "subscribe"})
        while True:  # until the microphone is open
            event = await watcher.receive(30)
            data = event.get("data", {})
            if data.get("name") == "DeviceState" and data["data"]["state"] == "open":
                break
        await watcher.close()
        speech = write_stream(
            tmp_path / "padded.wav", silence(0.3), clip("kitchen_lights"), silence(1.0)
        )
        await asyncio.to_thread(pulse.play(speech).wait, 30)
        transcript = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/transcript", 60)
        response = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/response", 60)
        intent = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/intent", 60)
    assert response.json()["id"] == transcript.json()["id"] == intent.json()["id"]
    assert response.json()["text"] == "Turned on the Kitchen Light."
    assert response.json()["model"] == "intents"
    assert (intent.json()["intent"], intent.json()["slots"]) == (
        "HassTurnOn",
        {"area": "kitchen", "domain": "light"},
    )
    assert light.commands == [("zigbee2mqtt/Kitchen Light/set", '{"state":"ON"}')]
    assert daemon.stop() == 0
