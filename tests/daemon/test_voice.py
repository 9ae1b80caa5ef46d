"""Speech in, answer out: a WAV pushed as PCM through the socket (`tektra listen`) runs the real
voice pipeline (Silero VAD, Whisper tiny.en), and the transcript and the answer appear on MQTT."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipelines.audio import float_to_pcm
from tests.daemon.conftest import ROOT, TEKTRA, Daemon, Mosquitto, SocketClient, listening

# The pipelines' own helpers: the PulseAudio server and the speech fixtures.
from tests.pipelines.conftest import Pulse, clip, expected, silence, write_stream

pytestmark = pytest.mark.integration

BASE = "tektra/testnode"
MANIFEST = json.loads((ROOT / "fixtures/audio/manifest.json").read_text())


def words(text: str) -> str:
    """Whisper's capitals and punctuation aside, the words."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


async def _listen(daemon: Daemon, wav: Path) -> str:
    """`tektra listen WAV` against `daemon`; what it printed (must succeed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    listen = await asyncio.create_subprocess_exec(
        TEKTRA, "listen", str(wav), "--config", str(daemon.config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(listen.communicate(), 120)
    assert listen.returncode == 0, err.decode()
    return out.decode()


async def test_a_wav_pushed_through_the_socket_gives_transcript_and_answer_on_mqtt(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"')
    wav = ROOT / "fixtures/audio/kitchen_lights.wav"
    expected = words(MANIFEST["speech"]["kitchen_lights.wav"]["expected"])
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt:
        heard, answer = (await _listen(daemon, wav)).splitlines()
        assert heard.startswith("heard: ") and words(heard) == f"heard {expected}"
        assert words(answer) == f"you said {expected}"

        transcript = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/transcript")
        said = transcript.json()
        assert said["id"].startswith("voice-") and words(said["text"]) == expected
        response = await mqtt.wait_for(
            lambda m: m.topic == f"{BASE}/response" and m.json()["id"] == said["id"]
        )
        assert response.json()["text"] == f"You said: {said['text']}"
        assert set(response.json()["timings_ms"]) >= {"stt", "first_chunk", "total"}
        states = mqtt.payloads(f"{BASE}/state")
        for state in ("listening", "transcribing", "thinking", "responding"):
            assert state in states, states
    assert daemon.stop() == 0


async def test_a_muted_microphone_hears_nothing(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt, mosquitto.client() as sender:
        # The retained model comes after the daemon subscribed to its commands.
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/model")
        await sender.publish(f"{BASE}/command/mute", b'{"id": "m"}', 1)
        reply = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/reply")
        assert reply.json() == {"id": "m", "command": "mute", "result": {"muted": True}}
        listen = await asyncio.create_subprocess_exec(
            TEKTRA,
            "listen",
            str(ROOT / "fixtures/audio/heating.wav"),
            "--config",
            str(daemon.config),
            "--timeout",
            "8",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(listen.communicate(), 60)
        # Muted, the pushed audio is discarded: it held no utterance, and `listen` says so.
        assert (listen.returncode, out, err) == (3, b"heard nothing\n", b"")
        assert mqtt.on(f"{BASE}/transcript") == [] and mqtt.on(f"{BASE}/response") == []
        assert mqtt.payloads(f"{BASE}/microphone")[-1] == "OFF"
    assert daemon.stop() == 0


async def test_a_lost_microphone_is_a_device_state_and_answers_still_end_idle(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"', audio="no-such-microphone", start=False)
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt:
        daemon.start()
        await mqtt.wait_until(lambda: mqtt.payloads(f"{BASE}/microphone")[-1:] == ["OFF"])
        client = await SocketClient.connect(daemon.socket)
        status = (await client.call({"id": 1, "cmd": "status"}))["result"]
        assert status["state"] == "idle"
        assert status["problems"]["microphone"].startswith("microphone lost: ")
        answer = await client.call({"id": 2, "cmd": "ask", "text": "still here"})
        assert answer["result"]["text"] == "You said: still here"
        # The assistant rests `idle`: the missing microphone is the device's state, not its own.
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/response")
        await mqtt.wait_until(lambda: mqtt.payloads(f"{BASE}/state")[-1:] == ["idle"])
        assert mqtt.payloads(f"{BASE}/state")[-3:] == ["thinking", "responding", "idle"]
        assert "error" not in mqtt.payloads(f"{BASE}/state")
        await client.close()
    assert daemon.stop() == 0


async def test_the_next_utterance_is_transcribed_while_the_previous_answer_is_still_streaming(
    make_daemon: Callable[..., Daemon],
) -> None:
    # Every word of an answer takes a second: "You said: Turn on the kitchen lights." takes 7 s,
    # while the second request was said 1.5 s after the first one ended.
    daemon = make_daemon('broker = "none"', delay_s=1.0)
    watcher = await SocketClient.connect(daemon.socket)
    await watcher.send({"id": "w", "cmd": "subscribe"})
    assert (await watcher.receive())["result"] == {"subscribed": True}
    speech = np.concatenate(
        [silence(0.5), clip("kitchen_lights"), silence(1.5), clip("garage"), silence(1.5)]
    )
    pusher = await SocketClient.connect(daemon.socket)
    pcm = base64.b64encode(float_to_pcm(speech)).decode()
    push = {"id": "p", "cmd": "push_audio", "pcm": pcm, "sample_rate": 16000, "end": True}
    assert "result" in await pusher.call(push)
    seen: list[tuple[str, str, str]] = []
    dropped = []
    while [kind for kind, _, _ in seen].count("response") < 2:
        event = await watcher.receive(60)
        kind, data = event.get("event"), event.get("data", {})
        if kind in ("transcript", "response"):
            seen.append((kind, data["id"], words(data["text"])))
        if kind == "pipeline" and data["name"] == "FramesDropped":
            dropped.append(data)
    first, second = (request_id for kind, request_id, _ in seen if kind == "transcript")
    lights, garage = words(expected("kitchen_lights")), words(expected("garage"))
    assert seen == [
        ("transcript", first, lights),
        ("transcript", second, garage),  # heard while the first answer was still streaming
        ("response", first, f"you said {lights}"),
        ("response", second, f"you said {garage}"),
    ]
    assert dropped == []
    await pusher.close()
    await watcher.close()
    assert daemon.stop() == 0


async def test_speech_played_into_the_virtual_microphone_gives_transcript_and_answer_on_mqtt(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto, pulse: Pulse, tmp_path: Path
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"', audio="auto", start=False)
    daemon.env.update(XDG_RUNTIME_DIR=pulse.env["XDG_RUNTIME_DIR"], HOME=pulse.env["HOME"])
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt:
        daemon.start()
        watcher = await SocketClient.connect(daemon.socket)
        await watcher.send({"id": "w", "cmd": "subscribe"})
        while True:  # until the microphone is open
            event = await watcher.receive(30)
            data = event.get("data", {})
            if data.get("name") == "DeviceState" and data["data"]["state"] == "open":
                break
        speech = write_stream(
            tmp_path / "padded.wav", silence(0.3), clip("kitchen_lights"), silence(1.0)
        )
        player = pulse.play(speech)
        await asyncio.to_thread(player.wait, 30)
        transcript = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/transcript", 60)
        assert words(transcript.json()["text"]) == words(expected("kitchen_lights"))
        response = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/response", 60)
        assert response.json()["id"] == transcript.json()["id"]
        assert response.json()["text"] == f"You said: {transcript.json()['text']}"
        await watcher.close()
    assert daemon.stop() == 0


@pytest.mark.parametrize(("follow_up_s", "continues"), [(60.0, True), (0.0, False)])
async def test_a_request_inside_the_follow_up_window_continues_the_conversation(
    make_daemon: Callable[..., Daemon], follow_up_s: float, continues: bool
) -> None:
    # The same words twice: inside the window the model sees the first exchange again (a longer
    # prompt); after it, a fresh conversation (the same prompt as the first time).
    daemon = make_daemon('broker = "none"', extra=f"[audio.wake]\nfollow_up_s = {follow_up_s}\n")
    watcher = await SocketClient.connect(daemon.socket)
    await watcher.send({"id": "w", "cmd": "subscribe"})
    wav = ROOT / "fixtures/audio/heating.wav"
    prompts = []
    for _ in range(2):
        await _listen(daemon, wav)
        while (event := await watcher.receive(60)).get("event") != "response":
            pass
        prompts.append(event["data"]["prompt_tokens"])
    await watcher.close()
    assert (prompts[1] > prompts[0]) is continues, prompts
    if not continues:
        assert prompts[1] == prompts[0]
    assert daemon.stop() == 0
