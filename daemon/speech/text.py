"""From a model's token stream to sentences a voice can read out.

Models write markdown: list markers, headings, emphasis, code, links, emoji. Read literally they
come out as "asterisk asterisk" or a list of numbers, so each sentence is cleaned before it is
spoken. Sentences are found by `sentence-stream` (the splitter of Home Assistant's voice
pipeline); a line break ends a sentence too, so that list items are read one by one.

An answer's first piece may end at a clause instead (`first_clause`): the voice then starts on
"Sure, the kitchen lights are on," while the model is still writing the rest of the sentence, and
synthesis of the first words overlaps the writing of the next. Only the first piece: later
sentences are synthesised while the first plays, and whole sentences sound better.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from sentence_stream import SentenceBoundaryDetector

_LINE_MARKER = re.compile(r"^\s*(?:[-*+•]\s+|\d{1,3}[.)]\s+|#{1,6}\s+|>\s*)+")
_CODE_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"https?://\S+")
_INLINE = re.compile(r"(\*{1,3}|_{2,3}|~~|`+)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}")
# Emoji and pictographs, their joiners and variation selectors: a voice has nothing to say there.
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff"
    "\u200d\ufe0e\ufe0f\u2b00-\u2bff\u2300-\u23ff]"
)
_SPACES = re.compile(r"\s+")
_CELL = re.compile(r"\s*\|\s*")
# A clause ends at a comma, semicolon or colon followed by a space (so never inside "1,000" or
# "10:30", and only once the next character has arrived), or at a dash set off by spaces.
_CLAUSE_END = re.compile(r"[,;:](?=\s)|\s[-–—](?=\s)|—(?=\w)")
FIRST_CLAUSE_WORDS = 4
"""Words a first clause needs before it is spoken alone: fewer ("Sure," "Well, yes,") sound
chopped, and save little."""


def clean(sentence: str) -> str:
    """One sentence as it should be heard: no markup, no emoji, no URLs, single spaces."""
    text = _LINK.sub(r"\1", sentence)
    text = _URL.sub("", text)
    text = _INLINE.sub("", text)
    text = _EMOJI.sub("", text)
    text = _CELL.sub(", ", text)  # table cells are read as a list
    text = _SPACES.sub(" ", text).strip(" ,")
    # Nothing left but punctuation (an emoji-only line, a lone marker): nothing to say.
    return text if any(ch.isalnum() for ch in text) else ""


class SentenceSplitter:
    """Feed chunks as they stream in; take each sentence as soon as it is complete."""

    def __init__(self, *, first_clause: bool = False) -> None:
        self._detector = SentenceBoundaryDetector()
        # What the detector holds while nothing was said yet, when the first piece may be a
        # clause; None once it was said (or cannot be known: the detector cut something).
        self._head: str | None = "" if first_clause else None
        self._line = ""  # the start of the current line, until its list marker is known
        self._line_started = False
        self._in_code = False

    def feed(self, chunk: str) -> Iterator[str]:
        """Sentences (cleaned, never empty) completed by this chunk."""
        for piece in re.split(r"(\n)", chunk):
            if piece == "\n":
                yield from self._end_line()
            elif piece:
                yield from self._add(piece)

    def finish(self) -> Iterator[str]:
        """What is left when the answer is complete."""
        yield from self._end_line()
        rest = clean(self._detector.finish())
        if rest:
            yield rest

    def _add(self, piece: str) -> Iterator[str]:
        if self._line_started:
            if not self._in_code:
                yield from self._sentences(piece)
            return
        self._line += piece
        # The marker of a line ("- ", "12. ", "## ") is known once its first word has begun.
        if not re.search(r"[^\s\-*+•#>\d.)`~]", self._line):
            return
        yield from self._begin_line()

    def _begin_line(self) -> Iterator[str]:
        line, self._line, self._line_started = self._line, "", True
        if _CODE_FENCE.match(line):
            self._in_code = not self._in_code
            return
        if self._in_code or _TABLE_RULE.match(line):
            return
        yield from self._sentences(_LINE_MARKER.sub("", line))

    def _end_line(self) -> Iterator[str]:
        if not self._line_started and self._line:
            yield from self._begin_line()
        self._line, self._line_started = "", False
        # A blank line is a boundary for the detector: each line is read as a sentence.
        yield from self._sentences("\n\n")

    def _sentences(self, text: str) -> Iterator[str]:
        for sentence in self._detector.add_chunk(text):
            self._head = None
            spoken = clean(sentence)
            if spoken:
                yield spoken
        if self._head is not None:
            # Marks already passed over stay too short (or inside brackets): look only at the
            # new text and the two characters a mark spans before it.
            start = max(0, len(self._head) - 2)
            self._head += text
            yield from self._first_clause(start)

    def _first_clause(self, start: int) -> Iterator[str]:
        """The first clause of the answer, if it is complete and long enough; the detector then
        starts again on what follows it."""
        assert self._head is not None
        for end in _CLAUSE_END.finditer(self._head, start):
            before = self._head[: end.end()]
            if not _clause_may_end(before):
                continue
            spoken = clean(before)
            if len(spoken.split()) < FIRST_CLAUSE_WORDS:
                continue
            if before.endswith(","):
                spoken += ","  # `clean` drops it; a voice reads the clause as unfinished with it
            rest, self._head = self._head[end.end() :], None
            self._detector = SentenceBoundaryDetector()
            yield spoken
            yield from self._sentences(rest)
            return


def _clause_may_end(text: str) -> bool:
    """Whether `text` (up to a clause mark) can be said alone: not inside a link, brackets or
    code, and not after an abbreviation ("e.g.,"), whose reading depends on what follows."""
    if text.count("[") > text.count("]") or text.count("(") > text.count(")"):
        return False
    if text.count("`") % 2:
        return False
    last = text.rstrip(",;:-–— ").rsplit(None, 1)[-1:]
    return not last or not last[0].endswith(".")


def sentences(text: str, *, first_clause: bool = False) -> list[str]:
    """A whole text, cut and cleaned as if it had streamed in."""
    splitter = SentenceSplitter(first_clause=first_clause)
    return [*splitter.feed(text), *splitter.finish()]
