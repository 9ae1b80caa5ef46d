"""Tools for models that take them, and the truth told to models that do not.

A request no sentence template matches goes to the model. A model marked `tools` gets the home's
actions as tools; its call runs through the intents' own handlers, the command reaches the
simulated Zigbee2MQTT light on a real mosquitto, and the reply is the tool's result, never the
model's words. SmolLM2-135M cannot pick a tool by itself, so the Ollama stand-in answers with a
scripted call in Ollama's protocol (tests/engines/ollama_standin.py); everything else is real."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.models.manager.tools import NO_TOOLS_INTENTS, NO_TOOLS_NOTE, TOOLS_NOTE
from tests.conftest import SMOLLM2_SOURCE
from tests.daemon.conftest import Daemon, Mosquitto, listening
from tests.daemon.devices import running, z2m_light
from tests.daemon.test_home import BASE, KITCHEN, ask, until_known
from tests.engines.conftest import Server, ollama_standin

LIGHT_TOPIC = "zigbee2mqtt/Kitchen Light/set"
COSY = "make it cosier in here"  # no sentence template matches it: the model gets it


def helper_model(ollama: Server, capabilities: str = '["text", "tools"]') -> str:
    """A `[daemon]` tail and tables: the default model `helper`, SmolLM2 on the Ollama stand-in."""
    return (
        'default_model = "helper"\n'
        f'[backends.ollama]\nenabled = true\nhost = "{ollama.url}"\n'
        '[[models]]\nid = "helper"\nsource = { ollama = "smollm2:135m" }\n'
        f'backend_preferences = ["ollama"]\ncapabilities = {capabilities}\n'
    )


@pytest.fixture
def standin(tmp_path: Path, smollm2_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(call: dict[str, Any] | None = None) -> Server:
        extra = ["--tool-call", json.dumps(call)] if call is not None else []
        server = ollama_standin(tmp_path, smollm2_path, "--tag", "smollm2:135m", *extra)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def home(
    mosquitto: Mosquitto, make_daemon: Callable[..., Daemon], standin: Callable[..., Server]
) -> Callable[..., tuple[Daemon, Server]]:
    def start(
        call: dict[str, Any] | None, capabilities: str = '["text", "tools"]'
    ) -> tuple[Daemon, Server]:
        ollama = standin(call)
        daemon = make_daemon(
            f'broker = "{mosquitto.url}"', extra=helper_model(ollama, capabilities), intents=True
        )
        return daemon, ollama

    return start


def chat_requests(ollama: Server) -> list[dict[str, Any]]:
    return [r for r in ollama.requests("/api/chat") if isinstance(r, dict)]


def tool_named(request: dict[str, Any], name: str) -> dict[str, Any]:
    tools: dict[str, dict[str, Any]] = {
        t["function"]["name"]: t["function"] for t in request["tools"]
    }
    return tools[name]


async def test_a_model_s_tool_call_switches_the_light_and_the_reply_is_the_tool_s_result(
    home: Callable[..., tuple[Daemon, Server]], mosquitto: Mosquitto
) -> None:
    daemon, ollama = home({"name": "HassTurnOn", "arguments": {"name": "kitchen light"}})
    light = z2m_light("Kitchen Light", "0x000b57fffec6a5b2", area="kitchen")
    async with (
        running(mosquitto.client(), [light]),
        listening(mosquitto, [f"{BASE}/intent"]) as mqtt,
    ):
        await until_known(daemon, {KITCHEN: "off"})
        reply = await ask(daemon, COSY)
        await until_known(daemon, {KITCHEN: "on"})  # the bulb obeyed and said so
        event = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/intent")
    assert (reply["result"]["text"], reply["result"]["model"]) == (
        "Turned on the kitchen light.",
        "helper",
    )
    assert light.commands == [(LIGHT_TOPIC, '{"state":"ON"}')]
    assert event.json() == {
        "id": "q",
        "text": COSY,
        "intent": "HassTurnOn",
        "slots": {"name": KITCHEN},  # as for a matched sentence: the entity's id
        "entities": [KITCHEN],
        "result": {
            "success": True,
            "code": "done",
            "speech": "Turned on the kitchen light.",
            "published": [{"topic": LIGHT_TOPIC, "payload": '{"state":"ON"}'}],
        },
        "source": "model",
    }
    # What the model was given: the intents as tools, their choices from the known home.
    (asked,) = [r for r in chat_requests(ollama) if r.get("tools")]
    turn_on = tool_named(asked, "HassTurnOn")
    assert turn_on["parameters"]["properties"]["name"]["enum"] == ["kitchen light"]
    assert turn_on["parameters"]["properties"]["area"]["enum"] == ["kitchen"]
    assert turn_on["parameters"]["properties"]["domain"]["enum"] == ["light"]
    offered = {t["function"]["name"] for t in asked["tools"]}
    assert {"HassLightSet", "HassStartTimer", "HassGetCurrentTime"} <= offered
    assert "HassSetPosition" not in offered  # no cover is known
    assert asked["messages"][0]["role"] == "system"
    assert asked["messages"][0]["content"].endswith(TOOLS_NOTE)


async def test_a_tool_call_naming_an_unknown_device_publishes_nothing_and_says_so(
    home: Callable[..., tuple[Daemon, Server]], mosquitto: Mosquitto
) -> None:
    daemon, _ = home({"name": "HassTurnOn", "arguments": {"name": "kitchen heater"}})
    light = z2m_light("Kitchen Light", "0x000b57fffec6a5b2", area="kitchen")
    async with (
        running(mosquitto.client(), [light]),
        listening(mosquitto, [f"{BASE}/intent"]) as mqtt,
    ):
        await until_known(daemon, {KITCHEN: "off"})
        reply = await ask(daemon, COSY)
        event = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/intent")
    assert reply["result"]["text"] == "I don't know a device called kitchen heater."
    assert light.commands == []
    assert (event.json()["result"]["code"], event.json()["source"]) == ("no_entity", "model")


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (
            {"name": "HassLightSet", "arguments": {"name": "kitchen light", "brightness": "lots"}},
            "I couldn't do that: brightness must be a number, not 'lots'.",
        ),
        (
            {"name": "HassLightSet", "arguments": {"name": "kitchen light", "brightness": 300}},
            "I couldn't do that: brightness must be between 0 and 100.",
        ),
        (
            {"name": "HassTurnOn", "arguments": {"device": "kitchen light"}},
            "I couldn't do that: the action takes no 'device'.",
        ),
        (
            {"name": "HassOpenThePodBayDoors", "arguments": {}},
            "I couldn't do that: I have no action called HassOpenThePodBayDoors.",
        ),
    ],
)
async def test_a_wrong_tool_call_is_refused_in_words_and_publishes_nothing(
    home: Callable[..., tuple[Daemon, Server]],
    mosquitto: Mosquitto,
    call: dict[str, Any],
    said: str,
) -> None:
    daemon, _ = home(call)
    light = z2m_light("Kitchen Light", "0x000b57fffec6a5b2", area="kitchen")
    async with running(mosquitto.client(), [light]):
        await until_known(daemon, {KITCHEN: "off"})
        reply = await ask(daemon, COSY)
        # A command sent after it: had the call published, its command would show first.
        done = await ask(daemon, "turn on the kitchen light")
        await until_known(daemon, {KITCHEN: "on"})
    assert (reply["result"]["text"], done["result"]["text"]) == (
        said,
        "Turned on the kitchen light.",
    )
    assert light.commands == [(LIGHT_TOPIC, '{"state":"ON"}')]


async def test_the_time_asked_in_free_words_comes_from_the_clock_through_the_tool(
    home: Callable[..., tuple[Daemon, Server]],
) -> None:
    daemon, _ = home({"name": "HassGetCurrentTime", "arguments": {}})
    before = datetime.datetime.now()
    reply = await ask(daemon, "I wonder how late it has got")
    after = datetime.datetime.now()
    assert reply["result"]["text"] in {f"It's {t:%H:%M}." for t in (before, after)}


async def test_a_timer_a_model_starts_is_kept_and_announced_by_tektra(
    home: Callable[..., tuple[Daemon, Server]], mosquitto: Mosquitto
) -> None:
    daemon, _ = home({"name": "HassStartTimer", "arguments": {"seconds": 2, "name": "tea"}})
    async with listening(mosquitto, [f"{BASE}/response"]) as mqtt:
        reply = await ask(daemon, "remind me when the tea has steeped")
        done = await mqtt.wait_for(
            lambda m: m.topic == f"{BASE}/response" and m.json()["id"].startswith("timer-")
        )
    assert reply["result"]["text"] == "Timer set for 2 seconds."
    assert done.json()["text"] == "Your tea timer is done."


async def test_a_model_without_tools_is_told_what_it_cannot_do_and_gets_no_tools(
    home: Callable[..., tuple[Daemon, Server]],
) -> None:
    # The stand-in would answer a tools request with a call: a model without tools sends none.
    daemon, ollama = home(
        {"name": "HassTurnOn", "arguments": {"name": "kitchen light"}}, capabilities='["text"]'
    )
    reply = await ask(daemon, COSY)
    asked = chat_requests(ollama)[-1]
    assert "tools" not in asked or not asked["tools"]
    system = asked["messages"][0]
    assert system["role"] == "system"
    assert system["content"].endswith(NO_TOOLS_NOTE + NO_TOOLS_INTENTS)
    assert reply["result"]["model"] == "helper"  # SmolLM2's own words, whatever they are


def test_llama_cpp_prompt_of_a_model_without_tools_says_what_it_cannot_do(
    make_daemon: Callable[..., Daemon], smollm2_path: Path
) -> None:
    """The prompt llama.cpp was given, as the daemon logs it at `debug`."""
    extra = (
        'default_model = "small"\nlog_level = "debug"\n'
        f'[[models]]\nid = "small"\nsource = {SMOLLM2_SOURCE}\n'
        'backend_preferences = ["llama_cpp"]\n'
    )
    daemon = make_daemon('broker = "none"', extra=extra)
    reply = asyncio.run(ask(daemon, "turn the heating up a bit"))
    assert reply["result"]["backend"] == "llama_cpp"
    prompts = [line for line in daemon.log.splitlines() if "prompt: " in line]
    assert prompts, daemon.log
    # Intents are off in this daemon: the note says only what the model cannot do.
    assert NO_TOOLS_NOTE in prompts[-1]
    assert NO_TOOLS_INTENTS not in prompts[-1]


async def test_a_model_with_tools_that_answers_in_words_says_its_words(
    home: Callable[..., tuple[Daemon, Server]],
) -> None:
    daemon, ollama = home(None)  # the stand-in answers with SmolLM2's text, tools or not
    reply = await ask(daemon, "tell me a joke about lamps")
    (asked,) = [r for r in chat_requests(ollama) if r.get("tools")]
    assert asked["messages"][-1]["content"] == "tell me a joke about lamps"
    assert reply["result"]["text"].strip() and reply["result"]["model"] == "helper"
