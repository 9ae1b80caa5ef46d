"""The hallucination filter on Whisper's segment scores (pure logic)."""

from __future__ import annotations

from pipelines.stt import HallucinationFilter, SegmentScore


def seg(
    text: str, no_speech: float = 0.1, logprob: float = -0.4, ratio: float = 1.0
) -> SegmentScore:
    return SegmentScore(text, no_speech, logprob, ratio)


def test_a_confident_segment_is_kept() -> None:
    assert HallucinationFilter().text([seg(" Turn on the lights.")]) == "Turn on the lights."


def test_segments_whisper_doubts_are_dropped() -> None:
    filt = HallucinationFilter()
    assert filt.text([seg(" Turn on the lights.", no_speech=0.9)]) == ""
    assert filt.text([seg(" Turn on the lights.", logprob=-1.3)]) == ""
    assert filt.text([seg(" lights lights lights lights", ratio=3.1)]) == ""


def test_stock_phrases_of_silence_are_dropped_even_when_confident() -> None:
    filt = HallucinationFilter()
    for text in (" Thanks for watching!", " you", " Thank you.", " ♪", " .", " Bye-bye."):
        assert filt.text([seg(text)]) == "", text
    assert filt.text([seg(" Thank you."), seg(" Bye.")]) == ""


def test_a_stock_phrase_inside_a_real_command_is_kept() -> None:
    assert HallucinationFilter().text([seg(" Thank you, turn off the TV.")]) == (
        "Thank you, turn off the TV."
    )


def test_only_the_doubtful_segment_of_several_is_dropped() -> None:
    segments = [seg(" Open the garage door."), seg(" Thanks for watching.", no_speech=0.8)]
    assert HallucinationFilter().text(segments) == "Open the garage door."


def test_thresholds_come_from_the_settings() -> None:
    lenient = HallucinationFilter(no_speech_threshold=0.95, log_prob_threshold=-2.0)
    assert lenient.text([seg(" Turn on the lights.", no_speech=0.9, logprob=-1.5)]) != ""
