"""Deciding whether an utterance is addressed to Tektra: pure logic, no I/O, clock injected.

With no wake phrases configured every utterance is a query. Otherwise the transcript must contain
a wake phrase, matched on normalised words with a little fuzz (tiny models spell names loosely:
"hey tektra" comes back as "hey techtra"), and the query is what follows it. After an answer, a
follow-up window lets the next utterance through without the phrase.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Literal

Reason = Literal["no_phrases", "wake_phrase", "follow_up", "wake_only", "not_addressed"]

# How alike a window of words must be to a wake phrase (difflib ratio on the joined words).
MATCH_RATIO = 0.8


def normalise(text: str) -> str:
    """Lower case, words only: punctuation and runs of spaces go (apostrophes stay in words)."""
    words = re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text.lower())
    return " ".join(words)


@dataclass(frozen=True)
class WakeDecision:
    query: str | None
    """The text to ask (wake phrase and anything before it stripped), or None: not a query."""
    reason: Reason


@dataclass
class WakeGate:
    phrases: tuple[str, ...] = ()
    follow_up_s: float = 8.0
    _window_until: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        self._phrase_words = [normalise(p).split() for p in self.phrases if normalise(p)]

    def note_answered(self, now: float) -> None:
        """An answer was given at `now`: open the follow-up window."""
        self._window_until = now + self.follow_up_s

    def in_follow_up(self, now: float) -> bool:
        return now <= self._window_until

    def decide(self, transcript: str, now: float) -> WakeDecision:
        text = transcript.strip()
        if not self._phrase_words:
            return WakeDecision(text, "no_phrases")
        words = normalise(text).split()
        end = self._phrase_end(words)
        if end is not None:
            rest = _tail(text, end)
            if not rest:
                # The phrase alone: the user waits to be listened to, so the next utterance counts.
                self._window_until = max(self._window_until, now + self.follow_up_s)
                return WakeDecision(None, "wake_only")
            return WakeDecision(rest, "wake_phrase")
        if self.in_follow_up(now):
            return WakeDecision(text, "follow_up")
        return WakeDecision(None, "not_addressed")

    def _phrase_end(self, words: list[str]) -> int | None:
        """Number of transcript words up to the end of the earliest wake phrase, or None."""
        found: list[tuple[int, float, int]] = []  # (start, -ratio, end): earliest, then closest
        for phrase in self._phrase_words:
            joined = " ".join(phrase)
            # A window one word shorter or longer than the phrase catches "tek tra" / "tektra".
            for size in {len(phrase) - 1, len(phrase), len(phrase) + 1} - {0}:
                for start in range(len(words) - size + 1):
                    window = " ".join(words[start : start + size])
                    ratio = difflib.SequenceMatcher(None, window, joined).ratio()
                    if ratio >= MATCH_RATIO:
                        found.append((start, -ratio, start + size))
        return min(found)[2] if found else None


def _tail(text: str, word_count: int) -> str:
    """What follows the first `word_count` normalised words of `text`, punctuation trimmed."""
    matches = list(re.finditer(r"[A-Za-z0-9]+(?:'[A-Za-z0-9]+)*", text))
    if word_count >= len(matches):
        return ""
    return text[matches[word_count].start() :].strip(" \t,.!?;:-")
