"""No word lost for speed, on real human speech (issue 14): LibriVox reading and short commands
spoken by people (fixtures/audio/human/), not the synthesised fixtures the latency section plays.

Each clip is replayed in real time (a `file:` source, as a microphone delivers it) through the
daemon's voice pipeline with its shipped settings and speculative transcription (the fast path:
a partial that heard every voiced sample stands in for the final transcript, and a
complete-looking partial ends the utterance early). Its words (normalised) are compared with one
Whisper run (same model and settings) over each utterance the pipeline cut, which is what the
final transcript would be without the fast path; with one run over the whole clip; and with the
words the reader actually said.
"""

from __future__ import annotations

import asyncio
import difflib
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import AUDIO, Figure, Section, read_wav
from daemon.core.config.schema import SttSettings
from pipelines import audio as wav_io
from pipelines.stt import Transcriber, load_transcriber
from pipelines.wake import normalise
from tests.pipelines.conftest import (
    config,
    digits,
    run_pipeline,
    silence,
    until_file_done,
    write_stream,
)

HUMAN = AUDIO / "human"
LEAD_S, TAIL_S = 0.5, 2.0


@dataclass(frozen=True)
class Clip:
    name: str
    kind: str
    """"reading" (LibriVox) or "command"."""
    expected: str
    """The words said, normalised, as tiny.en spells them (numbers as digits)."""


@dataclass
class Heard:
    clip: Clip
    whole: str
    """One Whisper run over the whole clip."""
    fast: list[str] = field(default_factory=list)
    """The fast path's final transcripts, joined, one per round."""
    same: list[str] = field(default_factory=list)
    """One Whisper run over each utterance the pipeline cut, joined, one per round."""


def human_clips() -> list[Clip]:
    manifest = json.loads((HUMAN / "manifest.json").read_text())
    return [
        Clip(name, entry["kind"], normalise(entry["expected"])) for name, entry in manifest.items()
    ]


async def fast_path(audio: np.ndarray, transcriber: Transcriber, work: Path) -> tuple[str, str]:
    """What the voice pipeline with speculation transcribes of `audio` played in real time (its
    final transcripts, as normalised words: a reading may be heard as several utterances), and
    what one Whisper run over each of the same utterances gives."""
    stream = write_stream(work / "stream.wav", silence(LEAD_S), audio, silence(TAIL_S))
    cfg = config(audio={"source": f"file:{stream}"}, stt={"speculative": True})
    run = await run_pipeline(cfg, until_file_done)
    cut = [wav_io.read_wav(io.BytesIO(query.audio_wav)) for query in run.queries]
    same = [normalise((await asyncio.to_thread(transcriber.transcribe, u)).text) for u in cut]
    return " ".join(run.transcripts), " ".join(w for w in same if w)


def measure(rounds: int, clips: list[Clip], work: Path) -> list[Heard]:
    transcriber = load_transcriber(SttSettings())
    heard = []
    for clip in clips:
        audio = read_wav(HUMAN / clip.name)
        one = Heard(clip, normalise(transcriber.transcribe(audio).text))
        for _ in range(rounds):
            fast, same = asyncio.run(fast_path(audio, transcriber, work))
            one.fast.append(fast)
            one.same.append(same)
        heard.append(one)
    return heard


def difference(reference: str, other: str) -> str:
    """The words that differ, as `"a b" -> "c"` pieces, for the notes."""
    a, b = reference.split(), other.split()
    pieces = [
        f'"{" ".join(a[i1:i2])}" -> "{" ".join(b[j1:j2])}"'
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b).get_opcodes()
        if tag != "equal"
    ]
    return ", ".join(pieces)


def run(rounds: int = 1) -> Section:
    with tempfile.TemporaryDirectory() as tmp:
        heard = measure(rounds, human_clips(), Path(tmp))
    section = Section("No word lost for speed, on real human speech")
    for kind, label in (("command", "short commands"), ("reading", "LibriVox reading")):
        mine = [h for h in heard if h.clip.kind == kind]
        whole = sum(h.whole == h.clip.expected for h in mine)
        fast = sum(f == h.clip.expected for h in mine for f in h.fast)
        same = sum(s == h.clip.expected for h in mine for s in h.same)
        n = len(mine) * rounds
        section.figures += [
            Figure(
                f"human {label}, exact: fast path",
                f"{fast}/{n}",
                f"as full: {whole}/{len(mine)} per round",
                fast * len(mine) >= whole * n,
                "speculative transcription, the clip played in real time through the pipeline",
            ),
            Figure(
                f"human {label}, exact: one run over each utterance cut",
                f"{same}/{n}",
                how="the final transcript without the fast path",
            ),
            Figure(
                f"human {label}, exact: one run over the whole clip",
                f"{whole}/{len(mine)}",
                how="full: the same model and settings on the clip as recorded",
            ),
        ]
    n = len(heard) * rounds
    pairs = [(f, c) for h in heard for f, c in zip(h.fast, h.same, strict=True)]
    alike = sum(digits(f) == digits(c) for f, c in pairs)
    section.figures += [
        Figure(
            "human speech: fast path = one run over the same utterances",
            f"{alike}/{n}",
            f"{n}/{n}",
            alike == n,
            "normalised words, numbers up to twelve as digits: what speed alone could cost",
        ),
        Figure(
            "human speech: the same, spelled the same",
            f"{sum(f == c for f, c in pairs)}/{n}",
            how='tiny.en writes "eight" or "8" by how much silence follows the word',
        ),
        Figure(
            "human speech: fast path = one run over the whole clip",
            f"{sum(f == h.whole for h in heard for f in h.fast)}/{n}",
            how="normalised words",
        ),
    ]
    section.notes.append(
        "- Clips: fixtures/audio/human/ (real people: five LibriVox sentences of one reader, "
        "six short phrases; their source and licence in its README), each played between "
        f"{LEAD_S} s and {TAIL_S} s of digital silence. Said: the words of the clip's own "
        "transcript, spelled as tiny.en writes numbers."
    )
    for h in heard:
        name = h.clip.name.removesuffix(".wav")
        pairs = list(zip(h.fast, h.same, strict=True))
        for said, cut in sorted(set(pairs)):
            times = f"{name} ({pairs.count((said, cut))} of {rounds} rounds)"
            if digits(said) != digits(cut):
                section.notes.append(
                    f"- {times}: fast path {difference(cut, said)} against one run over the "
                    "same utterances: lost to speed."
                )
            elif said != cut:
                section.notes.append(
                    f"- {times}: fast path {difference(cut, said)} against one run over the "
                    "same utterances: the same words, a number spelled differently (the "
                    "partial that stood in for the final transcript heard less silence after "
                    "the last word than the utterance holds)."
                )
            elif said != h.whole:
                section.notes.append(
                    f"- {times}: fast path {difference(h.whole, said)} against one run over "
                    "the whole clip, and one run over the utterance as the pipeline cut it "
                    "gives the fast path's words: they come from the audio the VAD cut (where "
                    "it starts and ends), not from speed."
                )
        if h.whole != h.clip.expected:
            section.notes.append(
                f"- {name}: the whole clip, one run: {difference(h.clip.expected, h.whole)} "
                "against the words said (tiny.en's own miss)."
            )
    return section
