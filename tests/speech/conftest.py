"""Fixtures of the voice-out tests: a Whisper that listens to what Tektra said, and configs.

Every check here is by ear: the audio Tektra produced (a file, or what reached a PulseAudio null
sink) is transcribed with the same tiny.en the daemon uses, and the words are compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.core.config.schema import SttSettings
from pipelines.audio import Resampler, read_wav
from pipelines.stt import Transcriber, load_transcriber
from pipelines.wake import normalise
from tests.pipelines.conftest import pulse  # noqa: F401  (the fixture, shared)

RATE = 16_000
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def whisper() -> Transcriber:
    return load_transcriber(SttSettings())


SILENCE = np.zeros(RATE // 2, np.float32)


def heard(whisper: Transcriber, audio: np.ndarray) -> str:
    """What Whisper hears in 16 kHz float audio, as lower-case words without punctuation.

    The audio is heard with half a second of silence around it, as a listener hears a sentence:
    piper's voice starts at its first sample, and tiny.en then drops the first word of about one
    synthesis in ten (piper's voice varies from run to run)."""
    padded = np.concatenate([SILENCE, audio.astype(np.float32), SILENCE])
    return normalise(whisper.transcribe(padded).text)


def heard_in_file(whisper: Transcriber, path: Path) -> str:
    return heard(whisper, read_wav(path))


def heard_in_pcm(whisper: Transcriber, pcm: bytes, rate: int = RATE) -> str:
    samples = (np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], "<i2") / 32768).astype(np.float32)
    return heard(whisper, Resampler(rate)(samples))


MODEL = '[[models]]\nid = "m"\nsource = { path = "models.toml" }\n'


def speech_config(directory: Path, tts: str) -> Path:
    """A models.toml with no microphone and no broker, and the given `[tts]` lines."""
    path = directory / "models.toml"
    path.write_text(f'[audio]\nsource = "none"\n[mqtt]\nbroker = "none"\n[tts]\n{tts}\n{MODEL}')
    return path


# The daemon's own fixtures (a `tektra run` subprocess with the test backend), shared.
from tests.daemon.conftest import (  # noqa: E402, F401
    make_daemon,
    mosquitto,
    plugin_site,
    short_dir,
)
