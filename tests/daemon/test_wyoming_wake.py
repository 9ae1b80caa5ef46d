"""The wake-word engine over Wyoming, driven as Home Assistant's Wyoming wake word drives it:
`detect` with the model names, the audio in chunks, and the first event back is a `detection`
(the model's name) or, at `audio-stop`, `not-detected`; against a real `tektra run`."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable
from pathlib import Path

import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop, wav_to_chunks
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.wake import Detect, Detection, NotDetected

from tests.daemon.conftest import Daemon
from tests.daemon.test_wyoming import AUDIO, exchange, wyoming_daemon

MODELS = ["okay_nabu", "hey_jarvis", "hey_mycroft", "alexa"]


def detect_events(path: Path, names: list[str] | None, at_ms: int = 0) -> list[Event]:
    """What Home Assistant's Wyoming wake word sends; its chunks' timestamps begin at `at_ms`."""
    with wave.open(str(path), "rb") as wav:
        chunks = wav_to_chunks(wav, 1024, timestamp=at_ms, start_event=True, stop_event=True)
        audio = [e.event() for e in chunks]
    return [Detect(names=names).event(), *audio]


async def test_describe_lists_the_four_wake_word_models(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    info = Info.from_event(await exchange(port, Describe().event()))
    assert [p.name for p in info.wake] == ["tektra"]
    models = info.wake[0].models
    assert [(m.name, m.phrase, m.languages) for m in models] == [
        (name, name.replace("_", " "), ["en"]) for name in MODELS
    ]
    assert daemon.stop() == 0


@pytest.mark.parametrize("recording", ["okay_nabu_joe", "okay_nabu_kitchen_espeak"])
async def test_okay_nabu_in_the_audio_is_a_detection_named_okay_nabu(
    make_daemon: Callable[..., Daemon], recording: str
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    events = detect_events(AUDIO / f"{recording}.wav", ["okay_nabu"], at_ms=5000)
    reply = await exchange(port, *events)
    detection = Detection.from_event(reply)
    assert reply.type == "detection"
    assert detection.name == "okay_nabu"
    # On the client's clock: its chunks began at 5 s, and "okay nabu" is said in the first 2 s.
    assert isinstance(detection.timestamp, int) and 5000 < detection.timestamp < 7000
    assert daemon.stop() == 0


async def test_audio_without_the_wake_word_is_not_detected_at_audio_stop(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    plain = await exchange(port, *detect_events(AUDIO / "kitchen_lights.wav", None))
    assert NotDetected.is_type(plain.type)
    # "okay nabu" is not "hey jarvis": only the models asked for are listened for.
    other = await exchange(port, *detect_events(AUDIO / "okay_nabu_joe.wav", ["hey_jarvis"]))
    assert NotDetected.is_type(other.type)
    assert daemon.stop() == 0


async def test_an_unknown_wake_word_model_is_refused_by_name_and_its_audio_is_not_listened_to(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    known = "okay_nabu, hey_jarvis, hey_mycroft, alexa"
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for event in detect_events(AUDIO / "okay_nabu_joe.wav", ["hey_tektra"]):
            await client.write_event(event)
        replies = [await asyncio.wait_for(client.read_event(), 60) for _ in range(2)]
    errors = [Error.from_event(reply) for reply in replies if reply is not None]
    # Its audio is not listened to with another model: the error again at audio-stop.
    assert [(e.code, e.text) for e in errors] == [
        ("bad_request", f"detect: unknown wake word model(s) hey_tektra ({known})"),
        ("bad_request", f"no detection: detect: unknown wake word model(s) hey_tektra ({known})"),
    ]
    assert daemon.stop() == 0


async def test_a_chunk_in_a_format_not_taken_is_refused_and_its_stream_answered_with_the_error(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    events = [
        Detect(names=["okay_nabu"]).event(),
        AudioStart(rate=16000, width=2, channels=1).event(),
        AudioChunk(rate=16000, width=3, channels=1, audio=bytes(3 * 160)).event(),
        AudioChunk(rate=16000, width=2, channels=1, audio=bytes(2 * 160)).event(),
        AudioStop().event(),
    ]
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for event in events:
            await client.write_event(event)
        replies = [await asyncio.wait_for(client.read_event(), 60) for _ in range(2)]
    problem = "unsupported sample width 3 (1, 2 or 4 bytes)"
    assert [(e.type, e.data) for e in replies if e is not None] == [
        ("error", {"text": problem, "code": "bad_audio"}),
        ("error", {"text": f"no detection: {problem}", "code": "bad_audio"}),
    ]
    assert daemon.stop() == 0
