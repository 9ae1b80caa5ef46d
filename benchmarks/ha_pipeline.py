"""Home Assistant's voice pipeline built from its own pieces, for figures measured side by side.

How HA drives them: the microphone's audio streams to `wyoming-faster-whisper` while a
voice-command segmenter watches it (HA's defaults: 0.3 s of speech opens a command, 0.7 s of
silence ends it; Silero scores the frames); at the end, `audio-stop` and the transcript. Its
default conversation agent matches the transcript with hassil against home-assistant-intents'
sentences and the names and areas of the exposed entities; an MQTT light in the JSON schema then
publishes `{"state": "ON"}` on its command topic.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hassil import Intents, recognize
from hassil.intents import SlotList, TextSlotList
from home_assistant_intents import get_intents

from benchmarks.common import SinkRecorder, next_event
from pipelines.audio import pcm_to_float
from pipelines.segmenter import SpeechSegmenter, UtteranceEnded
from pipelines.vad import shared_vad
from tests.pipelines.conftest import Pulse

RATE = 16_000


@dataclass
class Heard:
    """One command as HA's pipeline heard it: its transcript, when the segmenter ended it and
    when the transcript came (perf_counter), and the player still playing the clip."""

    text: str
    segmented: float
    transcribed: float
    player: subprocess.Popen[bytes]


async def listen(recorder: SinkRecorder, pulse: Pulse, stt_port: int, wav: Path) -> Heard:
    """Play `wav` into the microphone that `recorder` hears, and transcribe it as HA does."""
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient

    pieces: asyncio.Queue[bytes] = asyncio.Queue()
    vad = shared_vad().stream()
    segmenter = SpeechSegmenter(min_speech_s=0.3, min_silence_s=0.7, pre_roll_s=0.0)
    recorder.listeners.append(pieces.put_nowait)
    try:
        async with AsyncTcpClient("127.0.0.1", stt_port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            player = pulse.play(wav)
            ended = False
            async with asyncio.timeout(30):
                while not ended:
                    piece = await pieces.get()
                    chunk = AudioChunk(rate=RATE, width=2, channels=1, audio=piece)
                    await client.write_event(chunk.event())
                    for frame, prob in vad.process(pcm_to_float(piece)):
                        events = segmenter.process(frame, prob)
                        ended = ended or any(isinstance(e, UtteranceEnded) for e in events)
            segmented = time.perf_counter()
            await client.write_event(AudioStop().event())
            while True:
                event = await next_event(client, "wyoming-faster-whisper")
                if Transcript.is_type(event.type):
                    text = Transcript.from_event(event).text
                    return Heard(text, segmented, time.perf_counter(), player)
    finally:
        recorder.listeners.remove(pieces.put_nowait)


class DefaultAgent:
    """The matching of HA's default conversation agent: hassil over home-assistant-intents'
    English sentences, with the exposed entities' names and areas as its slot lists."""

    def __init__(self, entities: dict[str, str]) -> None:
        """`entities`: the name of each exposed entity -> its area."""
        self._entities = entities
        data = get_intents("en")
        assert data is not None, "home-assistant-intents has no English sentences"
        self._intents = Intents.from_dict(data)
        self._lists: dict[str, SlotList] = {
            "name": TextSlotList.from_strings(list(entities), allow_template=False),
            "area": TextSlotList.from_strings(sorted(set(entities.values())), allow_template=False),
            "floor": TextSlotList.from_strings([], allow_template=False),
        }

    def turn_on(self, text: str) -> list[str]:
        """The entities `text` asks to turn on (by name, or every one in its area); none when it
        asks no such thing."""
        result = recognize(text, self._intents, slot_lists=self._lists)
        if result is None or result.intent.name != "HassTurnOn":
            return []
        if "name" in result.entities:
            return [str(result.entities["name"].value)]
        if "area" in result.entities:
            area = result.entities["area"].value
            return [name for name, where in self._entities.items() if where == area]
        return []
