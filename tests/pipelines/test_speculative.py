"""Speculative transcription in the running pipeline: partial transcripts while the user speaks,
and an utterance that is evidently complete ends before the full silence hangover."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.audio import float_to_pcm
from pipelines.events import SpeechEnded, Transcript
from pipelines.speculative import Speculation
from tests.pipelines.conftest import (
    Run,
    clip,
    config,
    expected,
    run_pipeline,
    silence,
    until_file_done,
    wait_for,
    words,
    write_stream,
)

# A long hangover, so an utterance can only end before it through speculation.
SLOW_VAD = {"min_silence_ms": 3000, "early_silence_ms": 300}


async def test_a_complete_request_ends_early_with_the_partial_as_its_transcript(
    tmp_path: Path,
) -> None:
    stream = write_stream(tmp_path / "s.wav", silence(0.5), clip("kitchen_lights"), silence(4.0))
    cfg = config(audio={"source": f"file:{stream}", "vad": SLOW_VAD})
    run = await run_pipeline(cfg, until_file_done)
    partials = [e for e in run.of(Transcript) if not e.is_final]
    finals = [e for e in run.of(Transcript) if e.is_final]
    assert partials, "no partial transcript while the request was spoken"
    assert [e.reason for e in run.of(SpeechEnded)] == ["early"]
    assert [words(e.text) for e in finals] == [words(expected("kitchen_lights"))]
    assert [words(q.text) for q in run.queries] == [words(expected("kitchen_lights"))]


async def test_without_speculation_the_utterance_waits_out_the_hangover(tmp_path: Path) -> None:
    stream = write_stream(tmp_path / "s.wav", silence(0.5), clip("kitchen_lights"), silence(4.0))
    cfg = config(audio={"source": f"file:{stream}", "vad": SLOW_VAD}, stt={"speculative": False})
    run = await run_pipeline(cfg, until_file_done)
    assert [e.is_final for e in run.of(Transcript)] == [True]
    assert [e.reason for e in run.of(SpeechEnded)] == ["silence"]
    assert [words(q.text) for q in run.queries] == [words(expected("kitchen_lights"))]


def test_a_partial_starts_on_the_third_silent_vad_frame_after_speech() -> None:
    # Gaps between words are at most two 32 ms frames below Silero's silence threshold on the
    # fixtures; the third silent frame is a pause, and what was said so far is transcribed.
    spec = Speculation(interval=16_000, early_silence=4800)
    frame = 512
    assert not spec.due(buffered=8000 + 2 * frame, voiced_end=8000, silence=2 * frame)
    assert spec.due(buffered=8000 + 3 * frame, voiced_end=8000, silence=3 * frame)


async def test_a_complete_partial_ends_the_utterance_without_waiting_for_more_audio() -> None:
    # A request and 0.6 s of silence pushed at once, and then nothing: the pause partial hears
    # the whole request, and its arrival ends the utterance ("early"). Without more audio to
    # look at, the utterance would wait until the lane went quiet for the whole hangover.
    pcm = float_to_pcm(np.concatenate([silence(0.3), clip("kitchen_lights"), silence(0.6)]))
    # The lane counts as gone quiet after min_silence_ms without audio: longer than any partial
    # run takes on a busy machine.
    vad = {**SLOW_VAD, "min_silence_ms": 10_000}
    cfg = config(audio={"source": "none", "vad": vad})

    async def body(run: Run) -> None:
        run.pipeline.push_pcm(pcm)
        await wait_for(lambda: bool(run.queries), 60, "the query")

    run = await run_pipeline(cfg, body)
    assert [e.reason for e in run.of(SpeechEnded)] == ["early"]
    assert [words(q.text) for q in run.queries] == [words(expected("kitchen_lights"))]
