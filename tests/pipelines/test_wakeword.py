"""The wake word heard in the audio (`[audio.wake] engine = "micro"`), on real synthetic speech.

The "okay nabu" fixtures are said by piper (joe) and espeak-ng; the other speech fixtures never
say the wake word, and the non-speech ones (music, noise) hold no words at all.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from pipelines.events import Transcript, TranscriptIgnored, WakeDetected
from pipelines.wakeword import MicroWakeWordDetector, WakeModelUnavailable
from tests.pipelines.conftest import (
    MANIFEST,
    Pulse,
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

WAKE_WORD = [name.removesuffix(".wav") for name in MANIFEST["wake_word"]]
NOT_ADDRESSED = [name.removesuffix(".wav") for name in MANIFEST["speech"]] + [
    name.removesuffix(".wav") for name in MANIFEST["non_speech"]
]


def heard(name: str, model: str = "okay_nabu") -> list[str]:
    """The wakes a fresh detector hears in a fixture fed in 100 ms blocks, as the mic gives."""
    detector = MicroWakeWordDetector(model)
    audio = clip(name)
    wakes = []
    for offset in range(0, len(audio), 1600):
        wakes += detector.process(audio[offset : offset + 1600])
    return [wake.name for wake in wakes]


@pytest.mark.parametrize("name", WAKE_WORD)
def test_okay_nabu_said_by_piper_and_espeak_wakes_exactly_once(name: str) -> None:
    assert heard(name) == ["okay_nabu"]  # the refractory period: one wake word, one wake


def test_speech_music_and_noise_without_the_wake_word_never_wake() -> None:
    assert {name: heard(name) for name in NOT_ADDRESSED} == {name: [] for name in NOT_ADDRESSED}


def test_another_shipped_model_does_not_hear_okay_nabu() -> None:
    assert heard("okay_nabu_kitchen_joe", "hey_jarvis") == []


def test_a_model_given_by_the_path_of_its_json_or_tflite_file_loads() -> None:
    import pymicro_wakeword

    models = Path(pymicro_wakeword.__file__).parent / "models"
    assert MicroWakeWordDetector(str(models / "okay_nabu.json")).name == "okay_nabu"
    assert MicroWakeWordDetector(str(models / "okay_nabu.tflite")).name == "okay_nabu"


def test_an_unknown_model_is_an_error_in_our_words(tmp_path: Path) -> None:
    with pytest.raises(WakeModelUnavailable) as raised:
        MicroWakeWordDetector("hey_tektra")
    assert raised.value.code == "wake_model_unavailable"
    assert raised.value.message == (
        "[audio.wake] model 'hey_tektra' is neither a shipped model "
        "(okay_nabu, hey_jarvis, hey_mycroft, alexa) nor a microWakeWord .json/.tflite file"
    )


@pytest.mark.integration
async def test_only_speech_after_the_wake_word_is_transcribed_and_asked(tmp_path: Path) -> None:
    addressed = ["okay_nabu_kitchen_joe", "okay_nabu_kitchen_espeak"]
    order = ["kitchen_lights", "radio", "music", *addressed]
    parts = [silence(0.5)]
    for name in order:
        parts += [clip(name), silence(1.5)]
    stream = write_stream(tmp_path / "wake.wav", *parts)
    wake = {"engine": "micro", "model": "okay_nabu", "follow_up_s": 0.0}
    cfg = config(audio={"source": f"file:{stream}", "file_pace": "fast", "wake": wake})

    run = await run_pipeline(cfg, until_file_done)

    assert [(e.name, e.score > 0.85) for e in run.of(WakeDetected)] == [("okay_nabu", True)] * 2
    # Whisper never ran on the speech said before a wake: only the requests were transcribed,
    # with the wake word's own audio cut off.
    ignored = [(e.text, e.reason) for e in run.of(TranscriptIgnored)]
    assert ignored == [("", "no_wake"), ("", "no_wake")]  # kitchen_lights, radio (music: no VAD)
    assert run.transcripts == ["turn on the kitchen light"] * 2
    assert [words(q.text) for q in run.queries] == ["turn on the kitchen light"] * 2
    assert all(not q.continues for q in run.queries)  # a wake starts afresh


@pytest.mark.integration
async def test_the_wake_word_alone_lets_the_next_utterance_through(tmp_path: Path) -> None:
    stream = write_stream(
        tmp_path / "alone.wav",
        silence(0.5), clip("okay_nabu_joe"), silence(1.5), clip("kitchen_lights"), silence(1.5),
        clip("garage"), silence(1.5),
    )  # fmt: skip
    wake = {"engine": "micro", "follow_up_s": 60.0}
    cfg = config(audio={"source": f"file:{stream}", "file_pace": "fast", "wake": wake})

    run = await run_pipeline(cfg, until_file_done)

    assert len(run.of(WakeDetected)) == 1
    assert [(e.text, e.reason) for e in run.of(TranscriptIgnored)] == [("", "wake_only")]
    # Both follow inside the window the wake opened (60 s): no wake word needed.
    assert [words(q.text) for q in run.queries] == [
        words(expected("kitchen_lights")),
        words(expected("garage")),
    ]
    assert [t.text for t in run.of(Transcript) if "nabu" in t.text.lower()] == []


@pytest.mark.integration
async def test_engine_none_asks_every_utterance_and_ignores_the_phrases(tmp_path: Path) -> None:
    stream = write_stream(tmp_path / "none.wav", silence(0.5), clip("garage"), silence(1.5))
    wake = {"engine": "none", "phrases": ["hey computer"]}
    cfg = config(audio={"source": f"file:{stream}", "file_pace": "fast", "wake": wake})

    run = await run_pipeline(cfg, until_file_done)

    assert [words(q.text) for q in run.queries] == [words(expected("garage"))]
    assert run.of(WakeDetected) == []


@pytest.mark.parametrize(("refractory_s", "wakes"), [(2.0, 1), (1.0, 2)])
def test_a_wake_word_said_again_inside_the_refractory_period_is_no_new_wake(
    refractory_s: float, wakes: int
) -> None:
    # "okay nabu" twice, 0.2 s apart (each fires ~0.8 s into its clip). The model's probability
    # stays above its cut-off for half a second after a wake word: shorter refractory periods
    # would hear one word as several wakes.
    twice = np.concatenate([clip("okay_nabu_joe"), silence(0.2), clip("okay_nabu_joe")])
    detector = MicroWakeWordDetector("okay_nabu", refractory_s)
    heard = [
        w
        for offset in range(0, len(twice), 1600)
        for w in detector.process(twice[offset : offset + 1600])
    ]
    assert len(heard) == wakes


@pytest.mark.integration
async def test_after_an_answer_a_follow_up_needs_no_wake_word_and_continues(
    tmp_path: Path,
) -> None:
    stream = write_stream(
        tmp_path / "follow.wav",
        silence(0.5), clip("okay_nabu_kitchen_joe"), silence(1.5), clip("bedroom_lights"),
        silence(1.5),
    )  # fmt: skip
    wake = {"engine": "micro", "follow_up_s": 60.0}
    cfg = config(audio={"source": f"file:{stream}", "file_pace": "fast", "wake": wake})
    holder: list[Run] = []

    async def answer(query: object) -> None:
        holder[0].pipeline.note_answered()

    async def body(run: Run) -> None:
        holder.append(run)
        await until_file_done(run)

    run = await run_pipeline(cfg, body, answer=answer)
    assert [(words(q.text), q.continues) for q in run.queries] == [
        ("turn on the kitchen light", False),
        (words(expected("bedroom_lights")), True),
    ]
    assert len(run.of(WakeDetected)) == 1


@pytest.mark.integration
async def test_the_wake_word_is_heard_on_the_virtual_microphone(
    pulse: Pulse, tmp_path: Path
) -> None:
    # The real capture path: paplay -> PulseAudio null sink monitor -> sounddevice blocks.
    cfg = config(audio={"source": "auto", "wake": {"engine": "micro", "follow_up_s": 0.0}})
    wav = write_stream(
        tmp_path / "played.wav",
        silence(1.0), clip("radio"), silence(1.5), clip("okay_nabu_kitchen_espeak"), silence(1.5),
    )  # fmt: skip

    async def body(run: Run) -> None:
        await wait_for(lambda: "open" in run.device_states("microphone"), 30, "the microphone")
        player = pulse.play(wav)
        await asyncio.to_thread(player.wait, 60)
        await wait_for(lambda: len(run.queries) >= 1, 60, "a query")
        await wait_for(lambda: run.pipeline.drained, 30, "the pipeline to drain")

    run = await run_pipeline(cfg, body)
    assert [e.name for e in run.of(WakeDetected)] == ["okay_nabu"]
    assert [(e.text, e.reason) for e in run.of(TranscriptIgnored)] == [("", "no_wake")]
    assert [words(q.text) for q in run.queries] == ["turn on the kitchen light"]


@pytest.mark.integration
async def test_the_wake_is_placed_right_after_many_pushed_streams_each_ending_mid_frame() -> None:
    # Each end of a pushed stream drops the VAD's part-frame (here 500 samples, 40 times: 1.25 s);
    # the cut at the wake must still fall between "okay nabu" and the request.
    ragged = (silence((3 * 512 + 500) / 16_000) * 32767).astype("<i2")  # 3 VAD frames + 500
    request = (np.concatenate([clip("okay_nabu_kitchen_joe"), silence(1.0)]) * 32767).astype("<i2")
    wake = {"engine": "micro", "follow_up_s": 0.0}

    async def body(run: Run) -> None:
        for _ in range(40):
            run.pipeline.push_pcm(ragged.tobytes())
            run.pipeline.end_pcm()
        run.pipeline.push_pcm(request.tobytes())
        run.pipeline.end_pcm()
        await wait_for(lambda: len(run.queries) == 1, 60, "the request")

    run = await run_pipeline(config(audio={"source": "none", "wake": wake}), body)
    assert [words(q.text) for q in run.queries] == ["turn on the kitchen light"]
