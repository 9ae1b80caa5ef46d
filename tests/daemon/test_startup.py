"""Starting as systemd expects: READY once the daemon serves, the model loading after it; a
machine without a sound card is a lost device, not a daemon in `error`."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon.conftest import Daemon, SocketClient, free_port
from tests.daemon.test_lifecycle import messages_until


class HungServer:
    """A STAND-IN for a hung inference server: it accepts TCP connections and never answers
    (what a wedged vLLM or llama.cpp server looks like from outside). Nothing else."""

    def __init__(self) -> None:
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._held.append(connection)  # kept open, never read, never answered

    def __enter__(self) -> HungServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def notify_socket(short_dir: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(short_dir / "notify"))
    sock.settimeout(30)
    yield sock
    sock.close()


async def test_ready_comes_while_the_default_model_is_still_loading_from_a_hung_server(
    make_daemon: Callable[..., Daemon], notify_socket: socket.socket
) -> None:
    daemon = make_daemon('broker = "none"', start=False)
    with HungServer() as hung:
        daemon.config.write_text(
            f'[daemon]\nsocket = "{daemon.socket}"\nnode_id = "testnode"\n'
            '[audio]\nsource = "none"\n[mqtt]\nbroker = "none"\n'
            '[backends]\ndefault = ["openai"]\n'
            # Minutes before the client would give up: READY must not wait for that.
            f'[backends.openai]\nenabled = true\nbase_url = "http://127.0.0.1:{hung.port}/v1"\n'
            "timeout_s = 600\n"
            '[[models]]\nid = "remote"\nsource = { served = "big-model" }\n'
        )
        daemon.env["NOTIFY_SOCKET"] = notify_socket.getsockname()
        daemon.start(wait=False)
        ready = messages_until(notify_socket, "READY=1")[-1].split("\n")
        assert ready[:2] == [
            "READY=1",
            f"STATUS=ready: loading model remote, socket {daemon.socket}",
        ]
        client = await SocketClient.connect(daemon.socket)
        status = (await client.call({"id": 1, "cmd": "status"}))["result"]
        assert (status["state"], status["loading"], status["model"]) == ("loading", "remote", None)
        await client.close()
        daemon.signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=15) == 0  # type: ignore[union-attr]
    assert "Traceback" not in daemon.log


async def test_without_a_sound_card_the_microphone_is_lost_but_answers_end_idle(
    make_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    # A headless machine: no sound card and no sound server to reach (`make run` there).
    daemon = make_daemon('broker = "none"', audio="auto", start=False)
    daemon.env.update(PULSE_SERVER=f"unix:{short_dir}/no-pulse", XDG_RUNTIME_DIR=str(short_dir))
    daemon.start()
    watcher = await SocketClient.connect(daemon.socket)
    await watcher.send({"id": "w", "cmd": "subscribe"})

    async def lost_attempts(count: int) -> None:
        seen = 0
        while seen < count:
            event = await watcher.receive(timeout_s=60)
            data = event.get("data", {})
            seen += data.get("name") == "DeviceState" and data["data"]["state"] == "lost"

    await lost_attempts(3)  # reopened with backoff: 0.5 s, 1 s, 2 s …
    client = await SocketClient.connect(daemon.socket)
    answer = await client.call({"id": "a", "cmd": "ask", "text": "hello"})
    assert answer["result"]["text"] == "You said: hello"
    status = (await client.call({"id": "s", "cmd": "status"}))["result"]
    assert status["state"] == "idle"
    assert list(status["problems"]) == ["microphone"]
    assert status["problems"]["microphone"].startswith("microphone lost: cannot open: ")
    for connection in (watcher, client):
        await connection.close()
    assert daemon.stop() == 0
    # Every attempt is an event; the log says it once (then after a minute, two, four …).
    lost_lines = [line for line in daemon.log.splitlines() if "microphone auto: lost" in line]
    assert len(lost_lines) == 1
    assert "INFO pipelines.microphone: microphone auto: lost (cannot open: " in lost_lines[0]
    assert "reopening" not in daemon.log
    assert "Traceback" not in daemon.log  # stopping the voice pipeline and its retries included
