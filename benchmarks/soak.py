"""An hour of listening: whether the daemon's memory stays flat.

A `tektra run` (SmolLM2, MQTT off) listens to a virtual microphone of its own that plays a quiet
room's noise floor, from the first section of `make bench` to the last and on until the hour is
up; its RSS is sampled each minute from the moment its start-up is over. It runs beside the other
sections, so its CPU figure is the machine's busy hour, not an idle figure (the idle section
measures that alone).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import psutil

from benchmarks.common import Figure, Section, virtual_microphone
from benchmarks.service import NOISE_DBFS, daemon_config
from tests.daemon.conftest import Daemon
from tests.pipelines.conftest import Pulse, write_stream

SAMPLE_S = 60.0
WARM_S = 60.0
"""Start-up (Whisper and Silero loading, the first blocks) is over by then: RSS counts from here."""
DRIFT_PERCENT = 2.0
"""Flat: the last 10 minutes' RSS within this of the first 10 minutes'."""


class Soak:
    """A listening daemon sampled in the background; `section()` waits for the hour to end."""

    def __init__(self, duration_s: float) -> None:
        self.duration_s = duration_s
        self.samples: list[tuple[float, int]] = []
        """(seconds since start, RSS bytes), one per minute after the warm-up."""
        self._stack = ExitStack()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._cpu = 0.0

    def __enter__(self) -> Soak:
        pulse, root = self._stack.enter_context(virtual_microphone())
        noise = np.random.default_rng(1).standard_normal(60 * 16000) * 10 ** (NOISE_DBFS / 20)
        room = write_stream(root / "room.wav", noise.astype(np.float32))
        socket = Path(tempfile.mkdtemp(prefix="tks", dir="/tmp")) / "t.sock"
        daemon = Daemon(daemon_config(root, socket, "auto"), socket, root, env=pulse.env)
        self._stack.callback(daemon.stop)
        daemon.start()
        assert daemon.process is not None
        process = psutil.Process(daemon.process.pid)
        self._started = time.monotonic()
        self._thread = threading.Thread(
            target=self._sample, args=(process, pulse, room), name="soak", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._stack.close()

    def _sample(self, process: psutil.Process, pulse: Pulse, room: Path) -> None:
        player: subprocess.Popen[bytes] | None = None
        next_sample = self._started + WARM_S
        cpu_start: float | None = None
        try:
            while not self._stop.wait(1.0):
                if player is None or player.poll() is not None:
                    player = pulse.play(room)  # the room's noise, over and over
                now = time.monotonic()
                if now >= next_sample:
                    times = process.cpu_times()
                    if cpu_start is None:
                        cpu_start = times.user + times.system
                    self._cpu = times.user + times.system - cpu_start
                    self.samples.append((now - self._started, process.memory_info().rss))
                    next_sample += SAMPLE_S
        finally:
            if player is not None:
                player.terminate()
                player.wait(10)

    def section(self) -> Section:
        """Once the hour is up: the RSS over it."""
        left = self._started + self.duration_s + 1.0 - time.monotonic()
        if left > 0:
            print(f"soak: {left / 60:.0f} min of the soak left", flush=True)
            time.sleep(left)
        self._stop.set()
        rss = ", ".join(f"{t / 60:.0f} min {b / 2**20:.1f} MB" for t, b in self.samples)
        print(f"soak: RSS {rss}", file=sys.stderr)
        section = Section(f"Memory over {self.duration_s / 60:.0f} minutes of listening")
        if len(self.samples) < 2:
            section.notes.append("- No measurement: the soak ended before two samples.")
            return section
        first_t, last_t = self.samples[0][0], self.samples[-1][0]
        window = max(1, len(self.samples) // 6)
        first = float(np.median([rss for _, rss in self.samples[:window]]))
        last = float(np.median([rss for _, rss in self.samples[-window:]]))
        peak = max(rss for _, rss in self.samples)
        drift = (last - first) / first * 100
        span_min = (last_t - first_t) / 60
        cpu = self._cpu / (last_t - first_t) * 100
        how = f"{len(self.samples)} samples, one a minute, over {span_min:.0f} min after start-up"
        section.figures += [
            Figure(
                "RSS, first → last tenth", f"{first / 2**20:.1f} → {last / 2**20:.1f} MB", how=how
            ),
            Figure("RSS, highest", f"{peak / 2**20:.1f} MB", how="any sample"),
            Figure(
                "RSS drift while listening",
                f"{drift:+.2f} %",
                f"within ±{DRIFT_PERCENT:.0f} %",
                abs(drift) <= DRIFT_PERCENT,
                "median of the last tenth of the samples against that of the first",
            ),
            Figure(
                "CPU over the whole soak",
                f"{cpu:.2f} % of one core",
                how="listening to a -60 dBFS noise floor while the other sections ran beside it",
            ),
        ]
        return section
