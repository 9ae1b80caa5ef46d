"""Silero VAD as the pipeline runs it: the real model on the speech fixtures."""

from __future__ import annotations

import numpy as np

from pipelines.audio import read_wav
from pipelines.vad import FRAME, Samples, shared_vad
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
