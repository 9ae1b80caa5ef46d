"""A socket `say` with `"stream": true` sends the audio back to the caller, by ear: the chunks are
decoded, written to a WAV file and transcribed; nothing needs a speaker (`output = "none"`)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipelines.audio import float_to_wav
from pipelines.stt import Transcriber
from tests.daemon.conftest import Daemon, SocketClient
from tests.speech.conftest import heard_in_file

pytestmark = pytest.mark.integration
TEXT = "The washing machine is **done**! Please empty it."
WORDS = "the washing machine is done please empty it"


@pytest.mark.parametrize("engine", ["piper", "espeak"])
async def test_say_with_stream_sends_the_spoken_words_to_the_caller(
    make_daemon: Callable[..., Daemon], tmp_path: Path, whisper: Transcriber, engine: str
) -> None:
    daemon = make_daemon('broker = "none"', tts=f'engine = "{engine}"\noutput = "none"')
    client = await SocketClient.connect(daemon.socket)
    await client.send({"id": "s", "cmd": "say", "text": TEXT, "stream": True})
    replies = await client.until_done("s", timeout_s=120)
    *chunks, done = replies
    assert done["result"]["sentences"] == 2 and done["result"]["engine"] == engine, done
    assert chunks and all(set(c) == {"id", "audio", "rate"} for c in chunks), chunks[:1]
    rates = {c["rate"] for c in chunks}
    assert len(rates) == 1 and rates <= {16000, 22050}
    pcm = b"".join(base64.b64decode(c["audio"]) for c in chunks)
    samples = (np.frombuffer(pcm, "<i2") / 32768).astype(np.float32)
    assert done["result"]["seconds"] == round(len(samples) / rates.pop(), 2)
    wav = tmp_path / "streamed.wav"
    wav.write_bytes(float_to_wav(samples, chunks[0]["rate"]))
    assert heard_in_file(whisper, wav) == WORDS
    # Without `stream`, the same daemon has nothing to play on: it says so.
    played = await client.call({"id": "p", "cmd": "say", "text": TEXT})
    assert played["error"]["code"] == "unavailable", played
    await client.close()
    assert daemon.stop() == 0
