"""SpeechSegmenter with synthetic frames and probabilities: no audio device, no model."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.segmenter import SpeechSegmenter, UtteranceEnded, UtteranceStarted

RATE = 16_000
FRAME = 512  # 32 ms, as Silero scores them


def frames(seconds: float, prob: float, start: int) -> list[tuple[np.ndarray, float]]:
    """Frames whose samples count up from `start`, so a test can tell exactly which were kept."""
    count = round(seconds * RATE / FRAME)
    return [
        (np.arange(start + i * FRAME, start + (i + 1) * FRAME, dtype=np.float32), prob)
        for i in range(count)
    ]


def run(segmenter: SpeechSegmenter, *spans: tuple[float, float]) -> list[object]:
    events: list[object] = []
    position = 0
    for seconds, prob in spans:
        for frame, p in frames(seconds, prob, position):
            events += segmenter.process(frame, p)
            position += len(frame)
    return events


def test_speech_longer_than_the_minimum_opens_and_silence_closes_one_utterance() -> None:
    events = run(SpeechSegmenter(), (1.024, 0.0), (1.024, 0.9), (0.992, 0.1))
    assert len(events) == 2
    started, ended = events
    assert isinstance(started, UtteranceStarted) and isinstance(ended, UtteranceEnded)
    # 0.5 s of pre-roll before the speech (rounded to whole frames: 16 frames = 0.512 s).
    assert started.start_s == pytest.approx(1.024 - 0.512)
    assert ended.reason == "silence"
    assert ended.audio[0] == 16 * FRAME  # first kept sample: the start of the pre-roll
    # Closed by the frame that made 0.7 s of silence (22 frames = 0.704 s).
    assert ended.end_s == pytest.approx(1.024 + 1.024 + 0.704)
    assert len(ended.audio) == round((ended.end_s - ended.start_s) * RATE)
    assert np.all(np.diff(ended.audio) == 1)  # contiguous: nothing dropped, nothing repeated


def test_speech_shorter_than_the_minimum_opens_nothing() -> None:
    segmenter = SpeechSegmenter()
    assert run(segmenter, (0.5, 0.0), (0.256, 0.9), (1.0, 0.0), (0.256, 0.9), (1.0, 0.0)) == []
    assert not segmenter.in_utterance


def test_a_pause_shorter_than_the_minimum_silence_keeps_one_utterance() -> None:
    events = run(SpeechSegmenter(), (0.5, 0.9), (0.5, 0.1), (0.5, 0.9), (0.8, 0.1))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["UtteranceStarted", "UtteranceEnded"]


def test_two_utterances_with_a_long_enough_pause_between_are_split() -> None:
    events = run(SpeechSegmenter(), (0.6, 0.9), (0.8, 0.1), (0.6, 0.9), (0.8, 0.1))
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert [e.reason for e in ended] == ["silence", "silence"]
    assert ended[0].end_s <= ended[1].start_s


def test_probabilities_between_the_two_thresholds_neither_start_nor_end_speech() -> None:
    # 0.4 is below the 0.5 start threshold but above the 0.35 end threshold (hysteresis).
    segmenter = SpeechSegmenter()
    assert run(segmenter, (2.0, 0.4)) == []
    events = run(segmenter, (0.5, 0.9), (2.0, 0.4))
    assert [type(e).__name__ for e in events] == ["UtteranceStarted"]
    assert segmenter.in_utterance


def test_an_utterance_is_cut_at_the_maximum_length() -> None:
    events = run(SpeechSegmenter(max_utterance_s=3.0), (10.0, 0.9))
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert ended and all(e.reason == "max_length" for e in ended)
    assert all(abs(len(e.audio) / RATE - 3.0) < FRAME / RATE for e in ended)


def test_flush_closes_an_open_utterance_and_forgets_a_candidate() -> None:
    segmenter = SpeechSegmenter()
    run(segmenter, (0.6, 0.9))
    ended = segmenter.flush()
    assert ended is not None and ended.reason == "end_of_stream"
    assert len(ended.audio) == round(0.6 * RATE / FRAME) * FRAME
    run(segmenter, (0.1, 0.9))
    assert segmenter.flush() is None


def test_settings_change_the_timings() -> None:
    segmenter = SpeechSegmenter(min_speech_s=0.1, min_silence_s=0.2, pre_roll_s=0.0)
    events = run(segmenter, (0.5, 0.0), (0.128, 0.9), (0.224, 0.0))
    started, ended = events
    assert isinstance(started, UtteranceStarted) and isinstance(ended, UtteranceEnded)
    assert started.start_s == pytest.approx(0.512)  # no pre-roll: starts at the speech itself
    assert ended.end_s == pytest.approx(0.512 + 0.128 + 0.224)


def test_a_short_word_a_pause_and_a_word_open_one_utterance_that_holds_the_first_word() -> None:
    # "front ... left": a 6-frame word, a 14-frame pause (longer than the pre-roll, shorter than
    # the minimum silence), then a 12-frame word whose 10th frame completes the start count.
    events = run(
        SpeechSegmenter(), (1.024, 0.0), (0.192, 0.9), (0.448, 0.1), (0.384, 0.9), (0.992, 0.1)
    )
    started, ended = events
    assert isinstance(started, UtteranceStarted) and isinstance(ended, UtteranceEnded)
    # The pre-roll is measured from the first word's first frame (sample 1.024 s = 32 frames).
    assert started.start_s == pytest.approx(1.024 - 0.512)
    assert ended.audio[0] == 16 * FRAME
    first_word = np.arange(32 * FRAME, 38 * FRAME, dtype=np.float32)
    assert np.isin(first_word, ended.audio).all()
    assert np.all(np.diff(ended.audio) == 1)


def test_two_words_each_shorter_than_the_minimum_speech_together_open_an_utterance() -> None:
    # 6 + 6 voiced frames (0.192 s each, 0.384 s together) around a 0.256 s dip.
    segmenter = SpeechSegmenter()
    events = run(segmenter, (1.024, 0.0), (0.192, 0.9), (0.256, 0.1), (0.192, 0.9), (0.8, 0.1))
    assert [type(e).__name__ for e in events] == ["UtteranceStarted", "UtteranceEnded"]
    started, ended = events
    assert isinstance(started, UtteranceStarted) and isinstance(ended, UtteranceEnded)
    assert started.start_s == pytest.approx(1.024 - 0.512)
    assert ended.reason == "silence"


def test_isolated_clicks_and_noise_open_no_utterance() -> None:
    # One-frame clicks with pauses as long as the minimum silence, then noise the VAD scores
    # between the two thresholds, with clicks in it.
    segmenter = SpeechSegmenter()
    clicks = [(0.032, 0.95), (0.736, 0.05)] * 12
    noisy = [(0.032, 0.9), (0.8, 0.4)] * 6
    assert run(segmenter, *clicks, *noisy) == []
    assert not segmenter.in_utterance
    assert segmenter.buffered_s <= 0.5 + 0.032 * 2  # only the pre-roll is held
