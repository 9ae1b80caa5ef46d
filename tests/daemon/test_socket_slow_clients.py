"""One slow or silent socket client never stalls the others, and stopping the daemon tells every
client why its connection ends."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Callable
from typing import Any

from daemon.frontends.socket.client import DaemonClient, DaemonError
from tests.daemon.conftest import Daemon, SocketClient


async def lines_until_closed(client: SocketClient, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Every line the daemon sends until it closes the connection."""
    lines: list[dict[str, Any]] = []
    while True:
        line = await asyncio.wait_for(client.reader.readline(), timeout_s)
        if not line:
            return lines
        lines.append(json.loads(line))


def stalled_client(path: str) -> socket.socket:
    """A client whose receive buffer is tiny and who never reads it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(path)
    return sock


async def test_a_client_that_stops_reading_is_dropped_and_the_others_are_answered(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', extra="client_buffer = 65536\n")
    watcher = await SocketClient.connect(daemon.socket)
    await watcher.call({"id": "w", "cmd": "subscribe"})
    with stalled_client(str(daemon.socket)) as stalled:
        # It subscribes to every event, then asks for a long answer on the same connection and
        # reads nothing: its replies pile up far past what it may leave unread.
        long_text = " ".join(f"{i}{'x' * 60}" for i in range(3_000))
        stalled.sendall(b'{"id": "sub", "cmd": "subscribe"}\n')
        request = {"id": "long", "cmd": "ask", "text": long_text}
        stalled.sendall(json.dumps(request).encode() + b"\n")
        while (await watcher.receive())["data"].get("id") != "long":
            pass  # its answer is under way

        other = await SocketClient.connect(daemon.socket)
        reply = await other.call({"id": "b", "cmd": "ask", "text": "hello"})
        assert reply["result"]["text"] == "You said: hello"
        status = await other.call({"id": "s", "cmd": "status"})
    assert status["result"]["socket"]["clients"] == 2  # `other` and the watcher
    assert status["result"]["socket"]["dropped_slow"] == 1
    await other.close()
    await watcher.close()
    assert daemon.stop() == 0
    assert "socket client pid" in daemon.log and "dropped: it stopped reading" in daemon.log
    assert "Traceback" not in daemon.log


async def test_half_lines_on_every_slot_do_not_lock_other_clients_out(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', extra="max_clients = 64\nline_timeout_s = 1.0\n")
    hogs = [await SocketClient.connect(daemon.socket) for _ in range(64)]
    for hog in hogs:
        await hog.send_raw(b'{"id": 1, "cmd": "sta')

    for hog in hogs:
        assert await lines_until_closed(hog) == [
            {
                "id": None,
                "error": {
                    "code": "line_timeout",
                    "message": "a request line was not finished within 1 s (line_timeout_s); "
                    "closing the connection",
                },
            }
        ]
    newcomer = await SocketClient.connect(daemon.socket)
    status = await newcomer.call({"id": 2, "cmd": "status"})
    assert status["result"]["state"] == "idle"
    await newcomer.close()
    for hog in hogs:
        await hog.close()
    assert daemon.stop() == 0


async def test_an_idle_connection_is_closed_but_a_subscriber_is_not(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', extra="client_idle_s = 1.0\n")
    watcher = await SocketClient.connect(daemon.socket)
    await watcher.send({"id": "w", "cmd": "subscribe"})
    assert await watcher.receive() == {"id": "w", "result": {"subscribed": True}}
    silent = await SocketClient.connect(daemon.socket)

    assert await lines_until_closed(silent) == [
        {
            "id": None,
            "error": {
                "code": "idle",
                "message": "no request for 1 s (client_idle_s); closing the connection",
            },
        }
    ]
    # The subscriber has waited longer than that, and still hears what happens.
    asker = await SocketClient.connect(daemon.socket)
    await asker.call({"id": "m", "cmd": "mute"})
    assert await watcher.receive() == {"id": "w", "event": "microphone", "data": {"muted": True}}
    for client in (watcher, silent, asker):
        await client.close()
    assert daemon.stop() == 0


async def test_at_shutdown_every_client_gets_a_last_line_and_the_log_no_traceback(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', extra="shutdown_timeout_s = 0.2\n", delay_s=0.05)
    watchers = [await SocketClient.connect(daemon.socket) for _ in range(3)]
    for i, watcher in enumerate(watchers):
        await watcher.send({"id": f"w{i}", "cmd": "subscribe"})
        assert await watcher.receive() == {"id": f"w{i}", "result": {"subscribed": True}}
    asker = await SocketClient.connect(daemon.socket)
    await asker.send({"id": "q", "cmd": "ask", "text": " ".join(["long"] * 1000)})
    assert await asker.receive() == {"id": "q", "chunk": "You"}  # the answer is under way

    daemon.signal(signal.SIGTERM)

    stopping = {
        "code": "shutting_down",
        "message": "the daemon is stopping; this request was not finished",
    }
    # The answer itself is stopped by the assistant, which says so; a subscription has no answer.
    cut_short = {**stopping, "message": "the daemon is stopping; the answer was cut short"}
    asked = await lines_until_closed(asker)
    assert asked[-1] == {"id": "q", "error": cut_short}
    assert all("chunk" in line for line in asked[:-1])
    for i, watcher in enumerate(watchers):
        heard = await lines_until_closed(watcher)
        assert heard[-1] == {"id": f"w{i}", "error": stopping}
        assert all("event" in line for line in heard[:-1])
    for client in (*watchers, asker):
        await client.close()
    assert daemon.process is not None
    assert daemon.process.wait(timeout=30) == 0
    assert "Traceback" not in daemon.log


async def test_one_client_over_max_clients_is_told_so(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon('broker = "none"', extra="max_clients = 1\n")
    first = await SocketClient.connect(daemon.socket)
    assert (await first.call({"id": 1, "cmd": "status"}))["result"]["socket"]["clients"] == 1

    def second_client() -> DaemonError:
        with DaemonClient(daemon.socket, timeout_s=30) as client:
            try:
                client.call("status")
            except DaemonError as exc:
                return exc
        raise AssertionError("the second client was served")

    refused = await asyncio.to_thread(second_client)
    assert (refused.code, refused.message) == (
        "too_many_clients",
        "too many clients (max_clients = 1)",
    )
    await first.close()
    assert daemon.stop() == 0
