"""Acting on the home: request → the device's command topic receives the command.

`tektra run` (SmolLM2 loaded, never asked: intents answer first) on a real mosquitto with a
simulated Zigbee2MQTT bulb (a real MQTT client in this process). Typed: an `ask` over the socket,
timed from sending it to the bulb receiving its command. Spoken: the fixture "turn on the kitchen
lights" pushed as PCM (`push_audio` with `end`, so no silence hangover), timed from the end of the
audio to the bulb receiving its command: speech-to-text, matching and publishing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import time
import wave
from pathlib import Path

from benchmarks.common import AUDIO, Figure, Section, median
from benchmarks.service import MODEL
from tests.daemon.conftest import Daemon, Mosquitto, free_port
from tests.daemon.devices import running, z2m_light


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
    light = z2m_light("Kitchen Light", "0x000b57fffec6a5b2", area="kitchen")
    received: list[float] = []
    arrived = asyncio.Event()
    obey = light.obeys["zigbee2mqtt/Kitchen Light/set"]

    def timed(payload: str) -> list[tuple[str, str]]:
        received.append(time.perf_counter())
        arrived.set()
        return obey(payload)

    light.obeys["zigbee2mqtt/Kitchen Light/set"] = timed
    with wave.open(str(AUDIO / "kitchen_lights.wav")) as clip:  # 16 kHz mono s16
        pcm = clip.readframes(clip.getnframes())
    typed: list[float] = []
    spoken: list[float] = []

    async def until_received(count: int) -> float:
        while len(received) < count:
            arrived.clear()
            await arrived.wait()
        return received[count - 1]

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
        ],
    )


if __name__ == "__main__":
    from benchmarks.report import markdown

    print(markdown([run()], None, "python -m benchmarks.home"))
