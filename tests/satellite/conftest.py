"""Real peers for the satellites' tests: mosquitto, the hub as `tektra run`, and satellites as
`tektra satellite` subprocesses, each with a PulseAudio server of its own whose null sink
`vsink` is its room's air (its monitor is the microphone) and whose null sink `speaker` is its
loudspeaker (recorded from its monitor).

Every process started here is stopped here, by its own handle; nothing else is touched.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pipelines.audio import RATE, float_to_wav, pcm_to_float
from tests.daemon.conftest import (  # noqa: F401  (fixtures, used by name)
    ROOT,
    TEKTRA,
    Daemon,
    Mosquitto,
    make_daemon,
    mosquitto,
    plugin_site,
    pulse,
    short_dir,
)
from tests.pipelines.conftest import Pulse, clip, silence

NODE = "testnode"
HUB_TTS = 'engine = "espeak"\noutput = "none"'
"""The hub speaks with espeak-ng (quick) and plays nothing itself: satellites speak its answers."""


def topic(satellite: str, sub: str) -> str:
    return f"tektra/{NODE}/satellite/{satellite}/{sub}"


def start_hub(make: Callable[..., Daemon], broker: Mosquitto) -> Daemon:
    return make(f'broker = "{broker.url}"', tts=HUB_TTS)


async def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll `condition` (a log line: nothing to be woken by) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


def padded(tmp: Path, name: str, seconds: float = 1.0) -> Path:
    """A fixture clip with silence around it (a fresh `paplay` stream may swallow its start)."""
    path = tmp / f"{name}-padded.wav"
    path.write_bytes(float_to_wav(np.concatenate([silence(seconds), clip(name), silence(seconds)])))
    return path


@dataclass
class Room:
    """One room: its PulseAudio, its satellite process, and a recording of its loudspeaker."""

    name: str
    pulse: Pulse
    workdir: Path
    satellite: subprocess.Popen[bytes] | None = None
    recorder: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.workdir / "satellite.log"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def recording(self) -> Path:
        return self.workdir / "speaker.raw"

    def env(self) -> dict[str, str]:
        # libpulse takes these as the client's default devices: the satellite's `auto` input is
        # the room's air, its `auto` output the room's loudspeaker.
        return {**self.pulse.env, "PULSE_SINK": "speaker", "PULSE_SOURCE": "vsink.monitor"}

    def start(self, hub_url: str, *, flags: bool = True) -> None:
        """Start its satellite, told who it is by flags, or (`flags=False`) by its models.toml
        alone, as a service starts it."""
        subprocess.run(
            ["pactl", "load-module", "module-null-sink", "sink_name=speaker"],
            env=self.pulse.env, check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        with self.recording.open("wb") as out:
            self.recorder = subprocess.Popen(
                ["parec", "-d", "speaker.monitor", "--rate=16000", "--channels=1",
                 "--format=s16le", "--latency-msec=50"],
                stdout=out, env=self.pulse.env,
            )  # fmt: skip
        config = self.workdir / "satellite.toml"
        text = '[daemon]\nlog_level = "info"\n[audio.wake]\nfollow_up_s = 0.0\n'
        env = {**self.env(), "PYTHONPATH": str(ROOT), **self.extra_env}
        args = [TEKTRA, "satellite", "--config", str(config)]
        if flags:
            args += ["--hub", hub_url, "--id", self.name.lower(), "--room", self.name,
                     "--node", NODE]  # fmt: skip
        else:
            text = text.replace("[daemon]\n", f'[daemon]\nnode_id = "{NODE}"\n')
            text += f'[mqtt]\nbroker = "{hub_url}"\n'
            text += f'[satellite]\nid = "{self.name.lower()}"\nroom = "{self.name}"\n'
        config.write_text(text)
        with self.log_path.open("ab") as log:
            self.satellite = subprocess.Popen(args, stdout=log, stderr=log, env=env)

    def wait_listening(self, timeout_s: float = 60.0) -> None:
        """Until its microphone delivers audio and it is connected to the broker."""
        deadline = time.monotonic() + timeout_s
        assert self.satellite is not None
        while time.monotonic() < deadline:
            if self.satellite.poll() is not None:
                raise AssertionError(f"satellite {self.name} exited:\n{self.log}")
            log = self.log
            if "microphone auto: open" in log and "connected to the MQTT broker" in log:
                return
            time.sleep(0.1)
        raise TimeoutError(f"satellite {self.name} did not start listening:\n{self.log}")

    def say(self, wav: Path, volume: float = 1.0) -> subprocess.Popen[bytes]:
        """Play `wav` into the room's air (its microphone hears it)."""
        level = f"--volume={round(volume * 65536)}"
        return subprocess.Popen(["paplay", "--device=vsink", level, str(wav)], env=self.pulse.env)

    def heard_from_speaker(self) -> np.ndarray:
        """What its loudspeaker played so far, as 16 kHz float samples."""
        data = self.recording.read_bytes()
        return pcm_to_float(data[: len(data) - len(data) % 2])

    def stop(self) -> None:
        for process in (self.satellite, self.recorder):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def new_pulse(directory: Path) -> Pulse:
    runtime, home = directory / "pulse-runtime", directory / "pulse-home"
    runtime.mkdir(mode=0o700, parents=True)
    home.mkdir()
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)}
    env.pop("PULSE_SERVER", None)
    server = Pulse(env, runtime)
    server.start()
    return server


@pytest.fixture
def rooms(tmp_path: Path) -> Iterator[Callable[[str], Room]]:
    """Rooms of this test's own, each with its PulseAudio server; stopped at the end."""
    made: list[Room] = []

    def make(name: str) -> Room:
        workdir = tmp_path / f"room-{name.lower()}"
        workdir.mkdir()
        room = Room(name, new_pulse(workdir), workdir)
        made.append(room)
        return room

    yield make
    for room in made:
        room.stop()
        room.pulse.stop()


__all__ = ["RATE"]
