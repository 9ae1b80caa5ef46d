"""Silero VAD as the pipeline runs it: the real model on the speech fixtures."""

from __future__ import annotations

import numpy as np

from pipelines.audio import read_wav
from pipelines.segmenter import SpeechSegmenter, UtteranceEnded
from pipelines.vad import FRAME, GATE_AFTER, HOLD, Samples, VadStream, shared_vad
from tests.pipelines.conftest import AUDIO, MANIFEST


def _probabilities(audio: Samples, step: int) -> list[float]:
    stream = shared_vad().stream()
    probs: list[float] = []
    for i in range(0, len(audio), step):
        probs += [p for _, p in stream.process(audio[i : i + step])]
    return probs


def test_blocks_scored_in_one_run_match_frame_by_frame_and_find_the_speech() -> None:
    # Capture hands over 100 ms blocks (and pushed audio arrives in any size); all their frames
    # go through the model in one run. The answers must be those of one run per frame.
    name = next(iter(MANIFEST["speech"]))
    audio = read_wav(AUDIO / name)
    one_by_one = _probabilities(audio, FRAME)
    for step in (1600, 1000, 7777):
        assert np.allclose(_probabilities(audio, step), one_by_one, atol=1e-5), step
    assert len(one_by_one) == len(audio) // FRAME
    assert max(one_by_one) > 0.9  # the utterance is found
    assert min(one_by_one[:3]) < 0.1  # and the lead-in silence is not speech


def _blocks(audio: Samples, stream: VadStream, segmenter: SpeechSegmenter) -> list[UtteranceEnded]:
    """`audio` in 100 ms capture blocks through the stream and a default segmenter, as the
    microphone lane runs them."""
    ended: list[UtteranceEnded] = []
    for i in range(0, len(audio), 1600):
        may_gate = not segmenter.in_utterance
        for frame, prob in stream.process(audio[i : i + 1600], may_gate=may_gate):
            ended += [e for e in segmenter.process(frame, prob) if isinstance(e, UtteranceEnded)]
    return ended


def _room(seconds: float, dbfs: float, seed: int = 0) -> Samples:
    """A quiet room's noise floor: white noise at `dbfs` RMS."""
    noise = np.random.default_rng(seed).standard_normal(round(seconds * 16000))
    return (noise * 10 ** (dbfs / 20)).astype(np.float32)


def test_the_energy_gate_pauses_silero_in_silence_and_in_a_quiet_rooms_noise_floor() -> None:
    for name, audio in (
        ("digital silence", np.zeros(160_000, np.float32)),
        ("room at -60 dBFS", _room(10.0, -60.0)),
    ):
        stream = shared_vad().stream(gate=True)
        probs = [
            p for i in range(0, len(audio), 1600) for _, p in stream.process(audio[i : i + 1600])
        ]
        # 10 s is 312 frames: Silero scores the first second, then pauses.
        assert stream.gated, name
        assert stream.scored <= GATE_AFTER + 4, (name, stream.scored)
        assert max(probs) < 0.5, name
        assert len(probs) >= len(audio) // FRAME - HOLD, name


def test_with_the_gate_no_fixture_loses_its_start_or_its_end() -> None:
    # Each spoken fixture after 3 s of a quiet room (the gate has closed) and before 2 s more:
    # the gate re-runs Silero over the frames before the onset, so the utterance holds all that
    # it holds with Silero never paused (to within one 32 ms frame), and no word is cut off.
    # (Silero's fresh state may hear a frame sooner or later than its long-running one.)
    for dbfs in (-200.0, -70.0, -60.0, -50.0):
        for name in MANIFEST["speech"]:
            lead, tail = _room(3.0, dbfs, 1), _room(2.0, dbfs, 2)
            audio = np.concatenate([lead, read_wav(AUDIO / name), tail])
            gated = shared_vad().stream(gate=True)
            plain = _blocks(audio, shared_vad().stream(), SpeechSegmenter())
            with_gate = _blocks(audio, gated, SpeechSegmenter())
            where = (dbfs, name)
            assert len(with_gate) == len(plain) == 1, where
            assert with_gate[0].start_s <= plain[0].start_s + FRAME / 16000 + 1e-9, where
            assert with_gate[0].end_s >= plain[0].end_s - FRAME / 16000 - 1e-9, where
            assert with_gate[0].end_s <= plain[0].end_s + 0.2, where  # not held open either
            assert gated.gated, where  # and it closed again after the utterance
