"""Barge-in through real audio: Tektra's player speaks into a PulseAudio null sink whose monitor is
the microphone, and a person's "okay nabu" (espeak-ng voices) is played into the same sink with
paplay at several levels while it speaks. The in-process path the daemon runs: Player with its
reference, Microphone, BargeIn. Run in a child process, whose PortAudio sees only our server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import wake_audio
from benchmarks.common import Figure, virtual_microphone
from pipelines.audio import RATE, float_to_wav

LEVELS_DB = [0.0, -6.0, -12.0]
PLAY_S = 100.0  # Tektra speaking, answer after answer
EVERY_S = 6.0  # a person says the wake word this often
CAUGHT_WITHIN_S = 1.5  # after the clip ends (paplay's own start-up delay included)


def run() -> list[Figure]:
    with virtual_microphone() as (pulse, _root):
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.barge_in_live"],
            env=pulse.env, capture_output=True, text=True, timeout=PLAY_S + 120,
        )  # fmt: skip
    if child.returncode != 0:
        raise RuntimeError(f"barge-in live measurement failed:\n{child.stderr[-2000:]}")
    result = json.loads(child.stdout.splitlines()[-1])
    figures = []
    for level in LEVELS_DB:
        hits = result["caught"][str(level)]
        figures.append(
            Figure(
                f"caught over playback through a PulseAudio null sink, person {level:+.0f} dB",
                f"{sum(hits)}/{len(hits)} ({100 * sum(hits) / len(hits):.0f} %)",
                how="the daemon's Player, Microphone and BargeIn; paplay into the same sink",
            )
        )
    figures.append(
        Figure(
            "self barge-in through the null sink",
            str(result["self_wakes"]),
            target="0",
            met=result["self_wakes"] == 0,
            how=f"wakes outside the person's clips in {PLAY_S:.0f} s of Tektra speaking",
        )
    )
    return figures


async def _measure() -> dict[str, object]:
    from daemon.speech.engines import Audio
    from daemon.speech.player import Player
    from pipelines.barge_in import BargeIn
    from pipelines.echo import EchoReference
    from pipelines.microphone import Microphone

    answer = wake_audio.espeak(wake_audio.ANSWER)
    from benchmarks.wake import heard_alone

    voiced = [clip for label, clip in wake_audio.wake_clips() if not label.startswith("piper")]
    people = heard_alone(voiced)
    reference = EchoReference()
    player = Player("auto")
    player.reference = reference
    barge_in = BargeIn(reference, "okay_nabu")
    wakes: list[float] = []
    first_block = asyncio.Event()

    def deliver(block: np.ndarray) -> None:
        first_block.set()
        if player.holding() and barge_in.hear(block) is not None:
            wakes.append(time.monotonic())

    microphone = Microphone("auto", deliver, lambda state: None)
    tasks = [asyncio.create_task(microphone.run()), asyncio.create_task(player.run())]
    await asyncio.wait_for(first_block.wait(), 30)
    for _ in range(int(PLAY_S / (len(answer) / RATE)) + 1):
        await player.play(Audio(answer, RATE))
    started = time.monotonic()
    level_of_tektra = wake_audio.speech_level(answer)
    said: list[tuple[float, float, float]] = []  # (level, start, end)
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(int((PLAY_S - 3.0) / EVERY_S)):
            await asyncio.sleep(max(0.0, started + 3.0 + index * EVERY_S - time.monotonic()))
            level = LEVELS_DB[index % len(LEVELS_DB)]
            clip = people[index % len(people)]
            gain = level_of_tektra / wake_audio.speech_level(clip) * 10 ** (level / 20)
            path = Path(tmp) / f"p{index}.wav"
            path.write_bytes(float_to_wav(np.clip(gain * clip, -1, 1)))
            begin = time.monotonic()
            await asyncio.create_subprocess_exec("paplay", "--device=vsink", str(path))
            said.append((level, begin, begin + len(clip) / RATE + CAUGHT_WITHIN_S))
        await asyncio.sleep(EVERY_S)
    player.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    caught: dict[str, list[bool]] = {str(level): [] for level in LEVELS_DB}
    for level, begin, end in said:
        caught[str(level)].append(any(begin <= t <= end for t in wakes))
    inside = [t for t in wakes if any(b <= t <= e for _, b, e in said)]
    return {"caught": caught, "self_wakes": len(wakes) - len(inside)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_measure())))
