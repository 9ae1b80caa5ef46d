"""Two daemons, one broker: a second `tektra run` for the same node refuses before it touches the
first one's connection, and a client that takes our client id over meets backoff and a report,
not a reconnect storm. Real `tektra run` processes against a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from tests.daemon.conftest import (
    Daemon,
    Mosquitto,
    SocketClient,
    echo_config,
    free_port,
    listening,
    mqtt_login,
)

BASE = "tektra/testnode"


async def test_a_second_daemon_for_the_same_node_refuses_and_the_first_keeps_its_link(
    make_daemon: Callable[..., Daemon],
    mosquitto: Mosquitto,
    plugin_site: Path,
    tmp_path: Path,
    short_dir: Path,
) -> None:
    first = make_daemon(f'broker = "{mosquitto.url}"')
    async with listening(mosquitto, [f"{BASE}/status"]) as mqtt:
        await mqtt.wait_for(lambda m: m.payload == b"online")
        # Its own socket and config, the same node on the same broker.
        workdir = tmp_path / "second"
        workdir.mkdir()
        config = workdir / "models.toml"
        config.write_text(echo_config(short_dir / "second.sock", f'broker = "{mosquitto.url}"'))
        second = Daemon(config, short_dir / "second.sock", plugin_site)
        second.start(wait=False)
        assert second.process is not None
        assert second.process.wait(timeout=30) == 1
        assert (
            "error [node_in_use]: another Tektra daemon already serves node 'testnode' on the "
            f"MQTT broker {mosquitto.url}; stop it first" in second.log
        )
        assert not (short_dir / "second.sock").exists()

        client = await SocketClient.connect(first.socket)
        status = (await client.call({"id": 1, "cmd": "status"}))["result"]["mqtt"]
        assert (status["connected"], status["reconnects"]) == (True, 0)
        await client.close()
        assert mqtt.payloads(f"{BASE}/status") == ["online"]  # no `offline` in between
    assert first.stop() == 0


async def test_a_stale_online_with_nobody_answering_does_not_block_the_start(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    # What a daemon leaves behind when it and the broker die together: no last will was sent.
    async with mosquitto.client() as client:
        await client.publish(f"{BASE}/status", b"online", qos=1, retain=True)
    daemon = make_daemon(f'broker = "{mosquitto.url}"')
    assert "the broker says node testnode is online, but nothing answers" in daemon.log
    assert daemon.stop() == 0


async def test_a_client_that_keeps_taking_our_client_id_is_reported_and_backed_off(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"\nreconnect_max_s = 2')
    reported = "another client probably uses the client id 'tektra-testnode'"
    # A thief that comes back with our client id every half second, like a second daemon would.
    for _ in range(40):
        if reported in daemon.log:
            break
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="tektra-testnode"):
                await asyncio.sleep(0.5)
    assert reported in daemon.log
    assert daemon.log.count("lost the MQTT broker") < 40  # backed off, not a storm
    assert daemon.stop() == 0


async def test_a_second_daemon_on_the_same_embedded_port_exits_and_leaves_the_first_alone(
    make_daemon: Callable[..., Daemon], plugin_site: Path, tmp_path: Path, short_dir: Path
) -> None:
    port = free_port()
    mqtt_conf = f'broker = "embedded"\nembedded_port = {port}'
    first = make_daemon(mqtt_conf)
    # Not started: a client factory for the embedded broker.
    broker = Mosquitto(tmp_path, port, login=mqtt_login(first))
    async with listening(broker, [f"{BASE}/status"]) as mqtt:
        await mqtt.wait_for(lambda m: m.payload == b"online")
        workdir = tmp_path / "second"
        workdir.mkdir()
        config = workdir / "models.toml"
        config.write_text(echo_config(short_dir / "second.sock", mqtt_conf))
        second = Daemon(config, short_dir / "second.sock", plugin_site)
        second.start(wait=False)
        assert second.process is not None
        assert second.process.wait(timeout=30) == 1
        client = await SocketClient.connect(first.socket)
        status = (await client.call({"id": 1, "cmd": "status"}))["result"]["mqtt"]
        assert (status["connected"], status["reconnects"]) == (True, 0)
        await client.close()
        assert mqtt.payloads(f"{BASE}/status") == ["online"]
    assert first.stop() == 0
