"""Speculative transcription: deciding, while someone is still speaking, what to transcribe and
when the utterance is already complete. Pure logic; the voice pipeline does the I/O.

Waiting for silence and then transcribing the whole utterance puts both costs after the end of
speech. Instead the growing utterance is transcribed at a steady cadence while it is spoken, so
at the end only the last stretch may remain: when the newest partial transcript already covers
every voiced sample, it *is* the final transcript and no recognition runs after the user stops.
A partial run also starts as soon as the speaker pauses. When it heard everything said and reads
as a complete request (it does not stop on a word that needs more, "turn on the"), the utterance
ends after `early_silence` instead of the full silence hangover.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.wake import normalise

# A request does not end on these: "turn on the", "set a timer for", "what is".
DANGLING = frozenset(
    [
        "a",
        "an",
        "the",
        "to",
        "of",
        "for",
        "on",
        "in",
        "at",
        "and",
        "or",
        "but",
        "with",
        "my",
        "your",
        "our",
        "their",
        "this",
        "that",
        "these",
        "those",
        "is",
        "are",
        "was",
        "be",
        "please",
        "from",
        "into",
        "onto",
        "by",
        "about",
        "than",
        "as",
        "if",
        "so",
        "then",
        "set",
        "turn",
        "switch",
        "what",
        "how",
        "when",
        "where",
        "who",
        "which",
    ]
)


@dataclass(frozen=True)
class Partial:
    text: str
    covered: int
    """Samples of the utterance (from its first, pre-roll included) the text was heard from."""


@dataclass
class Speculation:
    """Partial transcripts of the one utterance being spoken, and the decisions they allow."""

    interval: int
    """Samples of new audio between two partial runs."""
    early_silence: int
    """Samples of silence after which a complete-looking partial ends the utterance (0: never)."""
    pause: int = 1536
    """Samples of silence that count as a pause: three 512-sample VAD frames (96 ms), the
    soonest a pause can be told from the gaps between words, which on the spoken fixtures are at
    most two frames below Silero's silence threshold; a partial started on each gap would keep
    Whisper busy just when the request ends. (It was 1600, which took a fourth frame.)"""
    partials: list[Partial] = field(default_factory=list)
    started_at: int | None = None
    """`covered` of the run in flight, if one is."""

    def due(self, buffered: int, voiced_end: int, silence: int) -> bool:
        """Whether to start a partial run now: `buffered` samples of utterance so far, the last
        voiced one at `voiced_end`, followed by `silence` samples of silence."""
        if self.started_at is not None:
            return False
        newest = self.partials[-1].covered if self.partials else 0
        if silence >= self.pause and newest < voiced_end:
            return True  # the speaker paused: what was said so far may be the whole request
        return buffered - newest >= self.interval

    def start(self, covered: int) -> None:
        self.started_at = covered

    def finish(self, text: str) -> Partial | None:
        """Record the run in flight; the partial to publish, or None when nothing was heard."""
        covered, self.started_at = self.started_at, None
        if covered is None:
            return None
        partial = Partial(text, covered)
        self.partials.append(partial)
        return partial if text else None

    def final_text(self, voiced_end: int) -> str | None:
        """The final transcript without another recognition: the newest partial, if it heard
        everything up to the last voiced sample (what follows is the silence that closed it)."""
        if not self.partials:
            return None
        newest = self.partials[-1]
        return newest.text if newest.covered >= voiced_end and newest.text else None

    def complete(self, silence: int, voiced_end: int) -> bool:
        """The request is evidently finished: end it now rather than after the full hangover.

        The newest partial must have heard every voiced sample, say something, and not stop on
        a word that needs more after it ("turn on the", "set a timer for")."""
        if self.early_silence <= 0 or silence < self.early_silence or not self.partials:
            return False
        newest = self.partials[-1]
        words = normalise(newest.text).split()
        return newest.covered >= voiced_end and bool(words) and words[-1] not in DANGLING
