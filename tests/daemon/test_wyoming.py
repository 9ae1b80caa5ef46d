"""Tektra as a Wyoming server, driven by the `wyoming` library's client as Home Assistant's
Wyoming integration drives it: one TCP connection per request (`describe`; `transcribe` and
the audio; a `transcript` for the conversation agent), against a real `tektra run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop, wav_to_chunks
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, NotHandled
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong

from daemon.core.config.load import check_text
from daemon.core.config.schema import SttSettings, VadSettings
from daemon.frontends.wyoming.asr import AsrService
from daemon.frontends.wyoming.base import WyomingRefusal
from pipelines.wake import normalise
from tests.conftest import SMOLLM2_SOURCE
from tests.daemon.conftest import (
    ROOT,
    Daemon,
    SocketClient,
    echo_config,
    free_port,
    wait_for_port,
)

AUDIO = ROOT / "fixtures" / "audio"
MANIFEST = json.loads((AUDIO / "manifest.json").read_text())
NO_BROKER = 'broker = "none"'


def expected_words(name: str) -> str:
    return normalise(MANIFEST["speech"][f"{name}.wav"]["expected"])


def wyoming_daemon(make_daemon: Callable[..., Daemon]) -> tuple[Daemon, int]:
    port = free_port()
    daemon = make_daemon(NO_BROKER, extra=f"[wyoming]\nport = {port}\n")
    wait_for_port(port)
    return daemon, port


async def exchange(port: int, *events: Event) -> Event:
    """Send `events` on a new connection, as Home Assistant does; the first event back."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for event in events:
            await client.write_event(event)
        reply: Event | None = await asyncio.wait_for(client.read_event(), 60)
    assert reply is not None, "the server closed the connection without answering"
    return reply


def audio_events(path: Path, language: str | None = "en") -> list[Event]:
    """What Home Assistant's Wyoming speech-to-text sends for one recording."""
    with wave.open(str(path), "rb") as wav:
        audio = [e.event() for e in wav_to_chunks(wav, 1024, start_event=True, stop_event=True)]
    return [Transcribe(language=language).event(), *audio]


async def test_describe_offers_speech_to_text_and_the_conversation_agent(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    info = Info.from_event(await exchange(port, Describe().event()))
    assert [p.name for p in info.asr] == ["tektra"]
    asr_model = info.asr[0].models[0]
    assert (asr_model.name, asr_model.languages, asr_model.installed) == ("tiny.en", ["en"], True)
    assert info.asr[0].supports_transcript_streaming is False
    assert [p.name for p in info.handle] == ["tektra"]
    handle_model = info.handle[0].models[0]
    assert (handle_model.name, handle_model.languages) == ("echo", ["en"])
    assert info.handle[0].supports_home_control is False  # it answers; it does not act
    # `[tts] engine = "none"`: no spoken replies are claimed (the wake words: test_wyoming_wake).
    assert (info.tts, info.intent) == ([], [])
    assert daemon.stop() == 0


async def test_transcribes_a_recording_sent_in_chunks(make_daemon: Callable[..., Daemon]) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    reply = await exchange(port, *audio_events(AUDIO / "kitchen_lights.wav"))
    transcript = Transcript.from_event(reply)
    assert normalise(transcript.text) == expected_words("kitchen_lights")
    assert transcript.language == "en"
    # Sent all at once (faster than speech): no partial could have helped; one run at the end.
    assert "Wyoming transcript of 1.9 s audio (transcribed at the end)" in daemon.log
    assert daemon.stop() == 0


async def test_two_clients_transcribing_at_once_each_get_their_own_words(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    names = ("kitchen_lights", "weather")
    replies = await asyncio.gather(
        *(exchange(port, *audio_events(AUDIO / f"{name}.wav")) for name in names)
    )
    heard = [normalise(Transcript.from_event(reply).text) for reply in replies]
    assert heard == [expected_words(name) for name in names]
    assert daemon.stop() == 0


@pytest.fixture
def stereo(tmp_path: Path) -> Path:
    """garage.wav as 44.1 kHz stereo, made by sox."""
    path = tmp_path / "garage_44k_stereo.wav"
    source = AUDIO / "garage.wav"
    subprocess.run(["sox", str(source), "-r", "44100", "-c", "2", str(path)], check=True)
    return path


async def test_audio_at_44_1_khz_stereo_is_resampled_before_transcription(
    make_daemon: Callable[..., Daemon], stereo: Path
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    transcript = Transcript.from_event(await exchange(port, *audio_events(stereo)))
    assert normalise(transcript.text) == expected_words("garage")
    assert daemon.stop() == 0


async def test_the_conversation_agent_answers_a_transcript(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    context = {"conversation_id": "01HS6SP2XD1E5HEHVDZE8R2WMR"}
    reply = await exchange(port, Transcript("hello", context=context, language="en").event())
    assert Handled.is_type(reply.type)
    handled = Handled.from_event(reply)
    assert (handled.text, handled.context) == ("You said: hello", context)
    nothing = await exchange(port, Transcript("  ").event())
    assert NotHandled.from_event(nothing).text == "there is nothing to answer"
    assert daemon.stop() == 0


async def test_each_connection_is_its_own_conversation_unless_it_names_one(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    watcher = await SocketClient.connect(daemon.socket)

    async def conversations() -> int:
        reply = await watcher.call({"id": "s", "cmd": "status"})
        count: int = reply["result"]["conversations"]
        return count

    async with AsyncTcpClient("127.0.0.1", port) as client:
        for text in ("apple", "pie"):
            await client.write_event(Transcript(text).event())
            assert Handled.from_event(await client.read_event()).text == f"You said: {text}"
        assert await conversations() == 1
    for _ in range(200):  # the daemon notices the hang-up on its own time
        if await conversations() == 0:
            break
        await asyncio.sleep(0.05)
    assert await conversations() == 0

    # Home Assistant opens a connection per turn and names the conversation: it lives on.
    named = Transcript("cherry", context={"conversation_id": "ha-1"}).event()
    assert Handled.is_type((await exchange(port, named)).type)
    await asyncio.sleep(0.2)
    assert await conversations() == 1
    await watcher.close()
    assert daemon.stop() == 0


async def errors_and_then(port: int, events: list[Event]) -> tuple[list[Error], Event | None]:
    """Send `events`, then a `ping` on the same connection: the errors, and then the pong (or
    None when the server ended the connection)."""
    found: list[Error] = []
    client = AsyncTcpClient("127.0.0.1", port)
    await client.connect()
    try:
        for event in events:
            await client.write_event(event)
        with contextlib.suppress(ConnectionError):  # the server may have hung up already
            await client.write_event(Ping("still there?").event())
        while True:
            reply = await asyncio.wait_for(client.read_event(), 60)
            if reply is None or not Error.is_type(reply.type):
                return found, reply
            found.append(Error.from_event(reply))
    finally:
        # The ping may still sit in the buffer of a connection the server ended: closing says so.
        with contextlib.suppress(ConnectionError):
            await client.disconnect()


START = AudioStart(rate=16000, width=2, channels=1).event()
CHUNK = AudioChunk(rate=16000, width=2, channels=1, audio=bytes(3200)).event()
STOP = AudioStop().event()
ERRORS_THEN_GOES_ON: list[tuple[list[Event], list[tuple[str | None, str]]]] = [
    # Events of a kind Tektra does not serve are dropped, as Wyoming peers do.
    ([Event("detect-everything", {"x": 1}), Event("synthesize", {"text": "hi"})], []),
    ([CHUNK, CHUNK], [("no_audio_start", "audio-chunk before audio-start")]),
    (
        [AudioStart(rate=0, width=2, channels=1).event()],
        [("bad_audio", "unsupported sample rate 0 (from 4000 to 192000 Hz)")],
    ),
    (
        [Event("audio-start", {"rate": "fast", "width": 2, "channels": 1})],
        [("bad_audio", "unsupported sample rate 'fast' (from 4000 to 192000 Hz)")],
    ),
    (
        [AudioStart(rate=16000, width=3, channels=6).event()],
        [("bad_audio", "unsupported sample width 3 (1, 2 or 4 bytes)")],
    ),
    (
        [Event("audio-start", {"rate": 16000})],
        [("bad_audio", "audio-start needs `rate`, `width` and `channels`")],
    ),
    (
        [START, AudioChunk(rate=16000, width=2, channels=1, audio=b"\x00\x01\x02").event()],
        [("bad_audio", "an audio-chunk holds a partial sample")],
    ),
    (
        # A refused stream, then a good one on the same connection.
        [AudioStart(rate=1, width=2, channels=1).event(), CHUNK, START, CHUNK],
        [("bad_audio", "unsupported sample rate 1 (from 4000 to 192000 Hz)")],
    ),
    ([Event("transcript", {"txt": "hello"})], [("bad_request", "transcript needs `text`")]),
]
# An `audio-stop` waits for a transcript; when none can come, its error ends the connection
# (Home Assistant's speech-to-text reads nothing else, and reports a closed one as a failure).
ERRORS_THEN_CLOSED: list[tuple[list[Event], list[tuple[str | None, str]]]] = [
    ([STOP], [("no_audio_start", "audio-stop before audio-start")]),
    (
        [CHUNK, CHUNK, STOP],
        [
            ("no_audio_start", "audio-chunk before audio-start"),
            ("no_audio_start", "no transcript: audio-chunk before audio-start"),
        ],
    ),
    (
        [
            START,
            AudioChunk(rate=8000, width=2, channels=1, audio=bytes(3200)).event(),
            CHUNK,  # the refused stream's remaining chunks are dropped quietly
            STOP,
        ],
        [
            (
                "bad_audio",
                "an audio-chunk of 8000 Hz, 16-bit, 1 channel(s) in a stream begun as "
                "16000 Hz, 16-bit, 1 channel(s)",
            ),
            (
                "bad_audio",
                "no transcript: an audio-chunk of 8000 Hz, 16-bit, 1 channel(s) in a "
                "stream begun as 16000 Hz, 16-bit, 1 channel(s)",
            ),
        ],
    ),
]


async def test_bad_input_is_answered_with_errors_and_the_connection_goes_on(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    for events, errors in ERRORS_THEN_GOES_ON:
        found, last = await errors_and_then(port, events)
        assert [(e.code, e.text) for e in found] == errors, events
        assert last is not None and Pong.from_event(last).text == "still there?"
    for events, errors in ERRORS_THEN_CLOSED:
        found, last = await errors_and_then(port, events)
        assert ([(e.code, e.text) for e in found], last) == (errors, None), events
    assert daemon.process is not None and daemon.process.poll() is None
    assert daemon.stop() == 0


async def test_audio_longer_than_max_audio_s_is_refused(
    make_daemon: Callable[..., Daemon],
) -> None:
    port = free_port()
    daemon = make_daemon(NO_BROKER, extra=f"[wyoming]\nport = {port}\nmax_audio_s = 1.0\n")
    wait_for_port(port)
    second = AudioChunk(rate=16000, width=2, channels=1, audio=bytes(32000)).event()
    found, last = await errors_and_then(port, [START, second, second, STOP])
    assert [(e.code, e.text) for e in found] == [
        ("too_long", "the audio is longer than 1 s"),
        ("too_long", "no transcript: the audio is longer than 1 s"),
    ]
    assert last is None
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json\n",
        b"[1, 2]\n",
        b'{"no_type": 1}\n',
        b'{"type": "x", "data": [1]}\n',
        b'{"type": "x", "payload_length": -1}\n',
        b'{"type": "x", "payload_length": 5}\nab',
        b"x" * 100_000 + b"\n",
    ],
)
async def test_bytes_that_are_not_wyoming_end_that_connection_only(
    make_daemon: Callable[..., Daemon], garbage: bytes
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(garbage)
    await writer.drain()
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed, nothing sent
    writer.close()
    info = Info.from_event(await exchange(port, Describe().event()))
    assert info.asr and info.handle
    assert "Traceback" not in daemon.log
    assert daemon.stop() == 0


async def test_an_event_larger_than_max_request_bytes_is_refused_unread(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    async with AsyncTcpClient("127.0.0.1", port) as client:
        # Announces 64 GiB of audio; the server must not wait to buffer them.
        assert client._writer is not None
        client._writer.write(b'{"type": "audio-chunk", "payload_length": 68719476736}\n')
        refused = await asyncio.wait_for(client.read_event(), 30)
        assert refused is not None
        error = Error.from_event(refused)
        assert (error.code, error.text) == ("too_large", "an event of more than 16777216 bytes")
        assert await asyncio.wait_for(client.read_event(), 30) is None  # and closed
    watcher = await SocketClient.connect(daemon.socket)
    status = await watcher.call({"id": 1, "cmd": "status"})
    await watcher.close()
    wyoming = status["result"]["wyoming"]
    assert wyoming["address"] == f"127.0.0.1:{port}" and wyoming["listening"] is True
    assert daemon.stop() == 0


BENCH = str(Path(sys.executable).with_name("wyoming-bench"))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Three fixture recordings, each with its transcript beside it, as wyoming-bench reads."""
    directory = tmp_path / "corpus"
    directory.mkdir()
    for name in ("kitchen_lights", "garage", "weather"):
        shutil.copy(AUDIO / f"{name}.wav", directory)
        text = MANIFEST["speech"][f"{name}.wav"]["expected"]
        (directory / f"{name}.txt").write_text(f"{text}\n")
    return directory


def test_wyoming_bench_transcribes_a_corpus_through_tektra_word_for_word(
    make_daemon: Callable[..., Daemon], corpus: Path
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    server = f"127.0.0.1:{port}"
    result = subprocess.run(
        [BENCH, "stt", "--corpus", str(corpus), "--rounds", "1", "--warmup", "0", server],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = result.stdout
    assert "tektra - non-streaming" in report  # what Tektra advertises, as the peer read it
    assert "[non_streaming] ok=3 fail=0" in report
    assert "Accuracy     WER=0.0%  CER=0.0%" in report
    assert daemon.stop() == 0


async def room(port: int) -> AsyncTcpClient:
    """A connected client whose `ping` got its `pong` rather than `busy` (a connection that
    just closed holds its place until the server has seen it go)."""
    for _ in range(200):
        client = AsyncTcpClient("127.0.0.1", port)
        await client.connect()
        await client.write_event(Ping("room?").event())
        reply = await asyncio.wait_for(client.read_event(), 30)
        if reply is not None and Pong.is_type(reply.type):
            return client
        await client.disconnect()
        await asyncio.sleep(0.05)
    raise AssertionError("still busy")


async def test_one_client_more_than_max_clients_is_told_busy_and_a_silent_one_is_closed(
    make_daemon: Callable[..., Daemon],
) -> None:
    port = free_port()
    extra = f"[wyoming]\nport = {port}\nmax_clients = 1\nclient_idle_s = 1.0\n"
    daemon = make_daemon(NO_BROKER, extra=extra)
    wait_for_port(port)
    first = await room(port)
    try:
        async with AsyncTcpClient("127.0.0.1", port) as second:
            busy = await asyncio.wait_for(second.read_event(), 30)
            assert busy is not None
            error = Error.from_event(busy)
            assert (error.code, error.text) == (
                "busy",
                "Tektra serves 1 Wyoming clients at once ([wyoming] max_clients); try again",
            )
            assert await asyncio.wait_for(second.read_event(), 30) is None
        # The first one says nothing more: after client_idle_s it is closed.
        assert await asyncio.wait_for(first.read_event(), 30) is None
    finally:
        await first.disconnect()
    await (await room(port)).disconnect()  # both gone: there is room again
    assert daemon.stop() == 0


async def test_a_port_held_by_another_program_is_a_problem_until_it_is_free(
    make_daemon: Callable[..., Daemon],
) -> None:
    port = free_port()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    daemon = make_daemon(NO_BROKER, extra=f"[wyoming]\nport = {port}\n")
    watcher = await SocketClient.connect(daemon.socket)

    async def status() -> dict[str, Any]:
        reply = await watcher.call({"id": "s", "cmd": "status"})
        result: dict[str, Any] = reply["result"]
        return result

    for _ in range(400):
        if "wyoming" in (await status())["problems"]:
            break
        await asyncio.sleep(0.05)
    message = f"Wyoming: cannot listen on 127.0.0.1:{port}: Address already in use"
    now = await status()
    # A problem is listed; the assistant itself rests `idle` (it still answers).
    assert (now["state"], now["problems"]) == ("idle", {"wyoming": message})
    assert now["wyoming"]["listening"] is False
    squatter.close()

    for _ in range(600):  # retried with backoff (at most 10 s apart)
        if (await status())["wyoming"]["listening"]:
            break
        await asyncio.sleep(0.05)
    now = await status()
    assert (now["state"], now["problems"], now["wyoming"]["listening"]) == ("idle", {}, True)
    assert Info.from_event(await exchange(port, Describe().event())).asr
    assert f"{message}; retrying" in daemon.log
    assert "Traceback" not in daemon.log
    await watcher.close()
    assert daemon.stop() == 0


async def test_the_daemon_stops_cleanly_with_a_wyoming_client_mid_stream(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon, port = wyoming_daemon(make_daemon)
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        await client.write_event(AudioChunk(16000, 2, 1, bytes(3200)).event())
        await client.write_event(Ping("up").event())
        pong = await asyncio.wait_for(client.read_event(), 60)
        assert pong is not None and Pong.is_type(pong.type)
        assert await asyncio.to_thread(daemon.stop) == 0
        assert await asyncio.wait_for(client.read_event(), 30) is None  # the server hung up
    assert "Traceback" not in daemon.log


async def test_an_answer_that_fails_is_not_handled_with_the_reason(
    short_dir: Path, plugin_site: Path
) -> None:
    port = free_port()
    config = short_dir / "models.toml"
    text = echo_config(short_dir / "t.sock", NO_BROKER, extra=f"[wyoming]\nport = {port}\n")
    config.write_text(text.replace("chunk_delay_s = 0.0", "chunk_delay_s = 0.0\nfail_load = true"))
    daemon = Daemon(config, short_dir / "t.sock", plugin_site)
    daemon.start()
    try:
        wait_for_port(port)
        reply = await exchange(port, Transcript("hello", context={"conversation_id": "c"}).event())
        assert NotHandled.is_type(reply.type), reply
        not_handled = NotHandled.from_event(reply)
        assert not_handled.context == {"conversation_id": "c"}
        assert not_handled.text == (
            "no backend could answer with model 'echo': recorder: cannot load model 'echo': "
            "engine refused"
        )
    finally:
        assert daemon.stop() == 0


def smollm2_config(tmp: Path, port: int) -> Path:
    config = tmp / "models.toml"
    config.write_text(
        f'[daemon]\nsocket = "{tmp / "t.sock"}"\npreset = "exact"\n'
        '[audio]\nsource = "none"\n[mqtt]\nbroker = "none"\n'
        f"[wyoming]\nport = {port}\n"
        "[presets.exact]\ntemperature = 0.0\nseed = 1\nmax_tokens = 24\n"
        f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\ncontext_length = 2048\n'
    )
    return config


@pytest.mark.integration
async def test_the_conversation_agent_answers_with_smollm2_on_llama_cpp(
    short_dir: Path, plugin_site: Path
) -> None:
    port = free_port()
    daemon = Daemon(smollm2_config(short_dir, port), short_dir / "t.sock", plugin_site)
    daemon.start()
    try:
        wait_for_port(port)
        reply = await exchange(port, Transcript("What is the capital of France?").event())
        assert Handled.is_type(reply.type), reply
        text = Handled.from_event(reply).text
        assert text and "paris" in text.lower()
    finally:
        assert daemon.stop() == 0


async def test_transcribe_picks_a_language_only_when_stt_names_none() -> None:
    sent: list[Event] = []

    async def send(event: Event) -> None:
        sent.append(event)

    auto = AsrService(SttSettings(language=None), VadSettings(), 60.0)
    info = Info()
    auto.describe(info)
    languages = info.asr[0].models[0].languages
    assert ("de" in languages, "en" in languages, len(languages)) == (True, True, 100)
    session = auto.open()
    await session.on_event(Transcribe(language="de").event(), send)
    assert session.language == "de"
    with pytest.raises(WyomingRefusal) as refused:
        await session.on_event(Transcribe(language="klingon").event(), send)
    assert (refused.value.code, refused.value.message) == (
        "bad_request",
        "transcribe: unknown language 'klingon'",
    )

    english = AsrService(SttSettings(language="en"), VadSettings(), 60.0).open()
    await english.on_event(Transcribe(language="de").event(), send)
    assert english.language == "en"  # tiny.en knows no other
    assert sent == []


def test_wyoming_settings_are_checked_with_every_error_in_one_pass(tmp_path: Path) -> None:
    models = f'[[models]]\nid = "m"\nsource = {SMOLLM2_SOURCE}\n'
    wrong = '[wyoming]\nport = 0\nhost = "tcp://0.0.0.0"\nmax_audio_s = "long"\nmax_client = 2\n'
    config, issues = check_text(wrong + models, tmp_path)
    assert config is None
    assert [str(issue) for issue in issues] == [
        "wyoming.port: must be at least 1 (got 0)",
        "wyoming.host: must be an address such as 127.0.0.1 or 0.0.0.0 (got 'tcp://0.0.0.0')",
        "wyoming.max_audio_s: expected a number, got string 'long'",
        "wyoming.max_client: unknown key (did you mean 'max_clients'?)",
    ]
    config, issues = check_text('[wyoming]\nport = 10700\nhost = "::1"\n' + models, tmp_path)
    assert issues == [] and config is not None
    assert (config.wyoming.port, config.wyoming.host, config.wyoming.max_clients) == (
        10700,
        "::1",
        16,
    )
