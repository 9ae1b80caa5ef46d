"""The daemon's life as systemd sees it: notify protocol, signals, reload, bounded shutdown."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon.conftest import Daemon, SocketClient


@pytest.fixture
def notify_socket(short_dir: Path) -> Iterator[socket.socket]:
    """The datagram socket systemd would listen on for the daemon's notifications."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(short_dir / "notify"))
    sock.settimeout(10)
    yield sock
    sock.close()


def messages_until(sock: socket.socket, wanted: str) -> list[str]:
    received: list[str] = []
    while not any(wanted in m for m in received):
        received.append(sock.recv(4096).decode())
    return received


def test_sd_notify_ready_then_watchdog_from_the_loop_then_stopping(
    make_daemon: Callable[..., Daemon], notify_socket: socket.socket
) -> None:
    daemon = make_daemon('broker = "none"', start=False)
    daemon.env.update(NOTIFY_SOCKET=notify_socket.getsockname(), WATCHDOG_USEC="200000")
    daemon.start()
    startup = messages_until(notify_socket, "READY=1")
    ready = startup[-1].split("\n")
    assert ready[0] == "READY=1"
    assert ready[1] == f"STATUS=ready: loading model echo, socket {daemon.socket}"
    assert ready[2] == f"MAINPID={daemon.process.pid}"  # type: ignore[union-attr]
    loaded = messages_until(notify_socket, "STATUS=ready: model echo")
    assert loaded[-1] == f"STATUS=ready: model echo, socket {daemon.socket}"
    # Half the watchdog interval: several pings in a second.
    started = time.monotonic()
    pings = 0
    while time.monotonic() - started < 1.0:
        pings += notify_socket.recv(4096) == b"WATCHDOG=1"
    assert pings >= 5
    daemon.signal(signal.SIGTERM)
    assert "STOPPING=1\nSTATUS=stopping" in messages_until(notify_socket, "STOPPING=1")
    assert daemon.process.wait(timeout=10) == 0  # type: ignore[union-attr]


def test_sighup_reloads_models_toml_and_keeps_the_running_one_when_invalid(
    make_daemon: Callable[..., Daemon], notify_socket: socket.socket
) -> None:
    daemon = make_daemon('broker = "none"', start=False)
    daemon.env["NOTIFY_SOCKET"] = notify_socket.getsockname()
    daemon.start()
    messages_until(notify_socket, "READY=1")  # the start's own, so each wait below is a reload's

    async def model_ids() -> list[str]:
        client = await SocketClient.connect(daemon.socket)
        reply = await client.call({"id": 1, "cmd": "models"})
        await client.close()
        return [m["id"] for m in reply["result"]["models"]]

    assert asyncio.run(model_ids()) == ["echo", "parrot"]
    text = daemon.config.read_text()
    daemon.config.write_text(text + '[[models]]\nid = "third"\nsource = { path = "models.toml" }\n')
    daemon.signal(signal.SIGHUP)
    messages_until(notify_socket, "READY=1")
    assert asyncio.run(model_ids()) == ["echo", "parrot", "third"]

    daemon.config.write_text(text.replace('node_id = "testnode"', 'node_id = "bad node"') + "[x]\n")
    daemon.signal(signal.SIGHUP)
    messages_until(notify_socket, "READY=1")
    assert asyncio.run(model_ids()) == ["echo", "parrot", "third"]
    log = daemon.log
    assert "reload: x: unknown section" in log
    assert "reload: daemon.node_id: 'bad node' does not match the pattern" in log
    assert "keeping the running configuration" in log
    assert daemon.stop() == 0


async def test_sigterm_lets_an_answer_in_flight_finish(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', delay_s=0.1)
    client = await SocketClient.connect(daemon.socket)
    await client.send({"id": "a", "cmd": "ask", "text": "one two three four five six"})
    assert await client.receive() == {"id": "a", "chunk": "You"}
    daemon.signal(signal.SIGTERM)
    replies = await client.until_done("a")
    assert replies[-1]["result"]["text"] == "You said: one two three four five six"
    await client.close()
    assert daemon.process.wait(timeout=10) == 0  # type: ignore[union-attr]


async def test_an_answer_longer_than_the_shutdown_timeout_is_cancelled_and_exit_is_0(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', extra="shutdown_timeout_s = 0.3\n", delay_s=0.5)
    client = await SocketClient.connect(daemon.socket)
    await client.send({"id": "a", "cmd": "ask", "text": " ".join(["word"] * 40)})
    assert await client.receive() == {"id": "a", "chunk": "You"}
    daemon.signal(signal.SIGTERM)
    # 40 words at 0.5 s each would take 20 s; the 10 s wait passes only if it was cut short.
    assert daemon.process.wait(timeout=10) == 0  # type: ignore[union-attr]
    assert "answers still running after 0.3 s are cancelled" in daemon.log
    await client.close()


async def test_a_second_signal_forces_the_exit(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon('broker = "none"', extra="shutdown_timeout_s = 60.0\n", delay_s=0.5)
    client = await SocketClient.connect(daemon.socket)
    await client.send({"id": "a", "cmd": "ask", "text": " ".join(["word"] * 200)})
    assert await client.receive() == {"id": "a", "chunk": "You"}
    daemon.signal(signal.SIGINT)
    await asyncio.sleep(0.3)
    assert daemon.process.poll() is None  # type: ignore[union-attr]  # waiting for the answer
    daemon.signal(signal.SIGINT)
    assert daemon.process.wait(timeout=5) == 1  # type: ignore[union-attr]
    assert "second SIGINT: exiting now" in daemon.log
    await client.close()


async def test_a_new_question_during_shutdown_is_refused_with_a_code(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', delay_s=0.2)
    first = await SocketClient.connect(daemon.socket)
    second = await SocketClient.connect(daemon.socket)
    await first.send({"id": "a", "cmd": "ask", "text": "one two three four"})
    assert await first.receive() == {"id": "a", "chunk": "You"}
    daemon.signal(signal.SIGTERM)
    await asyncio.sleep(0.1)
    refused = await second.call({"id": "b", "cmd": "ask", "text": "late"})
    assert refused["error"]["code"] == "shutting_down"
    assert (await first.until_done("a"))[-1]["result"]["text"] == "You said: one two three four"
    await first.close()
    await second.close()
    assert daemon.process.wait(timeout=10) == 0  # type: ignore[union-attr]


async def test_the_reload_command_reports_every_error_and_keeps_the_configuration(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    client = await SocketClient.connect(daemon.socket)
    good = daemon.config.read_text()
    daemon.config.write_text(good + "[mqtt]\nqos = 5\n[daemon]\nmax_clients = 0\n")
    refused = await client.call({"id": "r1", "cmd": "reload"})
    assert refused["error"]["code"] == "invalid_config"
    message = refused["error"]["message"]
    assert message.startswith("models.toml is invalid; the running configuration is kept: ")
    assert "not valid TOML" in message  # a table defined twice: TOML itself refuses it
    daemon.config.write_text(good.replace("[mqtt]\n", "[mqtt]\nqos = 5\n"))
    refused = await client.call({"id": "r2", "cmd": "reload"})
    assert "mqtt.qos: must be at most 2 (got 5)" in refused["error"]["message"]
    daemon.config.write_text(good.replace('"parrot"', '"macaw"'))
    reloaded = await client.call({"id": "r3", "cmd": "reload"})
    assert reloaded["result"] == {
        "reloaded": True,
        "models": ["echo", "macaw"],
        "kept": [],
        "dropped": [],
    }
    await client.close()
    assert daemon.stop() == 0
