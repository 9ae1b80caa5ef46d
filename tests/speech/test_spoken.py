"""Spoken replies, by ear: the daemon speaks into a PulseAudio null sink, the test records the
sink's monitor and transcribes it with Whisper tiny.en, and the words must be the ones meant.

Every wait is on a condition (an event, audio recorded), never on a fixed time.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.audio import float_to_pcm
from pipelines.stt import Transcriber
from tests.daemon.conftest import TEKTRA, Daemon, SocketClient
from tests.pipelines.conftest import Pulse, clip, expected, silence, write_stream
from tests.speech.conftest import ROOT, heard_in_pcm

pytestmark = pytest.mark.integration
SECOND = 16_000 * 2  # bytes of recorded s16le mono 16 kHz audio
GARAGE = "The garage door is open. Please close the garage door."


class SinkRecording:
    """`parec` recording what reaches the null sink (its monitor), as 16 kHz s16le mono."""

    def __init__(self, pulse: Pulse, path: Path) -> None:
        self.path = path
        with path.open("wb") as out:
            self.process = subprocess.Popen(
                ["parec", "--device=vsink.monitor", "--format=s16le", "--rate=16000",
                 "--channels=1", "--latency-msec=50"],
                stdout=out, env=pulse.env,
            )  # fmt: skip

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    async def more(self, seconds: float, timeout_s: float = 60.0) -> None:
        """Wait until `seconds` more audio was recorded (what was played lies before it)."""
        target = self.size + int(seconds * SECOND)
        async with asyncio.timeout(timeout_s):
            # A file growing has no event to wait on.
            while self.size < target:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    def pcm(self, start: int = 0) -> bytes:
        return self.path.read_bytes()[start:]

    def stop(self) -> bytes:
        self.process.terminate()
        self.process.wait(10)
        return self.pcm()


class Events:
    """Every daemon event, from a `subscribe` on the socket."""

    def __init__(self, client: SocketClient) -> None:
        self.client = client
        self.seen: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    async def watch(cls, daemon: Daemon) -> Events:
        client = await SocketClient.connect(daemon.socket)
        await client.send({"id": "w", "cmd": "subscribe"})
        return cls(client)

    async def until(self, kind: str, timeout_s: float = 60.0, **fields: Any) -> dict[str, Any]:
        """The next event of `kind` whose data has `fields`; events before it are kept."""
        while True:
            reply = await self.client.receive(timeout_s)
            if "event" not in reply:
                continue
            self.seen.append((reply["event"], reply["data"]))
            data = reply["data"]
            if reply["event"] == kind and all(data.get(k) == v for k, v in fields.items()):
                return dict(data)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.seen]


def speaking_daemon(
    make_daemon: Callable[..., Daemon], pulse: Pulse, tts: str, **kwargs: Any
) -> Daemon:
    """A daemon whose default output (and, with audio="auto", microphone) is the null sink."""
    daemon = make_daemon('broker = "none"', tts=tts, start=False, **kwargs)
    daemon.env.update(XDG_RUNTIME_DIR=pulse.env["XDG_RUNTIME_DIR"], HOME=pulse.env["HOME"])
    daemon.start()
    return daemon


@pytest.mark.parametrize("engine", ["piper", "espeak"])
async def test_tektra_say_speaks_the_words_through_the_daemon(
    make_daemon: Callable[..., Daemon],
    pulse: Pulse,
    tmp_path: Path,
    whisper: Transcriber,
    engine: str,
) -> None:
    daemon = speaking_daemon(make_daemon, pulse, f'engine = "{engine}"')
    recording = SinkRecording(pulse, tmp_path / "sink.raw")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    say = await asyncio.create_subprocess_exec(
        TEKTRA, "say", "--config", str(daemon.config), GARAGE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(say.communicate(), 120)
    assert say.returncode == 0, err.decode() + daemon.log
    assert out.decode().startswith("said 2 sentence(s) in ")
    assert out.decode().endswith(f" with {engine}\n")
    await recording.more(1.0)  # what the device still held has reached the sink
    heard = heard_in_pcm(whisper, recording.stop())
    assert heard == "the garage door is open please close the garage door"
    assert daemon.stop() == 0


async def test_a_spoken_question_is_answered_aloud_and_a_typed_one_is_not(
    make_daemon: Callable[..., Daemon], pulse: Pulse, tmp_path: Path, whisper: Transcriber
) -> None:
    daemon = speaking_daemon(make_daemon, pulse, 'engine = "espeak"\nspeak = "voice"')
    events = await Events.watch(daemon)
    asker = await SocketClient.connect(daemon.socket)
    typed = await asker.call({"id": "typed", "cmd": "ask", "text": "Typed words."})
    assert typed["result"]["text"] == "You said: Typed words."
    recording = SinkRecording(pulse, tmp_path / "sink.raw")
    speech = np.concatenate([silence(0.3), clip("garage"), silence(1.0)])
    pcm = base64.b64encode(float_to_pcm(speech)).decode()
    pushed = await asker.call({"id": "p", "cmd": "push_audio", "pcm": pcm, "end": True})
    assert "result" in pushed, pushed
    transcript = await events.until("transcript")
    answer_id = transcript["id"]
    await events.until("tts", state="idle", id=answer_id)
    await recording.more(1.0)
    said = heard_in_pcm(whisper, recording.stop())
    assert said == f"you said {expected('garage')}"
    spoken_ids = [data["id"] for kind, data in events.seen if kind == "tts"]
    assert spoken_ids == [answer_id, answer_id]  # speaking, idle: the typed answer was not read
    await asker.close()
    await events.client.close()
    assert daemon.stop() == 0


async def test_the_speaker_opens_while_the_question_is_still_being_spoken(
    make_daemon: Callable[..., Daemon], pulse: Pulse, tmp_path: Path, whisper: Transcriber
) -> None:
    # A fresh output stream needs a lead-in of silence before its first sample is heard: opened
    # as the person starts speaking, it is ready when the answer's first sentence is.
    daemon = speaking_daemon(make_daemon, pulse, 'engine = "espeak"\nspeak = "voice"')
    events = await Events.watch(daemon)
    asker = await SocketClient.connect(daemon.socket)
    recording = SinkRecording(pulse, tmp_path / "sink.raw")
    speech = np.concatenate([silence(0.3), clip("garage"), silence(1.0)])
    pcm = base64.b64encode(float_to_pcm(speech)).decode()
    await asker.call({"id": "p", "cmd": "push_audio", "pcm": pcm, "end": True})
    transcript = await events.until("transcript")
    assert ("speaker", {"state": "open", "detail": "22050 Hz"}) in events.seen
    await events.until("tts", state="idle", id=transcript["id"])
    await recording.more(1.0)
    # Not a syllable of the first word was swallowed by the stream's start.
    assert heard_in_pcm(whisper, recording.stop()) == f"you said {expected('garage')}"
    await asker.close()
    await events.client.close()
    assert daemon.stop() == 0


async def heard_while_paused(
    make_daemon: Callable[..., Daemon],
    pulse: Pulse,
    tmp_path: Path,
    whisper: Transcriber,
    question: str,
    pause_after: int,
    first: str,
) -> str:
    """Ask `question` of a speaking daemon whose test backend stops after `pause_after` words
    while a pause file exists; wait until `first` is heard, with the model still paused; then
    let it finish, and return all that was heard."""
    pause = tmp_path / "pause"
    pause.touch()
    daemon = make_daemon(
        'broker = "none"', tts='engine = "espeak"\nspeak = "all"', start=False, extra=""
    )
    paused = f'[backends.recorder]\npause_after = {pause_after}\npause_file = "{pause}"\n'
    daemon.config.write_text(daemon.config.read_text().replace("[backends.recorder]\n", paused))
    daemon.env.update(XDG_RUNTIME_DIR=pulse.env["XDG_RUNTIME_DIR"], HOME=pulse.env["HOME"])
    daemon.start()
    events = await Events.watch(daemon)
    recording = SinkRecording(pulse, tmp_path / "sink.raw")
    asker = await SocketClient.connect(daemon.socket)
    await asker.send({"id": "q", "cmd": "ask", "text": question})
    await events.until("tts", state="speaking", id="q")
    while heard_in_pcm(whisper, recording.pcm()) != first:
        await recording.more(0.5)
    assert "response" not in events.kinds()  # the model has not finished: it is paused
    pause.unlink()
    await events.until("response", id="q")
    await events.until("tts", state="idle", id="q")
    await recording.more(1.0)
    heard = heard_in_pcm(whisper, recording.stop())
    await asker.close()
    await events.client.close()
    assert daemon.stop() == 0
    return heard


async def test_the_first_sentence_is_heard_while_the_model_is_still_writing(
    make_daemon: Callable[..., Daemon], pulse: Pulse, tmp_path: Path, whisper: Transcriber
) -> None:
    # The test backend writes "You said: The lights are on. Please close the garage door." and
    # stops after "Please" while paused: only the first sentence is complete.
    question = "The lights are on. Please close the garage door."
    first = "you said the lights are on"
    heard = await heard_while_paused(make_daemon, pulse, tmp_path, whisper, question, 7, first)
    assert heard == "you said the lights are on please close the garage door"


async def test_an_answers_first_clause_is_heard_before_its_first_sentence_is_written(
    make_daemon: Callable[..., Daemon], pulse: Pulse, tmp_path: Path, whisper: Transcriber
) -> None:
    # The test backend writes "You said: Sure, the kitchen lights are on, and the door is shut."
    # and stops after "and" while paused: no sentence is complete, but the first clause is, and
    # it is long enough to be said alone.
    question = "Sure, the kitchen lights are on, and the door is shut."
    first = "you said sure the kitchen lights are on"
    heard = await heard_while_paused(make_daemon, pulse, tmp_path, whisper, question, 9, first)
    assert heard == "you said sure the kitchen lights are on and the door is shut"


async def test_a_lost_output_device_is_a_state_and_the_daemon_goes_on(
    make_daemon: Callable[..., Daemon], pulse: Pulse
) -> None:
    daemon = speaking_daemon(make_daemon, pulse, 'engine = "espeak"\noutput = "no-such-speaker"')
    events = await Events.watch(daemon)
    client = await SocketClient.connect(daemon.socket)
    said = await client.call({"id": 1, "cmd": "say", "text": "Hello there."})
    assert said["error"]["code"] == "output_lost"
    assert "the output device 'no-such-speaker' cannot be opened" in said["error"]["message"]
    speaker = await events.until("speaker")
    assert speaker["state"] == "lost"
    answer = await client.call({"id": 2, "cmd": "ask", "text": "still there"})
    assert answer["result"]["text"] == "You said: still there"
    await client.close()
    await events.client.close()
    assert daemon.stop() == 0


async def test_tektra_never_hears_its_own_voice(
    make_daemon: Callable[..., Daemon], pulse: Pulse, tmp_path: Path
) -> None:
    # One null sink is both the speaker (output) and, through its monitor, the microphone.
    daemon = speaking_daemon(make_daemon, pulse, 'engine = "espeak"', audio="auto")
    events = await Events.watch(daemon)
    while True:  # until the microphone is open
        notice = await events.until("pipeline", name="DeviceState")
        if notice["data"]["state"] == "open":
            break
    client = await SocketClient.connect(daemon.socket)
    own = "What is the weather like today? Turn on the kitchen lights."
    said = await client.call({"id": "s", "cmd": "say", "text": own})
    assert said["result"]["sentences"] == 2
    # Then a person speaks (after the hold, which the padding outlasts): the first thing the
    # microphone hears is them, not Tektra's own two sentences.
    person = write_stream(tmp_path / "p.wav", silence(3.0), clip("radio"), silence(1.0))
    assert await asyncio.to_thread(pulse.play(person).wait, 30) == 0
    while True:  # until the person's utterance was transcribed (or heard as no words)
        reply = await events.client.receive(60)
        if "event" not in reply:
            continue
        events.seen.append((reply["event"], reply["data"]))
        if reply["event"] == "transcript" or reply["data"].get("name") == "TranscriptIgnored":
            break
    # The microphone opened one utterance, the person's: Tektra's two sentences opened none.
    opened = [d for kind, d in events.seen if kind == "pipeline" and d["name"] == "SpeechStarted"]
    assert len(opened) == 1, events.seen
    # What was transcribed is the person's (through a null sink tiny.en has heard "turn on the
    # radio" as "Don't narrate it", and now and then as no words at all), never Tektra's words.
    text = " ".join(d["text"] for kind, d in events.seen if kind == "transcript")
    assert not set(text.lower().strip(" .!").split()) & {"weather", "today", "kitchen", "lights"}
    await client.close()
    await events.client.close()
    assert daemon.stop() == 0


async def test_stop_silences_tektra_at_once_and_ends_the_say_request(
    make_daemon: Callable[..., Daemon], pulse: Pulse, tmp_path: Path
) -> None:
    daemon = speaking_daemon(make_daemon, pulse, 'engine = "espeak"')
    events = await Events.watch(daemon)
    recording = SinkRecording(pulse, tmp_path / "sink.raw")
    speaker = await SocketClient.connect(daemon.socket)
    long_text = " ".join(f"This is sentence number {n} of a long story." for n in range(1, 9))
    await speaker.send({"id": "long", "cmd": "say", "text": long_text})
    await events.until("tts", state="speaking", id="long")
    await recording.more(1.0)  # it is audibly speaking
    assert loudest(recording.pcm()[-SECOND:]) > 1000
    stopper = await SocketClient.connect(daemon.socket)
    stopped = await stopper.call({"id": "s", "cmd": "stop"})
    assert stopped["result"] == {"stopped": ["long"], "cancelled": []}  # no answer was running
    cut_at = recording.size
    said = (await speaker.until_done("long"))[-1]
    assert said["result"]["stopped"] is True
    await events.until("tts", state="idle", id="long")
    await recording.more(1.0)
    # 200 ms after the stop was answered, the speaker is silent (and stays so).
    after = recording.stop()[cut_at + int(0.2 * SECOND) :]
    assert loudest(after) < 100
    await speaker.close()
    await stopper.close()
    await events.client.close()
    assert daemon.stop() == 0


def loudest(pcm: bytes) -> int:
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], "<i2")
    return int(np.abs(samples.astype(np.int32)).max()) if len(samples) else 0


async def test_the_follow_up_window_opens_when_the_spoken_answer_ends(
    make_daemon: Callable[..., Daemon], pulse: Pulse
) -> None:
    # The answer is read slowly (several seconds, longer than the 5 s window) while the
    # microphone is held: a window opened when the text was complete would be over before the
    # user could speak. The same question again, once the answer was heard, continues the
    # conversation (the model sees the first exchange: a longer prompt).
    daemon = speaking_daemon(
        make_daemon,
        pulse,
        'engine = "espeak"\nrate = 0.3',
        extra="[audio.wake]\nfollow_up_s = 5.0\n",
    )
    events = await Events.watch(daemon)
    pusher = await SocketClient.connect(daemon.socket)
    question = np.concatenate(
        [silence(0.3), clip("heating"), silence(0.3), clip("garage"), silence(0.3), clip("time")]
    )
    pcm = base64.b64encode(float_to_pcm(np.concatenate([question, silence(1.0)]))).decode()
    prompts = []
    for n in range(2):
        pushed = await pusher.call({"id": n, "cmd": "push_audio", "pcm": pcm, "end": True})
        assert "result" in pushed, pushed
        response = await events.until("response")
        prompts.append(response["prompt_tokens"])
        spoken = await events.until("tts", state="idle")
        assert spoken["id"] == response["id"]
    assert prompts[1] > prompts[0], prompts
    await pusher.close()
    await events.client.close()
    assert daemon.stop() == 0
