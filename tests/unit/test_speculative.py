"""Speculative transcription decisions: when to run a partial, when it is the final transcript,
when the request is evidently complete."""

from __future__ import annotations

from pipelines.speculative import Speculation

S = 16_000  # samples per second


def speculation(early_silence_s: float = 0.3) -> Speculation:
    return Speculation(interval=int(0.6 * S), early_silence=int(early_silence_s * S))


def test_partials_run_at_a_steady_cadence_while_speech_goes_on() -> None:
    spec = speculation()
    assert not spec.due(buffered=int(0.5 * S), voiced_end=int(0.5 * S), silence=0)
    assert spec.due(buffered=int(0.6 * S), voiced_end=int(0.6 * S), silence=0)
    spec.start(int(0.6 * S))
    assert not spec.due(buffered=int(2.0 * S), voiced_end=int(2.0 * S), silence=0)  # one at a time
    assert spec.finish("turn on") is not None
    assert not spec.due(buffered=int(1.1 * S), voiced_end=int(1.1 * S), silence=0)
    assert spec.due(buffered=int(1.2 * S), voiced_end=int(1.2 * S), silence=0)


def test_a_pause_starts_a_partial_at_once() -> None:
    spec = speculation()
    spec.start(int(0.6 * S))
    spec.finish("turn on")
    # 0.1 s after the last partial, but the speaker has paused: transcribe what was said.
    assert spec.due(buffered=int(0.75 * S), voiced_end=int(0.65 * S), silence=int(0.1 * S))
    # A shorter dip is the gap between two words: no run for it.
    assert not spec.due(buffered=int(0.7 * S), voiced_end=int(0.65 * S), silence=int(0.05 * S))


def test_the_newest_partial_is_the_final_transcript_when_it_heard_every_voiced_sample() -> None:
    spec = speculation()
    spec.start(int(1.0 * S))
    spec.finish("turn on the kitchen lights")
    assert spec.final_text(voiced_end=int(0.9 * S)) == "turn on the kitchen lights"
    assert spec.final_text(voiced_end=int(1.2 * S)) is None  # speech went on after it


def test_nothing_heard_is_no_final_transcript() -> None:
    spec = speculation()
    spec.start(S)
    assert spec.finish("") is None
    assert spec.final_text(voiced_end=S) is None


def test_a_complete_request_ends_after_a_short_silence() -> None:
    spec = speculation()
    spec.start(int(1.5 * S))
    spec.finish("Turn on the kitchen lights.")
    assert not spec.complete(silence=int(0.2 * S), voiced_end=int(1.4 * S))
    assert spec.complete(silence=int(0.3 * S), voiced_end=int(1.4 * S))


def test_a_request_ending_on_a_word_that_needs_more_waits_for_the_full_silence() -> None:
    spec = speculation()
    spec.start(int(1.5 * S))
    spec.finish("set a timer for")
    assert not spec.complete(silence=int(0.6 * S), voiced_end=int(1.4 * S))


def test_speech_after_the_partial_is_not_complete() -> None:
    spec = speculation()
    spec.start(int(1.0 * S))
    spec.finish("turn on the kitchen")
    assert not spec.complete(silence=int(0.4 * S), voiced_end=int(1.3 * S))


def test_early_ending_can_be_switched_off() -> None:
    spec = speculation(early_silence_s=0)
    spec.start(int(1.5 * S))
    spec.finish("turn on the kitchen lights")
    assert not spec.complete(silence=int(5 * S), voiced_end=int(1.4 * S))
