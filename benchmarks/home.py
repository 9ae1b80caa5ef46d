"""Acting on the home: request → the device's command topic receives the command.

`tektra run` (SmolLM2 loaded, never asked: intents answer first) on a real mosquitto with a
simulated Zigbee2MQTT bulb (a real MQTT client in this process). Typed: an `ask` over the socket,
timed from sending it to the bulb receiving its command. Spoken: the fixture "turn on the kitchen
lights" pushed as PCM (`push_audio` with `end`, so no silence hangover), timed from the end of the
audio to the bulb receiving its command: speech-to-text, matching and publishing. From the
microphone: the same clip played into a PulseAudio virtual microphone that a second daemon listens
to, timed from the clip's last voiced sample (as the sink recorded it) to the bulb receiving its
command: the whole way, hangover included. Beside it, clip by clip, Home Assistant's pipeline
built from its own pieces (benchmarks.ha_pipeline) listens to a microphone of its own and turns
the same bulb on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from benchmarks.common import (
    AUDIO,
    Figure,
    Section,
    SinkRecorder,
    heard_in_recording,
    median,
    read_wav,
    virtual_microphone,
)
from benchmarks.ha_pipeline import DefaultAgent, listen
from benchmarks.service import MODEL
from benchmarks.stt import THREADS, start_wyoming
from daemon.core.config.schema import SttSettings
from pipelines.stt import model_dir
from tests.daemon.conftest import Daemon, Mosquitto, free_port
from tests.daemon.devices import Device, running, z2m_light
from tests.pipelines.conftest import Pulse, silence, write_stream


def _timed_light(received: list[float], arrived: asyncio.Event) -> Device:
    """The kitchen bulb, noting when each command reaches it."""
    light = z2m_light("Kitchen Light", "0x000b57fffec6a5b2", area="kitchen")
    obey = light.obeys["zigbee2mqtt/Kitchen Light/set"]

    def timed(payload: str) -> list[tuple[str, str]]:
        received.append(time.perf_counter())
        arrived.set()
        return obey(payload)

    light.obeys["zigbee2mqtt/Kitchen Light/set"] = timed
    return light


async def _received(received: list[float], arrived: asyncio.Event, count: int) -> float:
    """When the `count`th command reached the bulb."""
    while len(received) < count:
        arrived.clear()
        await arrived.wait()
    return received[count - 1]


def _config(work: Path, socket: Path, broker: str) -> Path:
    path = work / "models.toml"
    path.write_text(
        f'[daemon]\nsocket = "{socket}"\npreset = "fast"\n[audio]\nsource = "none"\n'
        f'[stt]\nspeculative = false\n[mqtt]\nbroker = "{broker}"\n' + MODEL
    )
    return path


async def _request(socket: Path, request: dict[str, object]) -> None:
    reader, writer = await asyncio.open_unix_connection(str(socket), limit=2**24)
    writer.write((json.dumps(request) + "\n").encode())
    await writer.drain()
    await reader.readline()
    writer.close()
    await writer.wait_closed()


async def _measure(socket: Path, broker: Mosquitto, rounds: int) -> tuple[list[float], list[float]]:
    received: list[float] = []
    arrived = asyncio.Event()
    light = _timed_light(received, arrived)
    with wave.open(str(AUDIO / "kitchen_lights.wav")) as clip:  # 16 kHz mono s16
        pcm = clip.readframes(clip.getnframes())
    typed: list[float] = []
    spoken: list[float] = []

    def until_received(count: int) -> Coroutine[Any, Any, float]:
        return _received(received, arrived, count)

    async with running(broker.client(), [light]):
        await asyncio.sleep(2.0)  # discovery and state reach the daemon
        for n in range(rounds):
            for text in ("turn on the kitchen light", "turn off the kitchen light"):
                started = time.perf_counter()
                asyncio.get_running_loop().create_task(
                    _request(socket, {"id": n, "cmd": "ask", "text": text})
                )
                typed.append(await until_received(len(received) + 1) - started)
                await asyncio.sleep(0.2)
            request = {"id": n, "cmd": "push_audio", "pcm": base64.b64encode(pcm).decode()}
            request["end"] = True
            count = len(received) + 1
            started = time.perf_counter()
            await _request(socket, request)  # the reply comes once the audio is taken
            spoken.append(await asyncio.wait_for(until_received(count), 60) - started)
            await _request(socket, {"id": n, "cmd": "ask", "text": "turn off the kitchen light"})
            await asyncio.sleep(0.2)
    return typed, spoken


async def _by_microphone(
    socket: Path,
    broker: Mosquitto,
    pulses: tuple[Pulse, Pulse],
    stt_port: int,
    work: Path,
    rounds: int,
    misses: dict[str, list[int]],
) -> tuple[list[float], list[float]]:
    """Tektra and HA's pipeline, alternating clip by clip, each on its own microphone."""
    received: list[float] = []
    arrived = asyncio.Event()
    light = _timed_light(received, arrived)
    clip = read_wav(AUDIO / "kitchen_lights.wav")
    wav = write_stream(work / "kitchen.wav", silence(0.3), clip)
    agent = DefaultAgent({"Kitchen Light": "kitchen"})
    times: dict[str, list[float]] = {"tektra": [], "ha": []}
    async with (
        running(broker.client(), [light]),
        broker.client() as home_assistant,  # HA's MQTT integration, connected all along
        SinkRecorder(pulses[0]) as ear,
        SinkRecorder(pulses[1]) as ha_ear,
    ):

        async def ha_side() -> subprocess.Popen[bytes]:
            heard = await listen(ha_ear, pulses[1], stt_port, wav)
            for name in agent.turn_on(heard.text):
                await home_assistant.publish(f"zigbee2mqtt/{name}/set", b'{"state": "ON"}', 1)
            return heard.player

        async def tektra_side() -> subprocess.Popen[bytes]:
            return pulses[0].play(wav)

        await asyncio.sleep(3.0)  # discovery reaches the daemon; its microphone delivers audio
        for n in range(rounds + 1):  # the first is a warm-up
            for side, recorder, play in (("tektra", ear, tektra_side), ("ha", ha_ear, ha_side)):
                count, start = len(received) + 1, recorder.count
                player = None
                try:
                    async with asyncio.timeout(30):
                        player = await play()
                        at = await _received(received, arrived, count)
                except TimeoutError:  # misheard (Tektra: answered by the model): no command
                    print(f"home bench: {side}: no command in round {n}", file=sys.stderr)
                    misses[side].append(n)
                    continue
                finally:
                    if player is not None:
                        await asyncio.to_thread(player.wait, 30)
                eos, _ = heard_in_recording(recorder.audio(start), clip)
                if n:
                    times[side].append(at - recorder.clock(start + eos))
                off = {"id": n, "cmd": "ask", "text": "turn off the kitchen light"}
                await _request(socket, off)
                await asyncio.sleep(1.0)
    return times["tektra"], times["ha"]


def from_microphone(rounds: int, misses: dict[str, list[int]]) -> tuple[list[float], list[float]]:
    """End of speech → command published: the daemon listening to a virtual microphone, and HA's
    pipeline listening to another."""
    with virtual_microphone() as (pulse, root), virtual_microphone() as (ha_pulse, _):
        broker = Mosquitto(root, free_port())
        broker.start()
        socket = Path(tempfile.mkdtemp(prefix="tkm", dir="/tmp")) / "t.sock"
        config = root / "models.toml"
        config.write_text(
            f'[daemon]\nsocket = "{socket}"\npreset = "fast"\n[audio]\nsource = "auto"\n'
            f"[stt]\nthreads = {THREADS}\n"
            f'[audio.wake]\nfollow_up_s = 0\n[tts]\nengine = "none"\n'
            f'[mqtt]\nbroker = "{broker.url}"\n' + MODEL
        )
        daemon = Daemon(config, socket, root, env=pulse.env)
        stt_process, stt_port = start_wyoming(model_dir(SttSettings(threads=THREADS)), root)
        try:
            daemon.start()
            return asyncio.run(
                _by_microphone(socket, broker, (pulse, ha_pulse), stt_port, root, rounds, misses)
            )
        finally:
            daemon.stop()
            stt_process.terminate()
            stt_process.wait(10)
            broker.stop()


def run(rounds: int = 5) -> Section:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        broker = Mosquitto(root, free_port())
        broker.start()
        socket = Path(tempfile.mkdtemp(prefix="tkh", dir="/tmp")) / "t.sock"
        daemon = Daemon(_config(root, socket, broker.url), socket, root)
        try:
            daemon.start()
            typed, spoken = asyncio.run(_measure(socket, broker, rounds))
        finally:
            daemon.stop()
            broker.stop()
    misses: dict[str, list[int]] = {"tektra": [], "ha": []}
    heard, ha_heard = from_microphone(rounds, misses)
    heard, ha_heard = heard or [float("nan")], ha_heard or [float("nan")]
    ratio = median(heard) / median(ha_heard)
    how = (
        "{} × end of speech (recorded) → the bulb's command topic receives it; "
        "{} times no command came (misheard)"
    )
    return Section(
        "Acting on the home: request → device command published",
        [
            Figure(
                "typed (p50)",
                f"{median(typed) * 1000:.0f} ms",
                how=f"{len(typed)} asks over the socket → the bulb's command topic receives it",
            ),
            Figure(
                "spoken (p50)",
                f"{median(spoken) * 1000:.0f} ms",
                how=f"{len(spoken)} × end of pushed speech → the bulb's command topic receives it",
            ),
            Figure(
                "spoken into the microphone (p50)",
                f"{median(heard) * 1000:.0f} ms",
                "≤ 500 ms",
                median(heard) <= 0.5,
                how.format(len(heard), len(misses["tektra"])),
            ),
            Figure(
                "spoken into the microphone, HA pipeline (p50)",
                f"{median(ha_heard) * 1000:.0f} ms",
                how=how.format(len(ha_heard), len(misses["ha"]))
                + "; its segmenter, wyoming-faster-whisper, hassil with home-assistant-intents",
            ),
            Figure(
                "device command: Tektra / HA",
                f"{ratio:.2f}",
                "< 1",
                ratio < 1,
                "p50 / p50, the two alternating clip by clip in the same run",
            ),
        ],
    )


if __name__ == "__main__":
    from benchmarks.report import markdown

    print(markdown([run()], None, "python -m benchmarks.home"))
