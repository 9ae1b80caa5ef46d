"""MQTT as a home sees it: a real mosquitto (plain and TLS+password) and the embedded broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from daemon.core.supervisor import cancel_and_wait
from tests.daemon.conftest import (
    Daemon,
    Mosquitto,
    MqttRecorder,
    SocketClient,
    free_port,
    listening,
    mqtt_login,
)

BASE = "tektra/testnode"


def seq(chunk: dict[str, Any]) -> int:
    value = chunk["seq"]
    assert isinstance(value, int)
    return value


def client_cert(broker: Mosquitto) -> str:
    assert broker.tls is not None
    return f'cert_file = "{broker.tls.client_cert}"\nkey_file = "{broker.tls.client_key}"\n'


async def test_tls_broker_with_a_client_certificate_and_a_password_from_a_file(
    make_daemon: Callable[..., Daemon], mosquitto_tls: Mosquitto, tmp_path
) -> None:
    assert mosquitto_tls.tls is not None
    password_file = tmp_path / "mqtt-password"
    password_file.write_text("s3cret-for-tests\n")
    daemon = make_daemon(
        f'broker = "{mosquitto_tls.url}"\nusername = "tester"\n'
        f'password_file = "{password_file}"\nca_file = "{mosquitto_tls.tls.ca}"\n'
        + client_cert(mosquitto_tls)
    )
    async with listening(mosquitto_tls, [f"{BASE}/#"]) as mqtt:
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == b"online")
        client = await SocketClient.connect(daemon.socket)
        await client.call({"id": "t1", "cmd": "ask", "text": "over tls"})
        await client.close()
        answer = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/response")
        assert answer.json()["text"] == "You said: over tls"
    assert daemon.stop() == 0
    assert "s3cret" not in daemon.log


async def test_a_wrong_password_is_a_state_that_is_retried_not_the_end(
    make_daemon: Callable[..., Daemon], mosquitto_tls: Mosquitto
) -> None:
    assert mosquitto_tls.tls is not None
    daemon = make_daemon(
        f'broker = "{mosquitto_tls.url}"\nusername = "tester"\npassword_env = "TEST_MQTT_PW"\n'
        f'ca_file = "{mosquitto_tls.tls.ca}"\nreconnect_max_s = 0.5\n' + client_cert(mosquitto_tls),
        start=False,
    )
    daemon.env["TEST_MQTT_PW"] = "pw-not-this-one-4711"
    daemon.start()
    client = await SocketClient.connect(daemon.socket)
    deadline = time.monotonic() + 10
    while True:
        status = (await client.call({"id": 1, "cmd": "status"}))["result"]["mqtt"]
        if status["reconnects"] >= 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert status["connected"] is False and status["reconnects"] >= 2
    answer = await client.call({"id": 2, "cmd": "ask", "text": "no broker needed"})
    assert answer["result"]["text"] == "You said: no broker needed"
    await client.close()
    assert daemon.stop() == 0
    assert "pw-not-this-one-4711" not in daemon.log


async def test_the_embedded_broker_serves_the_topics_with_nothing_installed(
    make_daemon: Callable[..., Daemon],
) -> None:
    port = free_port()
    daemon = make_daemon(f'broker = "embedded"\nembedded_port = {port}')
    username, password = mqtt_login(daemon)
    recorder = MqttRecorder()
    async with aiomqtt.Client(
        "127.0.0.1", port, username=username, password=password
    ) as subscriber:
        task = asyncio.create_task(recorder.run(subscriber, [f"{BASE}/#"]))
        await asyncio.wait_for(recorder.subscribed.wait(), 10)
        await recorder.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == b"online")
        client = await SocketClient.connect(daemon.socket)
        await client.call({"id": "e1", "cmd": "ask", "text": "embedded"})
        await client.close()
        answer = await recorder.wait_for(lambda m: m.topic == f"{BASE}/response")
        assert answer.json() == {**answer.json(), "id": "e1", "text": "You said: embedded"}
        # amqtt hands each delivery to its own task, so messages on different topics (and
        # chunks among themselves) may arrive out of order; readers order chunks by `seq`.
        await recorder.wait_until(lambda: len(recorder.on(f"{BASE}/response/chunk")) >= 3)
        chunks = sorted((m.json() for m in recorder.on(f"{BASE}/response/chunk")), key=seq)
        assert [(c["id"], c["seq"], c["text"]) for c in chunks] == [
            ("e1", 0, "You"),
            ("e1", 1, " said:"),
            ("e1", 2, " embedded"),
        ]
        await cancel_and_wait(task)  # its cancel may be lost in aiomqtt (Python < 3.12)
    assert daemon.stop() == 0


async def test_sigterm_publishes_offline_retained_and_exits_0_in_under_2_s(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"')
    async with listening(mosquitto, [f"{BASE}/status"]) as mqtt:
        await mqtt.wait_for(lambda m: m.payload == b"online")
        started = time.monotonic()
        code = daemon.stop()
        elapsed = time.monotonic() - started
        assert code == 0 and elapsed < 2.0, (code, elapsed)
        await mqtt.wait_for(lambda m: m.payload == b"offline")
    # A newcomer learns it from the retained message.
    async with listening(mosquitto, [f"{BASE}/status"]) as late:
        retained = await late.wait_for(lambda m: True)
        assert (retained.payload, retained.retain) == (b"offline", True)


async def test_broker_killed_and_restarted_mid_answer_delivers_the_answer_after_reconnect(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"\nreconnect_max_s = 0.5', delay_s=0.15)
    # A persistent session (clean_session off) on a broker that saves sessions: what the daemon
    # delivers after the restart waits in the broker for this subscriber.
    session = {"identifier": "recorder-persistent", "clean_session": False}
    async with listening(mosquitto, [f"{BASE}/response"], **session) as before:
        await asyncio.sleep(0.2)
        assert before.messages == []
    client = await SocketClient.connect(daemon.socket)
    question = "please tell me the whole long story of the house and the garden"
    await client.send({"id": "long", "cmd": "ask", "text": question})
    first = await client.receive()
    assert first == {"id": "long", "chunk": "You"}

    mosquitto.stop()  # mid-answer: the daemon goes on answering with no broker
    replies = await client.until_done("long")
    assert replies[-1]["result"]["text"] == f"You said: {question}"
    status = (await client.call({"id": "s1", "cmd": "status"}))["result"]["mqtt"]
    assert status["connected"] is False and status["outbox"] >= 1

    mosquitto.start()
    async with listening(mosquitto, [f"{BASE}/response"], **session) as after:
        delivered = await after.wait_for(lambda m: m.json()["id"] == "long", timeout_s=20)
        assert delivered.json()["text"] == f"You said: {question}"
    # The subscriber may see the answer before the broker's PUBACK reaches the daemon.
    await _until(client, lambda mqtt: mqtt["outbox"] == 0)
    status = (await client.call({"id": "s2", "cmd": "status"}))["result"]["mqtt"]
    assert status["connected"] is True and status["reconnects"] >= 1
    assert (status["outbox"], status["dropped"]) == (0, 0)
    await client.close()
    assert daemon.stop() == 0


async def test_a_full_outbox_drops_the_oldest_and_counts_it(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"\noutbox_size = 2\nreconnect_max_s = 0.5')
    session = {"identifier": "recorder-outbox", "clean_session": False}
    async with listening(mosquitto, [f"{BASE}/response"], **session) as mqtt:
        await asyncio.sleep(0.1)
    client = await SocketClient.connect(daemon.socket)
    await _until(client, lambda mqtt: mqtt["connected"] is True)
    mosquitto.stop()
    await _until(client, lambda mqtt: mqtt["connected"] is False)
    for i in range(4):
        await client.call({"id": f"a{i}", "cmd": "ask", "text": f"answer {i}"})
    status = (await client.call({"id": "s", "cmd": "status"}))["result"]["mqtt"]
    assert (status["outbox"], status["dropped"]) == (2, 2)

    mosquitto.start()
    async with listening(mosquitto, [f"{BASE}/response"], **session) as mqtt:
        # Drained first: a new answer in a full box would push out the oldest waiting one.
        await _until(client, lambda mqtt: mqtt["connected"] is True and mqtt["outbox"] == 0)
        await client.call({"id": "a4", "cmd": "ask", "text": "answer 4"})
        await mqtt.wait_for(lambda m: m.json()["id"] == "a4")
        assert [m.json()["id"] for m in mqtt.on(f"{BASE}/response")] == ["a2", "a3", "a4"]
    await client.close()
    assert daemon.stop() == 0


async def _until(client: SocketClient, condition: Callable[[dict[str, object]], bool]) -> None:
    """Poll the daemon's status until its MQTT link satisfies `condition` (10 s at most)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = await client.call({"id": "poll", "cmd": "status"})
        if condition(reply["result"]["mqtt"]):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the MQTT link never got there: {reply['result']['mqtt']}")


def test_mqtt_payloads_are_json_with_the_documented_fields() -> None:
    # The topics' payloads are the bus events' wire shape, minus `event`; see README.
    from daemon.core.events import ResponseDone

    done = ResponseDone("x", "hi", "echo", "recorder", "stop", 1, 2, {"total": 3.0})
    wire = done.to_wire()
    del wire["event"]
    assert json.loads(json.dumps(wire)) == {
        "id": "x",
        "text": "hi",
        "model": "echo",
        "backend": "recorder",
        "finish_reason": "stop",
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "timings_ms": {"total": 3.0},
    }
