"""The echo canceller and barge-in listener on arrays: Tektra's voice (speech fixtures) is
"played" through an `EchoReference` stamped as the player stamps it, and the microphone hears it
through a delay the stamps do not know of, handed over late as PortAudio's blocks are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pytest

from pipelines.audio import RATE, Samples
from pipelines.barge_in import BargeIn
from pipelines.echo import EchoCanceller, EchoReference, available, estimate_delay
from pipelines.wakeword import MicroWakeWordDetector
from tests.pipelines.conftest import clip, silence

pytestmark = pytest.mark.skipif(not available(), reason="libspeexdsp is not installed")

BLOCK = RATE // 10
PATH_S = 0.12  # speaker to microphone, beyond the device's own stamp
LATE_S = 0.06  # a block is handed over this long after its last sample was heard
ORIGIN = 1000.0  # time.monotonic() at which the first played sample left the speaker
T = TypeVar("T")


def tektra_voice() -> Samples:
    names = ["weather", "garage", "heating", "vacuum", "timer", "bedroom_lights"]
    return np.concatenate([np.concatenate([clip(n), silence(0.3)]) for n in names])


def through_the_room(played: Samples) -> Samples:
    delayed = np.concatenate([silence(PATH_S), 0.5 * played])[: len(played)]
    return delayed.astype(np.float32)


def listen(
    played: Samples, mic: Samples, hear: Callable[[Samples, float], T], reference: EchoReference
) -> list[tuple[float, T]]:
    """Feed `mic` block by block to `hear(block, now)` while `played` goes to `reference`
    0.3 s ahead (the player's buffer); what each call returned, with the block's start."""
    written, step, out = 0, RATE // 20, []
    for start in range(0, len(mic), BLOCK):
        while written < min(len(played), start + BLOCK + int(0.3 * RATE)):
            reference.played(played[written : written + step], RATE, ORIGIN + written / RATE)
            written += step
        block = mic[start : start + BLOCK]
        now = ORIGIN + (start + len(block)) / RATE + LATE_S
        out.append((start / RATE, hear(block, now)))
    return out


def test_the_delay_of_an_echo_is_found_by_cross_correlation() -> None:
    voice = tektra_voice()[: 3 * RATE]
    search = RATE // 2
    mic = voice[search : search + 2 * RATE]
    # The reference window starts `search` before the microphone's and spans 2 * search more;
    # the echo in mic[n] is voice[search + n]: ref[2 * search + n - L] with ref = voice[0:],
    # so L = search.
    lag, score = estimate_delay(mic, voice[: len(mic) + 2 * search], 2 * search)
    assert lag == search
    assert score > 0.99


def test_tektra_s_voice_is_cancelled_out_of_the_microphone() -> None:
    played = np.concatenate([tektra_voice(), silence(1.0)])
    mic = through_the_room(played)
    reference = EchoReference()
    canceller = EchoCanceller(reference)
    heard = np.concatenate([out for _, out in listen(played, mic, canceller.cancel, reference)])
    # The canceller found the delay the stamps did not know of: the path plus the late handover.
    assert canceller.delay_s == pytest.approx(PATH_S + LATE_S, abs=0.005)
    # Once converged (a few seconds of voice), what is left of the echo is at least 20 dB down.
    after = slice(4 * RATE, len(heard))
    echo, left = mic[after], heard[after]
    assert 10 * np.log10(np.dot(echo, echo) / np.dot(left, left)) > 20


def _person_over_tektra() -> tuple[Samples, Samples, float]:
    played = np.concatenate([tektra_voice(), silence(1.0)])
    mic = through_the_room(played)
    wake = clip("okay_nabu_espeak")
    at = 7 * RATE
    level = np.sqrt(np.mean(mic[mic != 0] ** 2)) / np.sqrt(np.mean(wake[wake != 0] ** 2))
    mic[at : at + len(wake)] += level * wake  # as loud as Tektra's voice at the microphone
    return played, mic, at / RATE


def test_okay_nabu_said_over_tektra_is_heard_by_the_barge_in_listener() -> None:
    played, mic, said_at = _person_over_tektra()
    reference = EchoReference()
    barge_in = BargeIn(reference, "okay_nabu")
    heard = [(start, wake) for start, wake in listen(played, mic, barge_in.hear, reference) if wake]
    assert len(heard) == 1
    start, wake = heard[0]
    assert wake.name == "okay_nabu"
    assert said_at < start < said_at + 2.0


def test_without_the_canceller_the_wake_word_is_lost_under_tektra_s_voice() -> None:
    _, mic, _ = _person_over_tektra()
    detector = MicroWakeWordDetector("okay_nabu")
    wakes = [
        w
        for start in range(0, len(mic), BLOCK)
        for w in detector.process(mic[start : start + BLOCK])
    ]
    assert wakes == []


def test_tektra_s_own_voice_alone_never_wakes_the_barge_in_listener() -> None:
    played = np.concatenate([tektra_voice(), tektra_voice(), silence(1.0)])
    reference = EchoReference()
    barge_in = BargeIn(reference, "okay_nabu")
    heard = listen(played, through_the_room(played), barge_in.hear, reference)
    assert [wake for _, wake in heard if wake] == []
