"""An answer's first words are played from its first sound, not after the voice's lead-in."""

from __future__ import annotations

import numpy as np

from daemon.speech.engines import Audio, from_first_sound


def test_the_silence_a_voice_starts_with_is_dropped_up_to_five_ms_before_the_first_sound() -> None:
    rate = 1000  # one sample a millisecond
    samples = np.array([0.0] * 40 + [0.125, 0.5, -0.5, 0.0], np.float32)
    trimmed = from_first_sound(Audio(samples, rate))
    assert trimmed.rate == rate
    assert trimmed.samples.tolist() == [0.0] * 5 + [0.125, 0.5, -0.5, 0.0]


def test_audio_that_starts_with_sound_or_holds_none_is_kept_whole() -> None:
    loud = Audio(np.array([0.0, 0.0, 0.3, 0.1], np.float32), 1000)
    quiet = Audio(np.zeros(50, np.float32), 1000)
    assert from_first_sound(loud) is loud
    assert from_first_sound(quiet) is quiet
