"""WakeGate: wake phrases with fuzz, the follow-up window, and no phrases at all (pure logic)."""

from __future__ import annotations

from pipelines.wake import WakeDecision, WakeGate, normalise


def test_without_phrases_every_utterance_is_a_query() -> None:
    gate = WakeGate()
    assert gate.decide(" Turn on the lights. ", now=0.0) == WakeDecision(
        "Turn on the lights.", "no_phrases"
    )


def test_the_wake_phrase_is_stripped_with_everything_before_it() -> None:
    gate = WakeGate(("hey computer",))
    decision = gate.decide("Okay, hey computer, turn on the fan.", now=0.0)
    assert decision == WakeDecision("turn on the fan", "wake_phrase")


def test_a_loosely_spelled_wake_phrase_still_matches() -> None:
    gate = WakeGate(("hey tektra",))
    assert gate.decide("Hey Techtra, what time is it?", now=0.0).query == "what time is it"
    assert gate.decide("Hey tek tra what time is it", now=0.0).query == "what time is it"


def test_a_neighbouring_word_is_not_swallowed_by_the_fuzz() -> None:
    gate = WakeGate(("hey computer",))
    assert gate.decide("hey computer turn it off", now=0.0).query == "turn it off"


def test_without_the_phrase_an_utterance_is_not_addressed() -> None:
    gate = WakeGate(("hey computer",), follow_up_s=8.0)
    assert gate.decide("turn on the kitchen lights", now=0.0) == WakeDecision(None, "not_addressed")
    assert gate.decide("hey there", now=0.0).query is None


def test_after_an_answer_the_follow_up_window_needs_no_phrase_until_it_closes() -> None:
    gate = WakeGate(("hey computer",), follow_up_s=8.0)
    gate.note_answered(now=100.0)
    assert gate.decide("and the bedroom too", now=107.9) == WakeDecision(
        "and the bedroom too", "follow_up"
    )
    assert gate.decide("and the bedroom too", now=108.1).reason == "not_addressed"


def test_the_wake_phrase_alone_is_no_query_but_opens_the_window() -> None:
    gate = WakeGate(("hey computer",), follow_up_s=5.0)
    assert gate.decide("Hey computer!", now=10.0) == WakeDecision(None, "wake_only")
    assert gate.decide("what time is it", now=14.0).reason == "follow_up"
    assert gate.decide("what time is it", now=15.5).reason == "not_addressed"


def test_any_of_several_phrases_wakes() -> None:
    gate = WakeGate(("hey computer", "okay house"))
    assert gate.decide("Okay house, lock the door", now=0.0).query == "lock the door"


def test_normalise_keeps_words_and_apostrophes_only() -> None:
    assert normalise("  What's THIS?!  Turn-on…the light. ") == "what's this turn on the light"
