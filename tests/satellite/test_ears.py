"""A satellite's ears on real audio: the wake word is heard with its loudness, and only the
request said after it leaves the room (cut at the wake, as the daemon's own pipeline cuts it)."""

from __future__ import annotations

import numpy as np

from daemon.core.config.schema import SttSettings
from daemon.frontends.satellites.ears import Ears, Request
from daemon.frontends.satellites.wire import Heard
from pipelines.audio import RATE
from pipelines.segmenter import SpeechSegmenter
from pipelines.stt import load_transcriber
from pipelines.vad import shared_vad
from pipelines.wakeword import MicroWakeWordDetector
from tests.pipelines.conftest import clip, silence, words


def ears(follow_up_s: float = 0.0) -> Ears:
    detector = MicroWakeWordDetector("okay_nabu")
    return Ears(detector, shared_vad().stream(), SpeechSegmenter(), follow_up_s=follow_up_s)


def hear(ears: Ears, audio: np.ndarray) -> list[Heard | Request]:
    out: list[Heard | Request] = []
    block = RATE // 10
    for start in range(0, len(audio), block):
        out += ears.feed(audio[start : start + block])
    return out


def test_the_wake_word_is_heard_and_only_the_request_after_it_is_sent() -> None:
    heard = hear(ears(), np.concatenate([silence(0.5), clip("okay_nabu_time_joe"), silence(1.5)]))
    assert [type(item) for item in heard] == [Heard, Request]
    wake, request = heard
    assert isinstance(wake, Heard) and isinstance(request, Request)
    assert (wake.model, request.wake) == ("okay_nabu", wake.wake)
    assert -40.0 < wake.loudness_db < 0.0
    text = load_transcriber(SttSettings()).transcribe(request.audio).text
    assert words(text) == "what time is it"


def test_a_quieter_room_hears_the_same_wake_softer() -> None:
    speech = np.concatenate([silence(0.5), clip("okay_nabu_time_joe"), silence(1.5)])
    near = hear(ears(), speech)[0]
    far = hear(ears(), speech * 0.25)[0]
    assert isinstance(near, Heard) and isinstance(far, Heard)
    assert round(near.loudness_db - far.loudness_db) == 12  # a quarter of the amplitude


def test_speech_without_the_wake_word_never_leaves_the_room() -> None:
    speech = np.concatenate([silence(0.5), clip("time"), silence(1.5), clip("radio"), silence(1.5)])
    assert hear(ears(follow_up_s=8.0), speech) == []


def test_the_wake_word_said_alone_lets_the_next_utterance_through() -> None:
    speech = np.concatenate(
        [silence(0.5), clip("okay_nabu_joe"), silence(1.5), clip("time"), silence(1.5)]
    )
    heard = hear(ears(follow_up_s=8.0), speech)
    assert [type(item) for item in heard] == [Heard, Request]
    wake, request = heard
    assert isinstance(wake, Heard) and isinstance(request, Request)
    assert request.wake == wake.wake  # the request of that wake
    text = load_transcriber(SttSettings()).transcribe(request.audio).text
    assert words(text) == "what time is it"


def test_right_after_an_answer_the_next_utterance_needs_no_wake_word() -> None:
    listener = ears(follow_up_s=8.0)
    listener.listen_without_wake("follow-1")
    heard = hear(listener, np.concatenate([silence(0.5), clip("time"), silence(1.5)]))
    assert [(type(item), item.wake) for item in heard] == [(Request, "follow-1")]
    # Only that one: the window closes with it.
    assert hear(listener, np.concatenate([clip("radio"), silence(1.5)])) == []
