"""Spoken replies over Wyoming, driven as Home Assistant's Wyoming text-to-speech drives them:
`synthesize` on a new connection, then `audio-start`, `audio-chunk`s and `audio-stop` read back.
Checked by ear: the audio is transcribed with tiny.en and the words compared."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeVoice

from pipelines.stt import Transcriber
from tests.daemon.conftest import Daemon, free_port, wait_for_port
from tests.daemon.test_wyoming import BENCH
from tests.speech.conftest import heard_in_pcm

SENTENCE = "Turn on the kitchen lights."


def tts_daemon(make_daemon: Callable[..., Daemon], engine: str) -> tuple[Daemon, int]:
    port = free_port()
    tts = f'engine = "{engine}"\noutput = "none"'
    daemon = make_daemon('broker = "none"', extra=f"[wyoming]\nport = {port}\n", tts=tts)
    wait_for_port(port)
    return daemon, port


async def synthesize(port: int, request: Synthesize) -> tuple[AudioStart, bytes, list[Event]]:
    """What Home Assistant reads back: the stream's format, its audio, and every event."""
    events: list[Event] = []
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(request.event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 120)
            assert event is not None, "the server closed the connection mid-answer"
            events.append(event)
            if AudioStop.is_type(event.type) or Error.is_type(event.type):
                break
    assert AudioStart.is_type(events[0].type), events[0]
    start = AudioStart.from_event(events[0])
    chunks = [AudioChunk.from_event(e) for e in events if AudioChunk.is_type(e.type)]
    assert {(c.rate, c.width, c.channels) for c in chunks} == {(start.rate, 2, 1)}
    return start, b"".join(c.audio for c in chunks), events


async def test_describe_lists_the_joe_voice_and_the_espeak_voice_with_their_languages(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = tts_daemon(make_daemon, "piper")
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        reply = await asyncio.wait_for(client.read_event(), 60)
    assert reply is not None
    info = Info.from_event(reply)
    assert [p.name for p in info.tts] == ["tektra"]
    voices = [(v.name, v.languages) for v in info.tts[0].voices]
    assert voices == [("en_US-joe-medium", ["en_US"]), ("en-us", ["en_US"])]
    assert daemon.stop() == 0


async def test_a_sentence_is_spoken_by_piper_and_by_espeak_when_its_voice_is_asked_for(
    make_daemon: Callable[..., Daemon], whisper: Transcriber
) -> None:
    daemon, port = tts_daemon(make_daemon, "piper")
    start, pcm, events = await synthesize(port, Synthesize(text=SENTENCE))
    assert (events[0].type, events[-1].type) == ("audio-start", "audio-stop")
    assert heard_in_pcm(whisper, pcm, start.rate) == "turn on the kitchen lights"
    voice = SynthesizeVoice(name="en-us")
    start, pcm, _ = await synthesize(port, Synthesize(text=SENTENCE, voice=voice))
    assert heard_in_pcm(whisper, pcm, start.rate) == "turn on the kitchen lights"
    # Each engine said what it was asked to (no silent fallback from piper).
    assert "Wyoming synthesized 1 sentence(s) with piper" in daemon.log
    assert "Wyoming synthesized 1 sentence(s) with espeak" in daemon.log
    assert daemon.stop() == 0


async def test_espeak_alone_speaks_two_sentences_in_one_stream(
    make_daemon: Callable[..., Daemon], whisper: Transcriber
) -> None:
    daemon, port = tts_daemon(make_daemon, "espeak")
    text = "Turn on the kitchen lights. What is the weather like?"
    start, pcm, _ = await synthesize(port, Synthesize(text=text))
    assert heard_in_pcm(whisper, pcm, start.rate) == (
        "turn on the kitchen lights what is the weather like"
    )
    assert "Wyoming synthesized 2 sentence(s) with espeak" in daemon.log
    assert daemon.stop() == 0


async def refused(port: int, request: Synthesize) -> Event:
    """The error answering `request`, after which the connection is closed: Home Assistant reads
    on until `audio-stop` and would wait forever, while a closed connection ends its wait."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(request.event())
        error: Event | None = await asyncio.wait_for(client.read_event(), 60)
        assert await asyncio.wait_for(client.read_event(), 60) is None
    assert error is not None
    return error


async def test_an_unknown_voice_and_empty_text_are_refused_in_our_words_and_the_connection_closed(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = tts_daemon(make_daemon, "espeak")
    unknown = Synthesize(text="Hi.", voice=SynthesizeVoice("x"))
    error = Error.from_event(await refused(port, unknown))
    assert (error.code, error.text) == ("bad_request", "synthesize: unknown voice x (en-us)")
    error = Error.from_event(await refused(port, Synthesize(text=" ** ")))
    assert (error.code, error.text) == ("bad_request", "synthesize: there is nothing to say")
    assert daemon.stop() == 0


def test_wyoming_bench_tts_synthesizes_through_tektra(make_daemon: Callable[..., Daemon]) -> None:
    daemon, port = tts_daemon(make_daemon, "espeak")
    result = subprocess.run(
        [BENCH, "tts", "--mode", "non_streaming", "--texts", SENTENCE, "--rounds", "1",
         "--warmup", "0", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )  # fmt: skip
    assert "tektra - non-streaming" in result.stdout  # what Tektra advertises, as it read it
    assert "[non_streaming] ok=1 fail=0" in result.stdout
    assert daemon.stop() == 0
