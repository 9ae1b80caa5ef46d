"""Barge-in, by ear: one PulseAudio null sink is both the daemon's speaker and (its monitor) its
microphone, so the daemon hears its own voice exactly as loud as it plays it. A person's "okay
nabu" played into the same sink while it speaks stops it and the request after is heard; its own
voice alone never wakes it.

Every wait is on a condition (an event, audio recorded), never on a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.echo import available
from tests.daemon.conftest import Daemon, SocketClient
from tests.pipelines.conftest import Pulse, clip, silence, write_stream
from tests.speech.test_spoken import Events, SinkRecording, speaking_daemon

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="libspeexdsp is not installed"),
]
BARGE_IN = '[audio.wake]\nengine = "micro"\nmodel = "okay_nabu"\n'  # barge_in is on by default
STORY = " ".join(f"This is sentence number {n} of a long story." for n in range(1, 9))


def words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


async def _listening(daemon: Daemon) -> Events:
    events = await Events.watch(daemon)
    while True:  # until the microphone is open
        notice = await events.until("pipeline", name="DeviceState")
        if notice["data"]["state"] == "open":
            return events


async def test_okay_nabu_said_over_tektra_stops_it_and_the_request_after_is_heard(
    make_daemon: Callable[..., Daemon], pulse: Pulse, tmp_path: Path
) -> None:
    daemon = speaking_daemon(make_daemon, pulse, 'engine = "espeak"', audio="auto", extra=BARGE_IN)
    events = await _listening(daemon)
    recording = SinkRecording(pulse, tmp_path / "sink.raw")
    speaker = await SocketClient.connect(daemon.socket)
    await speaker.send({"id": "long", "cmd": "say", "text": STORY})
    await events.until("tts", state="speaking", id="long")
    await recording.more(3.0)  # Tektra has been talking for a while
    # A person, as loud as Tektra's voice (espeak's speech level): the wake word, a pause, and
    # the request, mixed into the same sink over Tektra's voice.
    person = write_stream(
        tmp_path / "person.wav", 0.7 * clip("okay_nabu_joe"), silence(1.2), clip("time"),
        silence(1.0),
    )  # fmt: skip
    player = pulse.play(person)
    wake = await events.until("pipeline", name="WakeDetected")
    assert wake["data"] == {**wake["data"], "name": "okay_nabu", "barge_in": True}
    said = (await speaker.until_done("long"))[-1]
    assert said["result"]["stopped"] is True  # cut off mid-story
    await events.until("tts", state="idle", id="long")
    transcript = await events.until("transcript")
    assert words(transcript["text"]) == "what time is it", transcript
    assert await asyncio.to_thread(player.wait, 30) == 0
    recording.stop()
    await speaker.close()
    await events.client.close()
    assert daemon.stop() == 0


async def test_okay_nabu_over_an_answer_being_written_cancels_the_answer(
    make_daemon: Callable[..., Daemon], pulse: Pulse, tmp_path: Path
) -> None:
    # The test backend answers "You said: <question>" and, while the pause file exists, stops
    # writing after its first sentence and "Please": that sentence is spoken, the rest waits.
    pause = tmp_path / "pause"
    pause.touch()
    daemon = make_daemon(
        'broker = "none"', tts='engine = "espeak"\nspeak = "all"', start=False,
        audio="auto", extra=BARGE_IN,
    )  # fmt: skip
    config = daemon.config.read_text().replace(
        "[backends.recorder]\n", f'[backends.recorder]\npause_after = 25\npause_file = "{pause}"\n'
    )
    daemon.config.write_text(config)
    daemon.env.update(XDG_RUNTIME_DIR=pulse.env["XDG_RUNTIME_DIR"], HOME=pulse.env["HOME"])
    daemon.start()
    events = await _listening(daemon)
    recording = SinkRecording(pulse, tmp_path / "sink.raw")
    asker = await SocketClient.connect(daemon.socket)
    question = (
        "The kitchen lights, the hall lights and the porch lights are all on and the heating "
        "is set to twenty one degrees. Please close the garage door."
    )
    await asker.send({"id": "q", "cmd": "ask", "text": question})
    await events.until("tts", state="speaking", id="q")
    await recording.more(3.0)  # the first sentence is being read out
    # Said twice, as a person does who was not heard: speexdsp's filter is still converging on
    # this first answer, and how often one "okay nabu" is caught is the benchmark's to measure.
    wake_word = 0.7 * clip("okay_nabu_joe")
    person = write_stream(tmp_path / "person.wav", wake_word, silence(1.5), wake_word)
    player = pulse.play(person)
    wake = await events.until("pipeline", name="WakeDetected")
    assert wake["data"]["barge_in"] is True
    response = await events.until("response", id="q")
    assert response["finish_reason"] == "cancelled"  # never written to its end
    assert "Please close" not in response["text"]
    # Silenced first (as `stop` does), then the answer cancelled: `idle` came before it.
    idle = [data["id"] for kind, data in events.seen if kind == "tts" and data["state"] == "idle"]
    assert idle == ["q"]
    assert await asyncio.to_thread(player.wait, 30) == 0
    pause.unlink()
    recording.stop()
    await asker.close()
    await events.client.close()
    assert daemon.stop() == 0


async def test_tektra_s_own_voice_never_wakes_it(
    make_daemon: Callable[..., Daemon], pulse: Pulse, tmp_path: Path
) -> None:
    daemon = speaking_daemon(make_daemon, pulse, 'engine = "espeak"', audio="auto", extra=BARGE_IN)
    events = await _listening(daemon)
    speaker = await SocketClient.connect(daemon.socket)
    await speaker.send({"id": "long", "cmd": "say", "text": STORY})
    said = (await speaker.until_done("long", timeout_s=120))[-1]
    assert said["result"]["sentences"] == 8  # read to its end, never stopped
    assert "stopped" not in said["result"]
    # Then a person says something without the wake word: once it is ignored, every block the
    # microphone heard while Tektra spoke (and the hold after) has been through the detector.
    person = write_stream(tmp_path / "person.wav", silence(2.0), clip("radio"), silence(1.0))
    ignored: dict[str, Any] | None = None
    for _ in range(3):  # said again if not heard at all (a microphone stream stalled and reopened)
        assert await asyncio.to_thread(pulse.play(person).wait, 30) == 0
        with contextlib.suppress(TimeoutError):
            ignored = await events.until("pipeline", timeout_s=20, name="TranscriptIgnored")
            break
    assert ignored is not None, "the person was never heard"
    assert ignored["data"]["reason"] == "no_wake"
    pipeline = [data["name"] for kind, data in events.seen if kind == "pipeline"]
    assert "WakeDetected" not in pipeline
    assert "transcript" not in events.kinds()
    await speaker.close()
    await events.client.close()
    assert daemon.stop() == 0
