"""`multimodal` with `audio` and no `text`: the seed's process_audio_with_transcription.

Tektra's own speech-to-text (Whisper, `[stt]`) hears the utterance; a model that takes no audio
(SmolLM2 here) gets the transcript as its question, and the result says what was heard."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.assistant.assistant import Assistant
from daemon.assistant.commands import Commands, Outcome
from daemon.assistant.protocol import Request
from daemon.assistant.voice import VoiceBridge, VoiceHost
from daemon.core.config.schema import TektraConfig
from daemon.core.events import EventBus
from tests.conftest import SMOLLM2_SOURCE
from tests.daemon.conftest import Daemon, SocketClient
from tests.pipelines.conftest import expected, words

WriteConfig = Callable[[str], tuple[TektraConfig, Path]]
AUDIO = Path(__file__).parents[2] / "fixtures" / "audio"
CONFIG = (
    '[daemon]\npreset = "exact"\n[presets.exact]\ntemperature = 0.0\nseed = 7\nmax_tokens = 4\n'
    f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\n'
)


def wav(name: str) -> str:
    return base64.b64encode((AUDIO / f"{name}.wav").read_bytes()).decode()


@pytest.fixture
async def commands(write_config: WriteConfig) -> AsyncIterator[Commands]:
    config, _ = write_config(CONFIG)
    assistant = Assistant(config, None, EventBus())
    voice = VoiceHost(config, VoiceBridge(assistant), lambda name, job: None)
    yield Commands(assistant, transcribe=voice.transcribe)
    await assistant.manager.close()


async def run(commands: Commands, request: dict[str, Any]) -> Outcome:
    line = commands.read_line(json.dumps(request).encode())
    assert isinstance(line, Request), line
    return await commands.run_request(line)


async def test_a_text_model_is_asked_the_transcript_of_the_audio(commands: Commands) -> None:
    heard = await run(commands, {"cmd": "multimodal", "id": 1, "audio": wav("kitchen_lights")})
    assert heard.result is not None, heard
    transcript = heard.result["transcript"]
    assert words(transcript) == words(expected("kitchen_lights"))
    # The same question typed: the model read exactly the transcript's tokens.
    typed = await run(commands, {"cmd": "ask", "id": 2, "text": transcript})
    assert typed.result is not None, typed
    assert heard.result["prompt_tokens"] == typed.result["prompt_tokens"]
    assert heard.result["model"] == "smollm2"


async def test_audio_with_no_speech_in_it_is_answered_no_speech(commands: Commands) -> None:
    done = await run(commands, {"cmd": "multimodal", "id": 1, "audio": wav("silence")})
    assert (done.code, done.message) == ("no_speech", "multimodal: no speech was heard in `audio`")


async def test_audio_that_is_not_a_wav_is_a_bad_request(commands: Commands) -> None:
    junk = base64.b64encode(b"not a wav file").decode()
    done = await run(commands, {"cmd": "multimodal", "id": 1, "audio": junk})
    assert done.code == "bad_request"
    assert done.message.startswith("multimodal: `audio` must be a 16-bit PCM WAV (")


async def test_a_running_daemon_answers_what_was_said_in_the_audio(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    client = await SocketClient.connect(daemon.socket)
    request = {"id": 1, "cmd": "multimodal", "audio": wav("kitchen_lights")}
    reply = await client.call(request)
    await client.close()
    assert daemon.stop() == 0
    result = reply["result"]
    assert words(result["transcript"]) == words(expected("kitchen_lights"))
    assert result["text"] == f"You said: {result['transcript']}"
