"""The embedded broker behaves as MQTT 3.1.1 says, exactly as mosquitto does.

Every case runs against the embedded broker and against a real mosquitto, with the clients people
use (mosquitto_pub, paho), and each with nobody else watching, and with another client
subscribed to `#` or `tektra/#` (README's first suggestion; amqtt lost messages only then).
A broker starts with retained messages like the daemon's, so that watchers have something to see.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.frontends.mqtt.broker import EmbeddedBroker
from tests.daemon.conftest import free_port, wait_for_port
from tests.daemon.mqtt_clients import (
    Login,
    PahoClient,
    RawClient,
    Will,
    mosquitto_pub,
    publish_in_one_write,
)

LOGIN = Login("tester", "s3cret-for-conformance")
RETAINED = {
    "tektra/node/status": b"online",
    "tektra/node/state": b"idle",
    "homeassistant/device/node/config": b"{}",
}


@dataclass
class BrokerUnderTest:
    port: int


class ThreadedEmbeddedBroker:
    """The daemon's embedded broker on an event loop of its own, so tests can block."""

    def __init__(self, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.broker: EmbeddedBroker | None = None
        self.port = port

    async def _start(self) -> None:
        self.broker = EmbeddedBroker(
            self.port,
            bind="127.0.0.1",
            logins={LOGIN.username: LOGIN.password},
            allow_anonymous=False,
        )
        await self.broker.start()

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    def stop(self) -> None:
        if self.broker is not None:
            asyncio.run_coroutine_threadsafe(self.broker.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


def start_mosquitto(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """A mosquitto that wants the same login as the embedded broker under test."""
    passwords = workdir / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), LOGIN.username, LOGIN.password],
        check=True,
        capture_output=True,
    )
    lines = [f"listener {port} 127.0.0.1", f"password_file {passwords}", "allow_anonymous false"]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to `mosquitto` and cannot read our files
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    with (workdir / "mosquitto.log").open("ab") as log:
        process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
    wait_for_port(port)
    return process


@pytest.fixture(params=["embedded", "mosquitto"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerUnderTest]:
    port = free_port()
    if request.param == "embedded":
        embedded = ThreadedEmbeddedBroker(port)
        embedded.start()
        try:
            yield BrokerUnderTest(port)
        finally:
            embedded.stop()
    else:
        process = start_mosquitto(tmp_path, port)
        try:
            yield BrokerUnderTest(port)
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(params=[None, "#", "tektra/#"], ids=["alone", "watched-#", "watched-tektra"])
def scene(request: pytest.FixtureRequest, broker: BrokerUnderTest) -> Iterator[BrokerUnderTest]:
    """The broker with the daemon's kind of retained messages, and perhaps a watcher."""
    for topic, payload in RETAINED.items():
        assert (
            mosquitto_pub(broker.port, LOGIN, topic, "-r", "-m", payload.decode()).returncode == 0
        )
    watcher = None
    if request.param is not None:
        watcher = PahoClient(broker.port, LOGIN).connect()
        watcher.subscribe(request.param)
    yield broker
    if watcher is not None:
        watcher.close()


def retained_for(port: int, topic_filter: str, sentinel: str) -> list[tuple[str, bytes]]:
    """The retained messages a new subscription to `topic_filter` receives: everything that
    arrives before the subscriber's own later message on `sentinel` (which the filter matches)."""
    client = PahoClient(port, LOGIN).connect()
    try:
        client.subscribe(topic_filter)
        client.publish(sentinel, b"sentinel")
        before = client.wait_for(lambda m: m.payload == b"sentinel", f"{sentinel} back")[:-1]
    finally:
        client.close()
    assert all(m.retain for m in before), before
    return sorted((m.topic, m.payload) for m in before)


@pytest.mark.parametrize("qos", [0, 1])
def test_messages_of_clients_that_publish_and_disconnect_at_once_are_delivered(
    scene: BrokerUnderTest, qos: int
) -> None:
    subscriber = PahoClient(scene.port, LOGIN).connect()
    subscriber.subscribe("tektra/node/command/#")
    for n in range(5):
        sent = mosquitto_pub(
            scene.port, LOGIN, "tektra/node/command/status", "-q", str(qos), "-m", f'{{"id": {n}}}'
        )
        assert sent.returncode == 0, sent.stderr
    subscriber.wait_until(lambda: len(subscriber.messages) >= 5, "5 commands")
    assert sorted(m.payload for m in subscriber.messages) == [
        f'{{"id": {n}}}'.encode() for n in range(5)
    ]
    subscriber.close()


def test_messages_sent_in_one_write_with_connect_and_disconnect_are_all_delivered(
    scene: BrokerUnderTest,
) -> None:
    subscriber = PahoClient(scene.port, LOGIN).connect()
    subscriber.subscribe("tektra/node/command/#")
    payloads = [f'{{"id": {n}}}'.encode() for n in range(5)]
    publish_in_one_write(scene.port, LOGIN, "tektra/node/command/status", payloads)
    subscriber.wait_until(lambda: len(subscriber.messages) >= 5, "5 commands")
    assert [m.payload for m in subscriber.messages] == payloads
    subscriber.close()


@pytest.mark.parametrize("qos", [0, 1])
def test_a_burst_is_delivered_whole_in_order_and_acknowledged_without_complaint(
    scene: BrokerUnderTest, qos: int, caplog: pytest.LogCaptureFixture
) -> None:
    subscriber = PahoClient(scene.port, LOGIN).connect()
    subscriber.subscribe("tektra/node/response/#", qos=1)
    publisher = PahoClient(scene.port, LOGIN).connect()
    for n in range(300):
        publisher.client.publish(f"tektra/node/response/{n % 2}", str(n).encode(), qos)
    subscriber.wait_until(lambda: len(subscriber.messages) >= 300, "300 messages")
    for topic in ("tektra/node/response/0", "tektra/node/response/1"):
        numbers = [int(m.payload) for m in subscriber.messages if m.topic == topic]
        assert numbers == sorted(numbers) and len(numbers) == 150
    publisher.close()
    subscriber.close()
    # and the broker had nothing to complain about (amqtt called quick PUBACKs "unknown")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(("published", "granted"), [(0, 1), (1, 0), (1, 1)])
def test_a_message_is_delivered_at_the_lower_of_its_qos_and_the_subscriptions(
    scene: BrokerUnderTest, published: int, granted: int
) -> None:
    subscriber = PahoClient(scene.port, LOGIN).connect()
    subscriber.subscribe("tektra/node/reply", qos=granted)
    sent = mosquitto_pub(scene.port, LOGIN, "tektra/node/reply", "-q", str(published), "-m", "x")
    assert sent.returncode == 0, sent.stderr
    delivered = subscriber.wait_for(lambda m: m.topic == "tektra/node/reply", "the message")[-1]
    assert delivered.qos == min(published, granted)
    subscriber.close()


@pytest.mark.parametrize(
    ("topic_filter", "sentinel", "expected"),
    [
        ("foo/#", "foo/sentinel", []),
        (
            "tektra/#",
            "tektra/sentinel",
            [("tektra/node/state", b"idle"), ("tektra/node/status", b"online")],
        ),
        ("tektra/+/status", "tektra/sentinel/status", [("tektra/node/status", b"online")]),
        ("+/device/+/config", "x/device/y/config", [("homeassistant/device/node/config", b"{}")]),
        ("tektra/node/state", "tektra/node/state", [("tektra/node/state", b"idle")]),
    ],
)
def test_a_new_subscription_gets_the_retained_messages_its_filter_matches_and_no_others(
    scene: BrokerUnderTest, topic_filter: str, sentinel: str, expected: list[tuple[str, bytes]]
) -> None:
    assert retained_for(scene.port, topic_filter, sentinel) == expected


def test_a_retained_message_with_an_empty_payload_deletes_the_retained_message(
    scene: BrokerUnderTest,
) -> None:
    assert mosquitto_pub(scene.port, LOGIN, "tektra/node/model", "-r", "-m", "echo").returncode == 0
    assert mosquitto_pub(scene.port, LOGIN, "tektra/node/model", "-r", "-n").returncode == 0
    assert retained_for(scene.port, "tektra/node/+", "tektra/node/sentinel") == [
        ("tektra/node/state", b"idle"),
        ("tektra/node/status", b"online"),
    ]


def test_the_last_will_is_published_when_a_client_vanishes_without_disconnect(
    scene: BrokerUnderTest,
) -> None:
    subscriber = PahoClient(scene.port, LOGIN).connect()
    subscriber.subscribe("tektra/other/status")
    client = RawClient(scene.port, LOGIN, "vanishing", Will("tektra/other/status", "offline"))
    assert client.return_code == 0
    client.cut()
    will = subscriber.wait_for(lambda m: m.topic == "tektra/other/status", "the last will")[-1]
    assert (will.payload, will.retain) == (b"offline", False)
    subscriber.close()


def test_a_client_silent_past_its_keepalive_is_disconnected_and_its_will_published(
    scene: BrokerUnderTest,
) -> None:
    subscriber = PahoClient(scene.port, LOGIN).connect()
    subscriber.subscribe("tektra/other/status")
    silent = RawClient(
        scene.port, LOGIN, "silent", Will("tektra/other/status", "offline"), keepalive_s=1
    )
    assert silent.return_code == 0
    # No PINGREQ, no FIN: as a machine that lost power. The broker gives up after 1.5 s.
    will = subscriber.wait_for(lambda m: m.topic == "tektra/other/status", "the last will")[-1]
    assert will.payload == b"offline"
    assert silent.closed_by_broker()
    silent.cut()
    subscriber.close()


def test_a_client_that_pings_within_its_keepalive_stays_connected(broker: BrokerUnderTest) -> None:
    idle = PahoClient(broker.port, LOGIN, keepalive_s=1).connect()
    time.sleep(3.5)  # an observation window, not a speed measure: paho pings every second
    assert idle.disconnects == 0
    idle.close()


def test_a_persistent_session_gets_the_qos_1_messages_published_while_it_was_away(
    scene: BrokerUnderTest,
) -> None:
    away = PahoClient(scene.port, LOGIN, "persistent-1", clean_session=False).connect()
    away.subscribe("tektra/node/reply", qos=1)
    away.close()
    assert (
        mosquitto_pub(scene.port, LOGIN, "tektra/node/reply", "-q", "1", "-m", "queued").returncode
        == 0
    )
    back = PahoClient(scene.port, LOGIN, "persistent-1", clean_session=False).connect()
    queued = back.wait_for(lambda m: m.topic == "tektra/node/reply", "the queued message")[-1]
    assert (queued.payload, queued.retain) == (b"queued", False)
    back.close()


@pytest.mark.parametrize("clean_session", [True, False], ids=["clean", "persistent"])
def test_a_second_connection_with_the_same_client_id_disconnects_the_first(
    scene: BrokerUnderTest, clean_session: bool
) -> None:
    first = RawClient(scene.port, LOGIN, "same-id", clean_session=clean_session)
    second = RawClient(scene.port, LOGIN, "same-id", clean_session=clean_session)
    assert (first.return_code, second.return_code) == (0, 0)
    assert first.closed_by_broker()
    first.cut()
    second.cut()


def test_a_refused_connect_under_a_connected_clients_id_leaves_that_client_alone(
    scene: BrokerUnderTest,
) -> None:
    daemon = PahoClient(scene.port, LOGIN, "tektra-node").connect()
    daemon.subscribe("tektra/node/command/#")
    intruder = RawClient(scene.port, Login(LOGIN.username, "wrong"), "tektra-node")
    assert intruder.return_code == 5  # not authorised
    intruder.cut()
    assert (
        mosquitto_pub(scene.port, LOGIN, "tektra/node/command/status", "-m", "{}").returncode == 0
    )
    daemon.wait_for(lambda m: m.topic == "tektra/node/command/status", "the command")
    assert daemon.disconnects == 0
    daemon.close()


@pytest.mark.parametrize(
    "login", [None, Login(LOGIN.username, "wrong"), Login("nobody", "x")], ids=str
)
def test_a_client_without_the_right_login_is_refused_and_its_messages_go_nowhere(
    scene: BrokerUnderTest, login: Login | None
) -> None:
    subscriber = PahoClient(scene.port, LOGIN).connect()
    subscriber.subscribe("tektra/node/command/#")
    refused = mosquitto_pub(scene.port, login, "tektra/node/command/mute", "-m", "{}")
    assert refused.returncode != 0
    assert "not authorised" in refused.stderr
    assert mosquitto_pub(scene.port, LOGIN, "tektra/node/command/ok", "-m", "{}").returncode == 0
    got = subscriber.wait_for(lambda m: m.topic == "tektra/node/command/ok", "the allowed one")
    assert [m.topic for m in got] == ["tektra/node/command/ok"]
    subscriber.close()
