"""Stopping as systemd expects: within `shutdown_timeout_s`, engines stopped, askers told why.

A stopped answer is the engine stopped, not only the asker left: llama.cpp reading a long prompt
included. A second signal skips the waits but still removes the socket and says `offline`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon.conftest import Daemon, Mosquitto, SocketClient, listening

BASE = "tektra/testnode"
# Long enough that llama.cpp on a small CPU reads it for seconds, and then (at temperature 0) it
# answers with a story that runs to `max_tokens` (2,000): a daemon that waited for the engine
# would not exit within the tests' waits.
LONG_QUESTION = (
    "Here are some numbers: "
    + " ".join(str(n) for n in range(1, 700))
    + ". Now write a very long story about a dragon, with many chapters."
)


def llama_config(
    daemon: Daemon, smollm2: Path, shutdown_timeout_s: float, backend: str = "llama_cpp"
) -> None:
    """SmolLM2 on an in-process engine (llama.cpp by default), answering at length."""
    daemon.config.write_text(
        f'[daemon]\nsocket = "{daemon.socket}"\nnode_id = "testnode"\npreset = "long"\n'
        f"shutdown_timeout_s = {shutdown_timeout_s}\n"
        '[audio]\nsource = "none"\n[mqtt]\nbroker = "none"\n'
        f'[backends]\ndefault = ["{backend}"]\n'
        "[backends.mistral_rs]\nenabled = true\nthreads = 1\n"
        "[presets.long]\nmax_tokens = 2000\ntemperature = 0.0\n"
        f'[[models]]\nid = "smollm2"\nsource = {{ path = "{smollm2}" }}\n'
        "context_length = 4096\n"
    )


async def wait_for_state(daemon: Daemon, state: str, timeout_s: float = 60.0) -> None:
    """Ask `status` until the assistant is in `state` (no subscriber: it would outlive the test)."""
    client = await SocketClient.connect(daemon.socket)

    async def poll() -> None:
        while True:
            if (await client.call({"id": "s", "cmd": "status"}))["result"]["state"] == state:
                return
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), timeout_s)
    finally:
        await client.close()


@pytest.mark.parametrize("backend", ["llama_cpp", "mistral_rs"])
async def test_sigterm_during_a_long_in_process_answer_stops_it_and_tells_the_asker(
    backend: str, make_daemon: Callable[..., Daemon], smollm2_path: Path
) -> None:
    # llama.cpp stops even while it reads the prompt; mistral.rs cannot be stopped there, and
    # its thread is left behind: either way the daemon is gone well before the answer would be.
    daemon = make_daemon('broker = "none"', start=False)
    llama_config(daemon, smollm2_path, shutdown_timeout_s=1.0, backend=backend)
    daemon.start()
    client = await SocketClient.connect(daemon.socket)
    await client.send({"id": "long", "cmd": "ask", "text": LONG_QUESTION})
    await wait_for_state(daemon, "thinking")  # llama.cpp is reading the prompt
    daemon.signal(signal.SIGTERM)
    replies = await client.until_done("long", timeout_s=30)
    assert replies[-1]["error"] == {
        "code": "shutting_down",
        "message": "the daemon is stopping; the answer was cut short",
    }
    await client.close()
    # Minutes of work were left: only an engine that stopped lets the daemon exit this soon.
    assert daemon.process.wait(timeout=20) == 0  # type: ignore[union-attr]
    assert "answers still running after 1.0 s are cancelled (1)" in daemon.log
    assert "Traceback" not in daemon.log
    assert not daemon.socket.exists()


async def test_an_mqtt_asker_gets_a_shutting_down_error_when_its_answer_is_stopped(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(
        f'broker = "{mosquitto.url}"', extra="shutdown_timeout_s = 0.3\n", delay_s=0.5
    )
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt, mosquitto.client() as sender:
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/model")
        question = " ".join(["word"] * 40).encode()
        await sender.publish(f"{BASE}/command/ask", b'{"id": "m1", "text": "' + question + b'"}', 1)
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/response/chunk")
        daemon.signal(signal.SIGTERM)
        error = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/error")
        assert error.json() == {
            "id": "m1",
            "code": "shutting_down",
            "message": "the daemon is stopping; the answer was cut short",
        }
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == b"offline")
    assert daemon.process.wait(timeout=10) == 0  # type: ignore[union-attr]
    assert "Traceback" not in daemon.log


async def test_a_second_signal_skips_the_waits_but_removes_the_socket_and_says_offline(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(
        f'broker = "{mosquitto.url}"', extra="shutdown_timeout_s = 60.0\n", delay_s=0.5
    )
    async with listening(mosquitto, [f"{BASE}/status"]) as mqtt:
        await mqtt.wait_for(lambda m: m.payload == b"online")
        watcher = await SocketClient.connect(daemon.socket)  # stays subscribed to the end
        await watcher.send({"id": "w", "cmd": "subscribe"})
        client = await SocketClient.connect(daemon.socket)
        await client.send({"id": "a", "cmd": "ask", "text": " ".join(["word"] * 200)})
        assert await client.receive() == {"id": "a", "chunk": "You"}
        daemon.signal(signal.SIGINT)
        await asyncio.sleep(0.3)
        assert daemon.process.poll() is None  # type: ignore[union-attr]  # waiting for the answer
        daemon.signal(signal.SIGINT)
        replies = await client.until_done("a")
        assert replies[-1]["error"]["code"] == "shutting_down"
        await client.close()
        assert daemon.process.wait(timeout=5) == 1  # type: ignore[union-attr]
        await mqtt.wait_for(lambda m: m.payload == b"offline")
        await watcher.close()
    assert not daemon.socket.exists()
    assert "second SIGINT: exiting now" in daemon.log
    # Said by the daemon itself on its way out, not only by the broker's last will.
    assert "did not end within" not in daemon.log
    assert "Traceback" not in daemon.log
