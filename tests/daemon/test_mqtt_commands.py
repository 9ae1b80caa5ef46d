"""Commands as Home Assistant and Node-RED send them: plain payloads, ids kept with their type,
refusals in our words, the allow-list, retained commands never run, and a link that no payload
breaks. Each against a real mosquitto and against the embedded broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import (
    Daemon,
    Mosquitto,
    MqttRecorder,
    free_port,
    listening,
    mqtt_login,
)

BASE = "tektra/testnode"
Served = Callable[..., "tuple[Daemon, Mosquitto]"]


@pytest.fixture(params=["mosquitto", "embedded"])
def served(
    request: pytest.FixtureRequest, make_daemon: Callable[..., Daemon], tmp_path: Path
) -> Served:
    """Start a daemon on a real mosquitto, or on its own embedded broker; returns the daemon
    and something that makes clients of that broker."""

    def start(mqtt: str = "", **kwargs: Any) -> tuple[Daemon, Mosquitto]:
        if request.param == "mosquitto":
            broker: Mosquitto = request.getfixturevalue("mosquitto")
            return make_daemon(f'broker = "{broker.url}"\n{mqtt}', **kwargs), broker
        port = free_port()
        # Not started: only its address and client() are used, to reach the embedded broker.
        daemon = make_daemon(f'broker = "embedded"\nembedded_port = {port}\n{mqtt}', **kwargs)
        broker = Mosquitto(tmp_path, port, login=mqtt_login(daemon))
        return daemon, broker

    return start


@asynccontextmanager
async def watching(broker: Mosquitto) -> AsyncIterator[MqttRecorder]:
    async with listening(broker, [f"{BASE}/#"]) as mqtt:
        # The retained model is published after the daemon subscribed to its commands.
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/model")
        yield mqtt


async def send(broker: Mosquitto, command: str, payload: bytes, retain: bool = False) -> None:
    async with broker.client() as client:
        await client.publish(f"{BASE}/command/{command}", payload, qos=1, retain=retain)


def on(topic: str, request_id: object) -> Callable[[Any], bool]:
    def match(message: Any) -> bool:
        return bool(message.topic == f"{BASE}/{topic}" and message.json().get("id") == request_id)

    return match


async def test_an_id_comes_back_with_the_type_it_was_sent_with(served: Served) -> None:
    daemon, broker = served()
    async with watching(broker) as mqtt:
        await send(broker, "ask", b'{"id": 5, "text": "numbers"}')
        await send(broker, "status", b'{"id": 6}')
        await send(broker, "load_model", b'{"id": 7}')
        await send(broker, "ask", b'{"id": "5", "text": "strings"}')
        response = await mqtt.wait_for(on("response", 5))
        assert response.json()["text"] == "You said: numbers"
        assert (await mqtt.wait_for(on("reply", 6))).json()["command"] == "status"
        error = await mqtt.wait_for(on("error", 7))
        assert error.json() == {
            "id": 7,
            "code": "bad_request",
            "message": "load_model: `model` is required",
        }
        assert (await mqtt.wait_for(on("response", "5"))).json()["text"] == "You said: strings"
        chunks = [m.json() for m in mqtt.on(f"{BASE}/response/chunk")]
        assert {c["id"] for c in chunks} == {5, "5"}
    assert daemon.stop() == 0


async def test_plain_payloads_ask_switch_and_press(served: Served) -> None:
    daemon, broker = served()
    async with watching(broker) as mqtt:
        await send(broker, "ask", b"turn on the lamp")
        answer = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/response")
        assert answer.json()["text"] == "You said: turn on the lamp"
        assert answer.json()["id"].startswith("mqtt-")
        await send(broker, "microphone", b"OFF")
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/microphone" and m.payload == b"OFF")
        await send(broker, "unmute", b"")
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/microphone" and m.payload == b"ON")
        await send(broker, "mute", b"")
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/microphone" and m.payload == b"OFF")
        await send(broker, "status", b"")
        await mqtt.wait_until(lambda: len(mqtt.on(f"{BASE}/reply")) == 4)
        replies = [m.json() for m in mqtt.on(f"{BASE}/reply")]
        assert [r["command"] for r in replies] == ["microphone", "unmute", "mute", "status"]
        assert len({r["id"] for r in replies}) == 4  # each made up, each its own
        assert replies[-1]["result"]["muted"] is True
        assert mqtt.on(f"{BASE}/error") == []
    assert daemon.stop() == 0


async def test_payloads_that_break_the_parser_get_errors_and_never_restart_the_link(
    served: Served,
) -> None:
    daemon, broker = served('commands = ["ask", "status", "set_system_prompt"]')
    bad = {
        1: ("ask", b'{"id": 1, "text": ' + b"9" * 5000 + b"}", "a number has more than"),
        2: ("ask", b'{"id": 2, "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
        3: ("set_system_prompt", b'{"id": 3, "prompt": "\\ud800"}', "`prompt` holds a lone"),
        4: ("ask", b'{"id": 4, "text": "x", "model": "\\udfff"}', "`model` holds a lone"),
        5: ("ask", b'{"id": 5, "text": "trunc', "not valid JSON"),
    }
    async with watching(broker) as mqtt:
        for command, payload, _ in bad.values():
            await send(broker, command, payload)
        await mqtt.wait_until(lambda: len(mqtt.on(f"{BASE}/error")) == len(bad))
        errors = {m.json()["id"]: m.json() for m in mqtt.on(f"{BASE}/error")}
        for request_id, (_, _, message) in bad.items():
            assert errors[request_id]["code"] == "bad_json"
            assert message in errors[request_id]["message"]
        # The surrogate was never applied: later answers still encode, and the link never dropped.
        await send(broker, "ask", b'{"id": "after", "text": "still fine"}')
        answer = await mqtt.wait_for(on("response", "after"))
        assert answer.json()["text"] == "You said: still fine"
        await send(broker, "status", b'{"id": "s"}')
        status = (await mqtt.wait_for(on("reply", "s"))).json()["result"]["mqtt"]
        assert (status["connected"], status["reconnects"]) == (True, 0)
        assert mqtt.payloads(f"{BASE}/status") == ["online"]
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log


async def test_user_errors_have_their_own_codes_and_the_allow_list_guards_the_rest(
    served: Served,
) -> None:
    daemon, broker = served()
    async with watching(broker) as mqtt:
        await send(broker, "set_system_prompt", b'{"id": "p", "prompt": "Be rude."}')
        await send(broker, "switch_backend", b'{"id": "b", "backend": null}')
        await send(broker, "subscribe", b'{"id": "s"}')
        await send(broker, "ask", b'{"id": "q", "text": "hi", "preset": "turbo"}')
        await send(broker, "fly", b'{"id": "f"}')
        codes = {"p": "forbidden", "b": "forbidden", "s": "unsupported"}
        codes |= {"q": "unknown_preset", "f": "unknown_command"}
        await mqtt.wait_until(lambda: len(mqtt.on(f"{BASE}/error")) == len(codes))
        errors = {m.json()["id"]: m.json() for m in mqtt.on(f"{BASE}/error")}
        assert {i: e["code"] for i, e in errors.items()} == codes
        assert errors["p"]["message"] == (
            'set_system_prompt is not allowed over MQTT: add "set_system_prompt" to '
            "[mqtt] commands in models.toml to allow it"
        )
        assert errors["q"]["message"].startswith("no preset 'turbo'")
        assert mqtt.on(f"{BASE}/reply") == []
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log


async def test_a_backend_that_is_off_is_its_own_error_when_switching_is_allowed(
    served: Served,
) -> None:
    daemon, broker = served('commands = ["switch_backend"]')
    async with watching(broker) as mqtt:
        await send(broker, "switch_backend", b'{"id": 1, "backend": "mistral_rs"}')
        error = await mqtt.wait_for(on("error", 1))
        assert error.json()["code"] == "backend_disabled"
        assert "[backends.mistral_rs] enabled = true" in error.json()["message"]
    assert daemon.stop() == 0


async def test_live_chunks_go_at_qos_0_and_the_answer_at_qos_1(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    # mosquitto only: it delivers at the lower of the publish and subscribe QoS, as MQTT says,
    # so a QoS 1 subscriber sees what the daemon sent (amqtt 0.12 raises it to the subscription's).
    daemon, broker = make_daemon(f'broker = "{mosquitto.url}"'), mosquitto
    async with watching(broker) as mqtt:
        await send(broker, "ask", b'{"id": "q", "text": "one two three"}')
        await mqtt.wait_for(on("response", "q"))
        chunks = mqtt.on(f"{BASE}/response/chunk")
        assert chunks and {m.qos for m in chunks} == {0}
        assert [m.qos for m in mqtt.on(f"{BASE}/response")] == [1]
    assert daemon.stop() == 0


async def test_a_retained_command_is_never_run(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    # Left on the broker before the daemon starts: one to answer, one that breaks the parser.
    await send(mosquitto, "ask", b'{"id": "old", "text": "once more"}', retain=True)
    await send(mosquitto, "status", b"[" * 100_000, retain=True)
    daemon = make_daemon(f'broker = "{mosquitto.url}"\nreconnect_max_s = 0.5')
    async with watching(mosquitto) as mqtt:
        await send(mosquitto, "status", b'{"id": "now"}')
        status = (await mqtt.wait_for(on("reply", "now"))).json()["result"]["mqtt"]
        assert (status["connected"], status["reconnects"]) == (True, 0)
        assert mqtt.on(f"{BASE}/response") == [] and mqtt.on(f"{BASE}/error") == []
    assert daemon.stop() == 0
    assert "ignored a retained command on tektra/testnode/command/ask" in daemon.log
