"""A Wyoming stream is transcribed while it arrives: when the newest partial heard every voiced
sample it is the transcript, and nothing runs after `audio-stop`. Real tiny.en, real Silero VAD;
the clock is the stream's own, so "live" means the audio arrives at the pace of speech.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from daemon.core.config.schema import SttSettings
from daemon.frontends.wyoming.speculation import StreamTranscription
from pipelines.audio import RATE, read_wav
from pipelines.stt import load_transcriber
from pipelines.vad import shared_vad
from pipelines.wake import normalise
from tests.daemon.conftest import ROOT

pytestmark = pytest.mark.integration

AUDIO = ROOT / "fixtures" / "audio"
EXPECTED = json.loads((AUDIO / "manifest.json").read_text())["speech"]
CHUNK = 1024  # what Home Assistant and wyoming-bench send


async def transcription(*, speculative: bool, clock: list[float]) -> StreamTranscription:
    transcriber = await asyncio.to_thread(load_transcriber, SttSettings())
    vad = await asyncio.to_thread(shared_vad) if speculative else None
    return StreamTranscription(
        transcriber,
        asyncio.Lock(),
        vad,
        threshold=0.5,
        partial_interval_ms=1000,
        clock=lambda: clock[0],
    )


def request_then_silence(name: str, silence_s: float) -> np.ndarray:
    return np.concatenate(
        [read_wav(AUDIO / f"{name}.wav"), np.zeros(int(silence_s * RATE), np.float32)]
    )


async def send(
    stream: StreamTranscription,
    audio: np.ndarray,
    *,
    clock: list[float] | None = None,
    settle: bool = False,
) -> None:
    """Feed `audio` in the client's chunks: live when a `clock` is given (it moves with the
    audio), else ahead of real time (it stands still); with `settle`, each partial is done
    before the next chunk comes."""
    for start in range(0, len(audio), CHUNK):
        chunk = audio[start : start + CHUNK]
        if clock is not None:
            clock[0] += len(chunk) / RATE
        await stream.feed(chunk)
        if settle:
            await stream.settled()


async def test_a_partial_that_heard_every_voiced_sample_is_the_transcript() -> None:
    clock = [0.0]
    stream = await transcription(speculative=True, clock=clock)
    audio = request_then_silence("kitchen_lights", 2.5)  # longer than partial_interval_ms
    await send(stream, audio, clock=clock, settle=True)
    heard = await stream.finish()
    assert normalise(heard.text) == normalise(EXPECTED["kitchen_lights.wav"]["expected"])
    assert stream.reused is True
    # One partial started in the silence after the request and heard all of it; with nothing
    # said since, no other ran on the silence that followed.
    after = [p for p in stream.speculation.partials if p.covered >= stream.voiced_end > 0]
    assert len(after) == 1


async def test_a_recording_sent_faster_than_real_time_is_transcribed_once_at_its_end() -> None:
    stream = await transcription(speculative=True, clock=[0.0])  # the clock stands still
    await send(stream, request_then_silence("garage", 0.7), settle=True)
    heard = await stream.finish()
    assert normalise(heard.text) == normalise(EXPECTED["garage.wav"]["expected"])
    assert (stream.reused, stream.speculation.partials) == (False, [])


async def test_without_speculation_the_stream_is_transcribed_at_its_end() -> None:
    clock = [0.0]
    stream = await transcription(speculative=False, clock=clock)
    await send(stream, request_then_silence("weather", 0.7), clock=clock)
    heard = await stream.finish()
    assert normalise(heard.text) == normalise(EXPECTED["weather.wav"]["expected"])
    assert (stream.reused, stream.speculation.partials) == (False, [])


async def test_words_sent_ahead_of_real_time_after_a_partial_are_not_lost() -> None:
    # Live at first: a partial hears "turn on the kitchen lights" in the pause after it. Then the
    # client sends the rest of its buffer at once (ahead of real time, so the VAD is not run on
    # it as it comes): the end still hears the second request, not just the partial's.
    clock = [0.0]
    stream = await transcription(speculative=True, clock=clock)
    await send(stream, request_then_silence("kitchen_lights", 1.5), clock=clock, settle=True)
    assert stream.speculation.partials  # the pause's partial ran
    # A second of silence first: the half second of it within real time's reach is all that
    # could be scored as it came.
    second = np.concatenate([np.zeros(RATE, np.float32), request_then_silence("garage", 0.7)])
    await send(stream, second)  # the clock stands still
    heard = await stream.finish()
    assert stream.reused is False
    assert normalise(EXPECTED["garage.wav"]["expected"]) in normalise(heard.text)


async def test_a_recording_sent_faster_than_real_time_is_not_given_to_the_vad() -> None:
    stream = await transcription(speculative=True, clock=[0.0])  # the clock stands still
    await send(stream, request_then_silence("garage", 0.7))
    # The first half second is within real time's reach; nothing after it was scored.
    assert stream.heard <= RATE // 2 + CHUNK
    assert normalise((await stream.finish()).text) == normalise(EXPECTED["garage.wav"]["expected"])
