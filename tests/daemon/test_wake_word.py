"""The wake word through a running daemon: pushed speech without it is never transcribed; "okay
nabu, turn on the kitchen light" becomes the query "turn on the kitchen light", and the wake is a
`WakeDetected` pipeline event on the bus."""

from __future__ import annotations

import asyncio
import base64
import os
import re
from collections.abc import Callable

import numpy as np
import pytest

from pipelines.audio import float_to_pcm
from tests.daemon.conftest import ROOT, TEKTRA, Daemon, SocketClient
from tests.pipelines.conftest import clip, silence

pytestmark = pytest.mark.integration

MICRO = '[audio.wake]\nengine = "micro"\nmodel = "okay_nabu"\nfollow_up_s = 0.0\n'


def words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


async def test_only_the_request_after_okay_nabu_is_transcribed_and_answered(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', extra=MICRO)
    watcher = await SocketClient.connect(daemon.socket)
    await watcher.send({"id": "w", "cmd": "subscribe"})
    assert (await watcher.receive())["result"] == {"subscribed": True}
    speech = np.concatenate(
        [silence(0.5), clip("radio"), silence(1.5), clip("kitchen_lights"), silence(1.5),
         clip("okay_nabu_kitchen_joe"), silence(1.5)]
    )  # fmt: skip
    pusher = await SocketClient.connect(daemon.socket)
    pcm = base64.b64encode(float_to_pcm(speech)).decode()
    push = {"id": "p", "cmd": "push_audio", "pcm": pcm, "sample_rate": 16000, "end": True}
    assert "result" in await pusher.call(push)
    seen: list[tuple[str, str]] = []
    while not seen or seen[-1][0] != "response":
        event = await watcher.receive(120)
        kind, data = event.get("event"), event.get("data", {})
        if kind in ("transcript", "response"):
            seen.append((kind, words(data["text"])))
        elif kind == "pipeline" and data["name"] == "WakeDetected":
            seen.append(("wake", data["data"]["name"]))
        elif kind == "pipeline" and data["name"] == "TranscriptIgnored":
            seen.append(("ignored", data["data"]["reason"]))
    assert seen == [
        ("ignored", "no_wake"),  # "turn on the radio": never transcribed
        ("ignored", "no_wake"),  # "turn on the kitchen lights": neither
        ("wake", "okay_nabu"),
        ("transcript", "turn on the kitchen light"),  # the wake word's audio cut off
        ("response", "you said turn on the kitchen light"),
    ]
    await pusher.close()
    await watcher.close()
    assert daemon.stop() == 0


async def _listen(daemon: Daemon, name: str) -> tuple[int | None, str]:
    """`tektra listen` of a fixture against `daemon`: its exit status and what it printed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    wav = ROOT / f"fixtures/audio/{name}.wav"
    listen = await asyncio.create_subprocess_exec(
        TEKTRA, "listen", str(wav), "--config", str(daemon.config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(listen.communicate(), 120)
    return listen.returncode, out.decode()


async def test_tektra_listen_says_when_no_wake_word_was_heard(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', extra=MICRO)
    assert await _listen(daemon, "kitchen_lights") == (1, "not transcribed: no wake word heard\n")
    status, printed = await _listen(daemon, "okay_nabu_kitchen_espeak")
    assert status == 0
    assert [words(line) for line in printed.splitlines()] == [
        "heard turn on the kitchen light",
        "you said turn on the kitchen light",
    ]
    assert daemon.stop() == 0
