"""Real Silero VAD and real Whisper tiny.en over the fixture WAVs, through the whole pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.core.config.schema import SttSettings
from pipelines.audio import Resampler, float_to_wav
from pipelines.events import (
    FramesDropped,
    SpeechEnded,
    SpeechStarted,
    Transcript,
    TranscriptIgnored,
)
from pipelines.stt import load_transcriber
from tests.pipelines.conftest import (
    MANIFEST,
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

pytestmark = pytest.mark.integration

SPEECH = [name.removesuffix(".wav") for name in MANIFEST["speech"]]


async def test_every_speech_fixture_gives_its_transcript_one_utterance_each(tmp_path: Path) -> None:
    # All clips back to back, 1.2 s of silence apart: the segmenter must split them one by one.
    parts = [silence(0.5)]
    for name in SPEECH:
        parts += [clip(name), silence(1.2)]
    stream = write_stream(tmp_path / "all.wav", *parts)
    cfg = config(audio={"source": f"file:{stream}", "file_pace": "fast"})

    run = await run_pipeline(cfg, until_file_done)

    assert len(run.of(SpeechStarted)) == len(SPEECH)
    # Silence closes each one; speculation may close it a little earlier ("early").
    assert {e.reason for e in run.of(SpeechEnded)} <= {"silence", "early"}
    assert run.transcripts == [words(expected(name)) for name in SPEECH]
    assert [words(q.text) for q in run.queries] == run.transcripts  # no wake phrases: all asked
    first = next(t for t in run.of(Transcript) if t.is_final)
    assert first.language == "en" and 0.0 < first.start_s < 0.5 < first.end_s
    assert run.queries[0].audio_wav[:4] == b"RIFF" and run.queries[0].images == ()


async def test_a_short_pause_inside_a_command_does_not_split_it(tmp_path: Path) -> None:
    # Each clip ends in ~0.4 s of espeak's own silence: that is the pause between the two.
    stream = write_stream(
        tmp_path / "pause.wav", silence(0.5), clip("garage"), clip("time"), silence(1.0)
    )
    run = await run_pipeline(
        config(audio={"source": f"file:{stream}", "file_pace": "fast"}), until_file_done
    )
    assert run.transcripts == [f"{words(expected('garage'))} {words(expected('time'))}"]


async def test_two_minutes_of_noise_music_and_silence_give_no_utterance(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    clips = [clip(name.removesuffix(".wav")) for name in MANIFEST["non_speech"]]
    parts, total = [], 0
    while total < 120 * 16_000:
        piece = clips[int(rng.integers(len(clips)))] * float(rng.uniform(0.3, 1.5))
        parts.append(np.clip(piece, -1, 1).astype(np.float32))
        total += len(piece)
    stream = write_stream(tmp_path / "noise.wav", *parts)
    run = await run_pipeline(
        config(audio={"source": f"file:{stream}", "file_pace": "fast"}), until_file_done
    )
    assert (run.of(SpeechEnded), run.of(Transcript), run.queries) == ([], [], [])


def test_whisper_alone_on_non_speech_is_silenced_by_the_filter() -> None:
    # Without the VAD in front: Whisper on music writes " ." — the filter must leave nothing.
    transcriber = load_transcriber(SttSettings())
    for name in MANIFEST["non_speech"]:
        assert transcriber.transcribe(clip(name.removesuffix(".wav"))).text == "", name


async def test_wake_phrase_gates_queries_and_the_phrase_alone_opens_the_window(
    tmp_path: Path,
) -> None:
    order = ["kitchen_lights", "wake_fan", "garage", "wake_only", "timer"]
    parts = [silence(0.5)]
    for name in order:
        parts += [clip(name), silence(1.2)]
    stream = write_stream(tmp_path / "wake.wav", *parts)
    cfg = config(
        audio={
            "source": f"file:{stream}",
            "file_pace": "fast",
            "wake": {"phrases": ["hey computer"], "follow_up_s": 60.0},
        }
    )
    run = await run_pipeline(cfg, until_file_done)
    assert run.transcripts == [words(expected(name)) for name in order]
    ignored = [(words(e.text), e.reason) for e in run.of(TranscriptIgnored)]
    assert ignored == [
        (words(expected("kitchen_lights")), "not_addressed"),
        (words(expected("garage")), "not_addressed"),  # no answer was given: no window
        ("hey computer", "wake_only"),
    ]
    assert [words(q.text) for q in run.queries] == ["turn on the fan", words(expected("timer"))]


async def test_an_answer_opens_the_follow_up_window_for_the_next_utterance(
    tmp_path: Path,
) -> None:
    stream = write_stream(
        tmp_path / "follow.wav",
        silence(0.5), clip("wake_fan"), silence(1.2), clip("bedroom_lights"), silence(1.2),
    )  # fmt: skip
    cfg = config(
        audio={
            "source": f"file:{stream}",
            "file_pace": "fast",
            "wake": {"phrases": ["hey computer"], "follow_up_s": 60.0},
        }
    )
    holder: list[Run] = []

    async def answer(query: object) -> None:
        holder[0].pipeline.note_answered()

    async def body(run: Run) -> None:
        holder.append(run)
        await until_file_done(run)

    run = await run_pipeline(cfg, body, answer=answer)
    assert [words(q.text) for q in run.queries] == [
        "turn on the fan",
        words(expected("bedroom_lights")),
    ]


async def test_pcm_pushed_at_48_khz_in_odd_sized_pieces_is_transcribed() -> None:
    audio = np.concatenate([silence(0.3), clip("weather")])
    pcm48 = (np.clip(Resampler(16_000, 48_000)(audio), -1, 1) * 32767).astype("<i2").tobytes()

    async def body(run: Run) -> None:
        for offset in range(0, len(pcm48), 1001):  # odd sizes: samples split across pushes
            run.pipeline.push_pcm(pcm48[offset : offset + 1001], sample_rate=48_000)
        # No trailing silence and no end_pcm(): the pause in pushing closes the utterance.
        await wait_for(lambda: len(run.queries) == 1, 60, "the pushed utterance")

    run = await run_pipeline(config(audio={"source": "none"}), body)
    assert run.transcripts == [words(expected("weather"))]
    # Closed by the pause in pushing, or sooner by a partial that heard it complete (the clip
    # ends in ~0.4 s of its own silence): never left open waiting for more.
    assert [e.reason for e in run.of(SpeechEnded)] in (["end_of_stream"], ["early"])
    assert len(run.queries[0].audio_wav) > len(float_to_wav(clip("weather"))) // 2


async def test_muted_audio_is_discarded_and_unmuting_listens_again() -> None:
    pcm = (np.concatenate([silence(0.3), clip("time"), silence(1.0)]) * 32767).astype("<i2")

    async def body(run: Run) -> None:
        run.pipeline.set_muted(True)
        run.pipeline.push_pcm(pcm.tobytes())
        await wait_for(lambda: run.pipeline.drained, 30, "the muted audio to be consumed")
        assert run.of(SpeechStarted) == []
        run.pipeline.set_muted(False)
        run.pipeline.push_pcm(pcm.tobytes())
        await wait_for(lambda: len(run.queries) == 1, 60, "the unmuted utterance")

    run = await run_pipeline(config(audio={"source": "none"}), body)
    assert run.transcripts == [words(expected("time"))]


async def test_audio_pushed_faster_than_it_is_consumed_drops_the_oldest_and_says_so() -> None:
    second = (silence(1.0) * 32767).astype("<i2").tobytes()

    async def body(run: Run) -> None:
        for _ in range(25):  # 25 s at once; the queue holds 20 s
            run.pipeline.push_pcm(second)
        await wait_for(lambda: run.pipeline.drained, 60, "the queue to drain")

    run = await run_pipeline(config(audio={"source": "none"}), body)
    assert run.of(FramesDropped) == [FramesDropped(count=5, total=5)]


async def test_a_missing_replay_file_is_a_lost_device_and_pushed_audio_still_works(
    tmp_path: Path,
) -> None:
    pcm = (np.concatenate([silence(0.3), clip("garage"), silence(1.0)]) * 32767).astype("<i2")

    async def body(run: Run) -> None:
        await wait_for(lambda: bool(run.device_states("microphone")), 30, "the file's state")
        run.pipeline.push_pcm(pcm.tobytes())
        await wait_for(lambda: len(run.queries) == 1, 60, "the pushed utterance")

    missing = tmp_path / "missing.wav"
    run = await run_pipeline(config(audio={"source": f"file:{missing}"}), body)
    assert run.device_states("microphone") == ["lost"]
    assert run.transcripts == [words(expected("garage"))]
