"""Acting on the home: simulated devices (real MQTT clients announcing themselves as Zigbee2MQTT,
Tasmota and others do) on a real mosquitto and on the embedded broker; requests through the CLI,
the socket and MQTT; what was published, what was said, and the intent events."""

from __future__ import annotations

import asyncio
import datetime
import json
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
    mqtt_login,
)
from tests.daemon.devices import (
    Device,
    front_door,
    garage_door,
    publish,
    running,
    tasmota_switch,
    thermostat,
    z2m_light,
)

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

    def start(extra: str = "", *, hermes: bool = False) -> Home:
        if request.param == "mosquitto":
            broker: Mosquitto = request.getfixturevalue("mosquitto")
            mqtt = f'broker = "{broker.url}"'
        else:
            broker = Mosquitto(tmp_path, free_port())  # not started: the embedded broker's address
            mqtt = f'broker = "embedded"\nembedded_port = {broker.port}'
        daemon = make_daemon(mqtt, extra=extra, intents=True, start=False)
        if hermes:
            text = daemon.config.read_text()
            daemon.config.write_text(text.replace("[intents]\n", "[intents]\nhermes = true\n"))
        daemon.start()
        if request.param == "embedded":  # its clients need the user's login
            broker.login = mqtt_login(daemon)
        return Home(daemon, broker)

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
        await until_known(home.daemon, {KITCHEN: "on"})  # the bulb obeyed and said so
        assert light.commands == [("zigbee2mqtt/Kitchen Light/set", '{"state":"ON"}')]
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


async def test_set_the_bedroom_light_to_30_percent_sends_its_own_brightness_scale(
    start_home: StartHome,
) -> None:
    home = start_home()
    light = z2m_light("Bedroom Light", "0x000b57fffec6a5b3", area="bedroom")
    async with home_with(home, light):
        await until_known(home.daemon, {BEDROOM: "off"})
        reply = await ask(home.daemon, "set the bedroom light to 30 percent")
        assert reply["result"]["text"] == "Set the bedroom light to 30 percent."
        await until_known(home.daemon, {BEDROOM: "on"})
        # Zigbee2MQTT's scale is 0-254: 30 percent of it.
        assert light.commands == [
            ("zigbee2mqtt/Bedroom Light/set", '{"state":"ON","brightness":76}')
        ]
        state = await ask(home.daemon, "is the bedroom light on")
    # What the bulb reported back (76 of 254), not what was asked for.
    assert state["result"]["text"] == "Yes, the bedroom light is on at 30 percent."


async def test_is_the_front_door_locked_is_answered_from_the_lock_s_own_state(
    start_home: StartHome,
) -> None:
    home = start_home()
    door = front_door()
    async with home_with(home, door):
        await until_known(home.daemon, {LOCK: "locked", TEMPERATURE: "19.5"})
        locked = await ask(home.daemon, "is the front door locked")
        temperature = await ask(home.daemon, "what is the front door temperature")
        hall = await ask(home.daemon, "what is the temperature in the hall")  # no thermostat
        opened = await ask(home.daemon, "unlock the front door")
        await until_known(home.daemon, {LOCK: "unlocked"})
        again = await ask(home.daemon, "is the front door locked")
    assert locked["result"]["text"] == "Yes, the front door is locked."
    assert temperature["result"]["text"] == "The front door temperature is 19.5°C."
    assert hall["result"]["text"] == "The Front Door Temperature is 19.5°C."  # its own name
    assert opened["result"]["text"] == "Unlocked the front door."
    assert door.commands == [("frontdoor/lock/set", "UNLOCK")]
    assert again["result"]["text"] == "No, the front door is unlocked."


async def test_what_time_is_it_is_the_clock_s_time_not_the_model_s(start_home: StartHome) -> None:
    home = start_home()
    before = datetime.datetime.now()
    reply = await ask(home.daemon, "what time is it")
    after = datetime.datetime.now()
    said = {f"It's {t:%H:%M}." for t in (before, after)}
    assert reply["result"]["text"] in said
    assert (reply["result"]["model"], reply["result"]["backend"]) == ("intents", "intents")


async def test_an_unknown_device_gets_an_honest_reply_and_nothing_is_published(
    start_home: StartHome,
) -> None:
    home = start_home()
    light = z2m_light("Kitchen Light", "0x000b57fffec6a5b2", area="kitchen")
    plug = tasmota_switch("Coffee Maker", "AABBCCDDEEFF")
    async with home_with(home, light, plug) as mqtt:
        await until_known(home.daemon, {KITCHEN: "off", COFFEE: "off"})
        reply = await ask(home.daemon, "turn on the kitchen heater", "heater")
        event = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/intent")
        # A request after it that does publish: had the first published, it would show first.
        await ask(home.daemon, "turn on the coffee maker")
        await until_known(home.daemon, {COFFEE: "on"})
    assert reply["result"]["text"] == "I don't know a device called kitchen heater."
    assert light.commands == []
    assert plug.commands == [("tasmota_DDEEFF/cmnd/POWER", "ON")]
    assert event.json() == {
        "id": "heater",
        "text": "turn on the kitchen heater",
        "intent": "HassTurnOn",
        "slots": {"name": "kitchen heater"},
        "entities": [],
        "result": {
            "success": False,
            "code": "no_entity",
            "speech": "I don't know a device called kitchen heater.",
            "published": [],
        },
        "source": "sentence",
    }


async def test_a_device_that_went_unavailable_is_reported_as_such(start_home: StartHome) -> None:
    home = start_home()
    plug = tasmota_switch("Coffee Maker", "AABBCCDDEEFF")
    async with home_with(home, plug):
        await until_known(home.daemon, {COFFEE: "off"})
        await publish(home.client(), "tasmota_DDEEFF/tele/LWT", "Offline")  # its last will
        await until_unavailable(home.daemon, COFFEE)
        reply = await ask(home.daemon, "turn on the coffee maker")
        state = await ask(home.daemon, "is the coffee maker on")
    assert reply["result"]["text"] == (
        "The coffee maker is unavailable, so I didn't change anything."
    )
    assert state["result"]["text"] == "The coffee maker is unavailable."
    assert plug.commands == []


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async def look() -> None:
        while not condition():  # noqa: ASYNC110 (the devices' task changes it)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(look(), timeout_s)


async def until_connected(daemon: Daemon, timeout_s: float = 20.0) -> None:
    """Until the daemon's home link is on the broker."""

    async def look() -> None:
        while True:
            client = await SocketClient.connect(daemon.socket)
            try:
                status = await client.call({"id": "s", "cmd": "status"})
            finally:
                await client.close()
            if status["result"]["home"]["connected"]:
                return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(look(), timeout_s)


async def until_unavailable(daemon: Daemon, entity_id: str, timeout_s: float = 20.0) -> None:
    async def look() -> None:
        while (await entities(daemon))[entity_id]["available"]:  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.1)

    await asyncio.wait_for(look(), timeout_s)


async def test_a_two_second_timer_fires_and_is_announced(start_home: StartHome) -> None:
    home = start_home()
    async with listening(home.broker, [f"{BASE}/response"]) as mqtt:
        reply = await ask(home.daemon, "set a timer for 2 seconds")
        assert reply["result"]["text"] == "Timer set for 2 seconds."
        status = await ask(home.daemon, "how much time is left on my timer")
        assert status["result"]["text"].startswith("The 2 second timer has ")
        done = await mqtt.wait_for(
            lambda m: m.topic == f"{BASE}/response" and m.json()["id"].startswith("timer-")
        )
    assert done.json()["text"] == "Your 2 second timer is done."


async def test_covers_open_to_a_position_and_say_how_open_they_are(start_home: StartHome) -> None:
    home = start_home()
    door = garage_door()
    async with home_with(home, door):
        await until_known(home.daemon, {GARAGE: "closed"})
        opened = await ask(home.daemon, "set the garage door to 50 percent")
        await until_known(home.daemon, {GARAGE: "open"})
        state = await ask(home.daemon, "is the garage door open")
        closed = await ask(home.daemon, "close the garage door")
        await until_known(home.daemon, {GARAGE: "closed"})
    assert opened["result"]["text"] == "Set the garage door to 50 percent open."
    assert state["result"]["text"] == "Yes, the garage door is open (50 percent)."
    assert closed["result"]["text"] == "Closed the garage door."
    assert door.commands == [("garage/door/position/set", "50"), ("garage/door/set", "CLOSE")]


PORCH = """
[[entities]]
name = "porch light"
aliases = ["front light"]
area = "porch"
domain = "light"
command_topic = "porch/light/set"
state_topic = "porch/light/state"
"""


def porch_light() -> Device:
    """A plain MQTT relay without discovery: ON/OFF in, ON/OFF out."""
    return Device(
        "porch light",
        [("porch/light/state", "OFF")],
        {"porch/light/set": lambda payload: [("porch/light/state", payload)]},
    )


async def test_entities_from_models_toml_work_the_same_way(start_home: StartHome) -> None:
    home = start_home(PORCH)
    light = porch_light()
    async with home_with(home, light):
        await until_known(home.daemon, {"light.porch_light": "off"})
        reply = await ask(home.daemon, "turn on the front light")
        await until_known(home.daemon, {"light.porch_light": "on"})
    assert reply["result"]["text"] == "Turned on the front light."
    assert light.commands == [("porch/light/set", "ON")]


async def test_tektra_entities_lists_each_device_with_where_it_came_from(
    start_home: StartHome,
) -> None:
    home = start_home(PORCH)
    async with home_with(home, z2m_light("Kitchen Light", "0x000b57fffec6a5b2", area="kitchen")):
        await until_known(home.daemon, {KITCHEN: "off"})
        listed = await asyncio.to_thread(tektra, home.daemon, "entities")
    assert listed.returncode == 0, listed.stderr
    status = json.loads((await asyncio.to_thread(tektra, home.daemon, "status")).stdout)
    assert status["home"] == {"connected": True, "entities": 2, "unavailable": 0, "intents": "en"}
    assert listed.stdout.splitlines() == [
        "ID                   NAME                      AREA     STATE  ORIGIN       SOURCE",
        "light.porch_light    porch light, front light  porch    ?      models.toml  "
        "[[entities]] #1",
        "light.kitchen_light  Kitchen Light             kitchen  off    discovery    "
        "homeassistant/light/0x000b57fffec6a5b2/light/config",
    ]


async def test_the_thermostat_takes_a_target_and_tells_the_temperature_it_measures(
    start_home: StartHome,
) -> None:
    home = start_home()
    hvac = thermostat()
    async with home_with(home, hvac):
        await until_known(home.daemon, {"climate.hvac1": "heat"})
        current = await ask(home.daemon, "what is the temperature of the thermostat")
        target = await ask(home.daemon, "set the thermostat to 21 degrees")
        await until(lambda: bool(hvac.commands))
    assert current["result"]["text"] == "The thermostat says 18.5 degrees."
    assert target["result"]["text"] == "Set the thermostat to 21 degrees."
    assert hvac.commands == [("hvac/target/set", "21")]


async def test_the_entities_command_answers_over_mqtt_too(start_home: StartHome) -> None:
    home = start_home(PORCH)
    async with listening(home.broker, [f"{BASE}/reply", f"{BASE}/state"]) as mqtt:
        # The retained state follows the daemon's subscription to its commands: it listens now.
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/state")
        async with home.client() as client:
            await client.publish(f"{BASE}/command/entities", b"", qos=1)
        reply = await mqtt.wait_for(
            lambda m: m.topic == f"{BASE}/reply" and m.json().get("command") == "entities"
        )
    (porch,) = reply.json()["result"]["entities"]
    assert (porch["id"], porch["origin"], porch["command_topic"]) == (
        "light.porch_light",
        "models.toml",
        "porch/light/set",
    )


async def test_with_hermes_on_intents_also_go_to_rhasspy_s_topics(start_home: StartHome) -> None:
    home = start_home(hermes=True)
    async with listening(home.broker, ["hermes/intent/#"]) as mqtt:
        await ask(home.daemon, "what time is it", "t1")
        message = await mqtt.wait_for(lambda m: m.topic.startswith("hermes/intent/"))
    assert message.topic == "hermes/intent/HassGetCurrentTime"
    hermes = message.json()
    assert (hermes["input"], hermes["intent"], hermes["slots"], hermes["siteId"]) == (
        "what time is it",
        {"intentName": "HassGetCurrentTime", "confidenceScore": 1.0},
        [],
        "testnode",
    )


async def test_a_reload_takes_new_entities_from_models_toml(start_home: StartHome) -> None:
    home = start_home(PORCH)
    shed = '[[entities]]\nname = "shed lock"\ndomain = "lock"\ncommand_topic = "shed/lock/set"\n'
    home.daemon.config.write_text(home.daemon.config.read_text() + shed)
    client = await SocketClient.connect(home.daemon.socket)
    try:
        reloaded = await client.call({"id": "r", "cmd": "reload"})
    finally:
        await client.close()
    assert reloaded["result"]["reloaded"] is True
    assert list(await entities(home.daemon)) == ["light.porch_light", "lock.shed_lock"]
    lock = Device("shed lock", [], {"shed/lock/set": lambda payload: []})
    async with home_with(home, lock):
        await until_connected(home.daemon)
        reply = await ask(home.daemon, "lock the shed lock")
        await until(lambda: bool(lock.commands))
    assert reply["result"]["text"] == "Locked the shed lock."
    assert lock.commands == [("shed/lock/set", "LOCK")]


async def test_with_the_broker_gone_the_reply_says_nothing_was_switched(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    home = Home(make_daemon(f'broker = "{mosquitto.url}"', intents=True), mosquitto)
    async with home_with(home, z2m_light("Kitchen Light", "0x000b57fffec6a5b2")):
        await until_known(home.daemon, {KITCHEN: "off"})
    mosquitto.stop()
    reply = await ask(home.daemon, "turn on the kitchen light")
    assert reply["result"]["text"] == (
        "I couldn't reach the kitchen light: the MQTT broker is not reachable."
    )
