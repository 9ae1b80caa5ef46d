"""Acting on the home: simulated devices (real MQTT clients announcing themselves as Zigbee2MQTT,
Tasmota and others do) on a real mosquitto and on the embedded broker; requests through the CLI,
the socket and MQTT; what was published, what was said, and the intent events."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.daemon.conftest import (
    ROOT,
    TEKTRA,
    Daemon,
    Mosquitto,
    MqttRecorder,
    SocketClient,
    free_port,
    listening,
)
from tests.daemon.devices import Device, running, z2m_light

BASE = "tektra/testnode"


@dataclass
class Home:
    """A daemon on a broker, and the broker's client settings (the one place they come from)."""

    daemon: Daemon
    broker: Mosquitto

    def client(self, **kwargs: Any) -> aiomqtt.Client:
        return self.broker.client(**kwargs)


StartHome = Callable[..., Home]


@pytest.fixture(params=["mosquitto", "embedded"])
def start_home(
    request: pytest.FixtureRequest, make_daemon: Callable[..., Daemon], tmp_path: Path
) -> StartHome:
    """Start a daemon on a real mosquitto, or on its own embedded broker."""

    def start(extra: str = "") -> Home:
        if request.param == "mosquitto":
            broker: Mosquitto = request.getfixturevalue("mosquitto")
            return Home(make_daemon(f'broker = "{broker.url}"', extra=extra), broker)
        port = free_port()
        broker = Mosquitto(tmp_path, port)  # not started: the embedded broker's address
        return Home(
            make_daemon(f'broker = "embedded"\nembedded_port = {port}', extra=extra), broker
        )

    return start


def tektra(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    return subprocess.run(
        [TEKTRA, *args, "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


async def entities(daemon: Daemon) -> dict[str, dict[str, Any]]:
    client = await SocketClient.connect(daemon.socket)
    try:
        reply = await client.call({"id": "e", "cmd": "entities"})
    finally:
        await client.close()
    return {e["id"]: e for e in reply["result"]["entities"]}


async def until_known(
    daemon: Daemon, states: dict[str, str | None], timeout_s: float = 20.0
) -> None:
    """Wait until the daemon knows each entity with that state (None: any state)."""

    async def look() -> None:
        while True:
            known = await entities(daemon)
            if all(
                i in known and known[i]["available"] and (s is None or known[i]["state"] == s)
                for i, s in states.items()
            ):
                return
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(look(), timeout_s)
    except asyncio.TimeoutError:
        raise AssertionError(f"not known: {states}; known: {await entities(daemon)}") from None


async def ask(daemon: Daemon, text: str, request_id: str = "q") -> dict[str, Any]:
    client = await SocketClient.connect(daemon.socket)
    try:
        return await client.call({"id": request_id, "cmd": "ask", "text": text})
    finally:
        await client.close()


@asynccontextmanager
async def home_with(home: Home, *devices: Device) -> AsyncIterator[MqttRecorder]:
    async with (
        running(home.client(), list(devices)),
        listening(home.broker, [f"{BASE}/intent", f"{BASE}/response"]) as mqtt,
    ):
        yield mqtt


KITCHEN = "light.kitchen_light"
BEDROOM = "light.bedroom_light"
COFFEE = "switch.aabbccddeeff_rl_1"
GARAGE = "cover.garage_door_1"
LOCK = "lock.frontdoor01_lock"
TEMPERATURE = "sensor.frontdoor01_temp"


async def test_turn_on_the_kitchen_light_switches_it_and_says_so(start_home: StartHome) -> None:
    home = start_home()
    light = z2m_light("Kitchen Light", "0x000b57fffec6a5b2", area="kitchen")
    async with home_with(home, light) as mqtt:
        await until_known(home.daemon, {KITCHEN: "off"})
        asked = await asyncio.to_thread(tektra, home.daemon, "ask", "turn on the kitchen light")
        assert (asked.returncode, asked.stdout, asked.stderr) == (
            0,
            "Turned on the kitchen light.\n",
            "",
        )
        assert light.commands == [("zigbee2mqtt/Kitchen Light/set", '{"state":"ON"}')]
        await until_known(home.daemon, {KITCHEN: "on"})
        event = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/intent")
    intent = event.json()
    assert intent["text"] == "turn on the kitchen light"
    assert (intent["intent"], intent["slots"], intent["entities"]) == (
        "HassTurnOn",
        {"name": KITCHEN},
        [KITCHEN],
    )
    assert intent["result"] == {
        "success": True,
        "code": "done",
        "speech": "Turned on the kitchen light.",
        "published": [{"topic": "zigbee2mqtt/Kitchen Light/set", "payload": '{"state":"ON"}'}],
    }
