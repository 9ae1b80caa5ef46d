"""The CLI as a client of the running daemon (its in-process fallback is in tests/integration)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.daemon.conftest import HELLO_EVENTS, ROOT, TEKTRA, Daemon, SocketClient


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


def test_ask_status_and_models_go_through_the_daemon(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon('broker = "none"')
    asked = tektra(daemon, "ask", "lights off please")
    assert (asked.returncode, asked.stdout, asked.stderr) == (
        0,
        "You said: lights off please\n",
        "",
    )

    status = tektra(daemon, "status")
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    # The daemon counted the answer: the CLI did not answer in-process.
    assert (state["node_id"], state["answers"], state["model"]) == ("testnode", 1, "echo")
    assert state["socket"]["path"] == str(daemon.socket)

    models = tektra(daemon, "models")
    assert models.returncode == 0, models.stderr
    rows = [line.split() for line in models.stdout.splitlines()]
    assert rows[0] == ["ID", "BACKEND", "DEVICE", "CAPABILITIES", "LOADED", "MEMORY", "STATUS"]
    assert rows[1] == ["echo", "recorder", "-", "text", "yes", "100", "MB", "ready"]
    assert rows[2] == ["parrot", "recorder", "-", "text", "no", "100", "MB", "ready"]

    unknown = tektra(daemon, "ask", "hi", "--model", "gpt-9")
    assert unknown.returncode == 1
    assert (
        unknown.stderr == "error [unknown_model]: no model with id 'gpt-9' (models: echo, parrot)\n"
    )
    assert daemon.stop() == 0


def test_status_without_a_daemon_says_how_to_start_one(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        f'[daemon]\nsocket = "{tmp_path / "none.sock"}"\n'
        f'[[models]]\nid = "m"\nsource = {{ path = "{config}" }}\n'
    )
    result = subprocess.run(
        [TEKTRA, "status", "--config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error [no_daemon]: no daemon is listening on {tmp_path}")
    assert result.stderr.endswith("start one with `tektra run`\n")


async def test_events_prints_every_event_as_a_json_line(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon('broker = "none"')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    events = await asyncio.create_subprocess_exec(
        TEKTRA, "events", "--config", str(daemon.config), stdout=asyncio.subprocess.PIPE, env=env
    )
    assert events.stdout is not None
    stdout = events.stdout

    async def line(timeout_s: float = 10.0) -> dict[str, object]:
        event: dict[str, object] = json.loads(await asyncio.wait_for(stdout.readline(), timeout_s))
        return event

    client = await SocketClient.connect(daemon.socket)
    # Mute until `events` shows it: from then on its subscription is live.
    while True:
        await client.call({"id": "m", "cmd": "mute"})
        try:
            assert await line(0.2) == {"event": "microphone", "muted": True}
            break
        except asyncio.TimeoutError:
            continue
    await client.call({"id": 2, "cmd": "ask", "text": "hello"})
    seen: list[dict[str, object]] = []
    while len(seen) < 7:
        event = await line()
        if event["event"] != "microphone":  # mutes still on their way
            seen.append(event)
    assert [(e["event"], e.get("state") or e.get("text")) for e in seen] == HELLO_EVENTS
    assert seen[2] == {"event": "response_chunk", "id": 2, "seq": 0, "text": "You"}
    events.terminate()
    await events.wait()
    await client.close()
    assert daemon.stop() == 0


def test_listen_to_a_file_without_speech_says_it_heard_nothing(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    result = tektra(daemon, "listen", str(ROOT / "fixtures/audio/silence.wav"))
    assert (result.returncode, result.stdout, result.stderr) == (3, "heard nothing\n", "")
    assert daemon.stop() == 0


def test_listen_timeout_is_an_overall_deadline_even_while_events_keep_arriving(
    make_daemon: Callable[..., Daemon],
) -> None:
    # Every answer word takes 2 s: the answer's chunks keep arriving, one every 2 s, for 14 s
    # (each shorter than the timeout, which a per-read timeout would never reach).
    daemon = make_daemon('broker = "none"', delay_s=2.0)
    result = tektra(
        daemon, "listen", str(ROOT / "fixtures/audio/kitchen_lights.wav"), "--timeout", "5"
    )
    assert (result.returncode, result.stderr) == (1, "error [timeout]: no answer within 5 s\n")
    assert "You said" not in result.stdout
    assert daemon.stop() == 0
