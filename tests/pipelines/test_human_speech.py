"""No word lost for speed on real human speech: short commands spoken by people (not a
synthesiser), replayed in real time through the voice pipeline with speculative transcription,
are transcribed exactly as one Whisper run over the same utterance transcribes them (what the
final transcript would be without the fast path).

A run over the whole clip as recorded is not the reference here: on two of these clips tiny.en
reads the VAD's cut (digital silence before and after the words) differently from the clip with
its own room tone ("10 of close" / "10 of clubs"), with or without speculation; `make bench`
shows both. The clips and the words said are in fixtures/audio/human/ (source and licence in its
README)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from daemon.core.config.schema import SttSettings
from pipelines.audio import read_wav
from pipelines.events import Transcript
from pipelines.stt import load_transcriber
from tests.pipelines.conftest import (
    AUDIO,
    config,
    run_pipeline,
    silence,
    until_file_done,
    words,
    write_stream,
)

pytestmark = pytest.mark.integration

HUMAN = AUDIO / "human"
MANIFEST = json.loads((HUMAN / "manifest.json").read_text())
COMMANDS = [name for name, entry in MANIFEST.items() if entry["kind"] == "command"]


def test_the_human_clips_are_16_khz_mono_and_each_has_the_words_said() -> None:
    assert len(COMMANDS) >= 5 and any(e["kind"] == "reading" for e in MANIFEST.values())
    for name, entry in MANIFEST.items():
        assert len(read_wav(HUMAN / name)) > 16_000 // 2, name  # longer than half a second
        assert words(entry["text"]) and words(entry["expected"]), name


@pytest.mark.parametrize("name", COMMANDS)
async def test_the_fast_path_hears_a_human_command_as_a_full_transcription_of_it_does(
    tmp_path: Path, name: str
) -> None:
    stream = write_stream(tmp_path / "s.wav", silence(0.5), read_wav(HUMAN / name), silence(2.0))
    cfg = config(audio={"source": f"file:{stream}"}, stt={"speculative": True})

    run = await run_pipeline(cfg, until_file_done)

    assert [e for e in run.of(Transcript) if not e.is_final], "no partial: the fast path not used"
    [query] = run.queries  # one command, one utterance
    full = load_transcriber(SttSettings()).transcribe(read_wav(io.BytesIO(query.audio_wav)))
    assert run.transcripts == [words(full.text)]
