"""The wake word (microWakeWord `okay_nabu`, as `[audio.wake] engine = "micro"` runs it): detection
rate over voices, speeds and noise; false accepts per hour on an hour of audio that never says
it; CPU while listening; and barge-in, how often "okay nabu" said over Tektra's own voice is
caught, with and without the echo canceller. Audio is made at bench time (benchmarks.wake_audio)
and fed to the detector as arrays in 100 ms blocks, faster than real time.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import barge_in_live, wake_audio
from benchmarks.common import Figure, Section
from pipelines.audio import RATE, Samples
from pipelines.echo import EchoCanceller, EchoReference, available
from pipelines.wakeword import MicroWakeWordDetector

MODEL = "okay_nabu"
BLOCK = RATE // 10  # the microphone's 100 ms blocks
SNRS: list[float | None] = [None, 20.0, 10.0, 5.0]  # None: clean
FALSE_ACCEPT_S = {"non-addressed speech": 1500.0, "radio-like speech": 1200.0, "music": 1200.0}
BARGE_IN_LEVELS_DB = [0.0, -6.0, -12.0]  # the person's voice against Tektra's, at the microphone
ECHO_DELAY_S = 0.12  # the speaker-to-microphone path beyond what the device stamps say
MIC_LATE_S = 0.06  # how much later than captured a microphone block is handed over
CAUGHT_WITHIN_S = 1.0  # a wake this soon after the wake word's end counts as catching it


def _feed(detector: MicroWakeWordDetector, audio: Samples) -> list[float]:
    """Where (seconds into `audio`) the detector fired, fed block by block."""
    fired = []
    for start in range(0, len(audio), BLOCK):
        for wake in detector.process(audio[start : start + BLOCK]):
            fired.append((start + wake.offset) / RATE)
    return fired


def detection(
    clips: list[tuple[str, Samples]], rng: np.random.Generator
) -> tuple[list[Figure], list[str]]:
    """The figures, and the clips missed with no noise."""
    caught: dict[float | None, list[bool]] = {snr: [] for snr in SNRS}
    for _label, clip in clips:
        for snr in SNRS:
            lead, tail = np.zeros(RATE, np.float32), np.zeros(RATE, np.float32)
            audio = wake_audio.with_noise(np.concatenate([lead, clip, tail]), snr, rng)
            detector = MicroWakeWordDetector(MODEL)  # fresh: no refractory period carried over
            end = (RATE + len(clip)) / RATE
            caught[snr].append(
                any(1.0 <= t <= end + CAUGHT_WITHIN_S for t in _feed(detector, audio))
            )
    voices = f"{len(clips)} clips: " + ", ".join(label for label, _ in clips[:4]) + ", ..."
    figures = []
    for snr, hits in caught.items():
        name = "clean" if snr is None else f"{snr:.0f} dB SNR (pink noise)"
        figures.append(
            Figure(
                f"detection rate, {name}",
                f"{sum(hits)}/{len(hits)} ({100 * sum(hits) / len(hits):.0f} %)",
                how=voices if snr is None else "the same clips, noise at this speech-to-noise",
            )
        )
    missed = [label for (label, _), hit in zip(clips, caught[None], strict=True) if not hit]
    return figures, missed


def false_accepts(rng: np.random.Generator) -> tuple[list[Figure], float, float]:
    """Figures, and the detector's CPU seconds and audio seconds over all of it."""
    makers = {
        "non-addressed speech": wake_audio.conversation,
        "radio-like speech": wake_audio.radio,
        "music": wake_audio.music,
    }
    figures, cpu_total, audio_total = [], 0.0, 0.0
    for kind, make in makers.items():
        detector = MicroWakeWordDetector(MODEL)
        fired, seconds, cpu = 0, 0.0, 0.0
        for piece in make(FALSE_ACCEPT_S[kind], rng):
            started = time.process_time()
            fired += len(_feed(detector, piece))
            cpu += time.process_time() - started
            seconds += len(piece) / RATE
        cpu_total, audio_total = cpu_total + cpu, audio_total + seconds
        figures.append(
            Figure(
                f"false accepts per hour, {kind}",
                f"{fired / (seconds / 3600):.1f}",
                how=f"{fired} wakes in {seconds / 60:.0f} min that never say the wake word",
            )
        )
    return figures, cpu_total, audio_total


def _room(played: Samples, rng: np.random.Generator) -> Samples:
    """What the microphone hears of the speaker: a delay and a short decaying reverberation."""
    taps = int(0.1 * RATE)
    response = 0.3 * rng.standard_normal(taps) * np.exp(-np.arange(taps) / (0.02 * RATE))
    response[0] = 1.0
    heard = 0.5 * np.convolve(played, response)[: len(played)]
    delay = np.zeros(int(ECHO_DELAY_S * RATE), np.float32)
    return np.concatenate([delay, heard])[: len(played)].astype(np.float32)


def _over_playback(
    answer: Samples, wake: Samples | None, level_db: float, at_s: float, cancel: bool,
    rng: np.random.Generator, before: Samples | None = None,
) -> tuple[list[float], float]:  # fmt: skip
    """Where (seconds into `answer`) the detector fired while the answer played and the person
    spoke, and its CPU seconds (canceller included). `before`: an earlier answer played first,
    through the same room, to the same canceller (a conversation's later answer)."""
    prefix = np.zeros(0, np.float32) if before is None else np.concatenate([before, _s(1.0)])
    played = np.concatenate([prefix, answer, _s(1.0)])
    mic = _room(played, rng)
    if wake is not None:
        gain = wake_audio.speech_level(mic) / wake_audio.speech_level(wake) * 10 ** (level_db / 20)
        start = len(prefix) + int(at_s * RATE)
        mic[start : start + len(wake)] += gain * wake[: len(mic) - start]
    mic = (mic + 0.001 * rng.standard_normal(len(mic))).astype(np.float32)
    reference, detector = EchoReference(), MicroWakeWordDetector(MODEL)
    canceller = EchoCanceller(reference) if cancel else None
    origin, step, written, fired, cpu = 1000.0, RATE // 20, 0, [], 0.0
    for start in range(0, len(mic), BLOCK):
        block = mic[start : start + BLOCK]
        # The player runs ahead of the microphone by its buffer (0.3 s here), block by block.
        while written < start + BLOCK + int(0.3 * RATE):
            reference.played(played[written : written + step], RATE, origin + written / RATE)
            written += step
        began = time.process_time()
        handed_over = origin + (start + len(block)) / RATE + MIC_LATE_S
        heard = canceller.cancel(block, handed_over) if canceller is not None else block
        fired += [(start - len(prefix) + w.offset) / RATE for w in detector.process(heard)]
        cpu += time.process_time() - began
    return [t for t in fired if t >= 0], cpu


def heard_alone(clips: list[Samples]) -> list[Samples]:
    """The clips the detector catches with nothing playing: over playback, a miss is then the
    playback's doing, not the voice's."""
    alone = MicroWakeWordDetector(MODEL)
    heard = []
    for clip in clips:
        alone.reset()
        if _feed(alone, np.concatenate([_s(1.0), clip, _s(1.0)])):
            heard.append(clip)
    return heard


def _s(seconds: float) -> Samples:
    return np.zeros(int(seconds * RATE), np.float32)


def barge_in(clips: list[tuple[str, Samples]], rng: np.random.Generator) -> Section:
    answers = {"espeak": wake_audio.espeak(wake_audio.ANSWER)}
    joe = wake_audio.piper(wake_audio.ANSWER)
    if joe is not None:
        answers = {"piper joe": joe, **answers}
    voices = list(answers.values())
    voiced = [clip for label, clip in clips if not label.startswith("piper")]
    people = heard_alone(voiced)
    figures = [
        Figure(
            "person's clips caught with nothing playing",
            f"{len(people)}/{len(voiced)}",
            how="espeak-ng clips alone, 1 s of silence either side: only these are tried below",
        )
    ]
    cpu_s = audio_s = 0.0
    conditions = [("no cancellation", False, False)]
    if available():
        conditions += [
            ("echo cancelled, first answer", True, False),
            ("echo cancelled, a later answer", True, True),
        ]
    for name, cancel, warm in conditions:
        for level in BARGE_IN_LEVELS_DB:
            hits = []
            for index, wake in enumerate(people):
                answer = voices[index % len(voices)]
                before = voices[(index + 1) % len(voices)] if warm else None
                at_s = [2.0, 5.0, 8.0][index % 3]
                fired, cpu = _over_playback(answer, wake, level, at_s, cancel, rng, before)
                if cancel and not warm:
                    cpu_s, audio_s = cpu_s + cpu, audio_s + len(answer) / RATE + 1
                end = at_s + len(wake) / RATE
                hits.append(any(at_s <= t <= end + CAUGHT_WITHIN_S for t in fired))
            figures.append(
                Figure(
                    f"caught over playback, person {level:+.0f} dB, {name}",
                    f"{sum(hits)}/{len(hits)} ({100 * sum(hits) / len(hits):.0f} %)",
                    how=f"said 2, 5 or 8 s into a {' / '.join(answers)} answer"
                    + (" (after another answer)" if warm else ""),
                )
            )
    self_wakes = 0
    for index, answer in enumerate(voices * 2):
        before = voices[(index + 1) % len(voices)] if index >= len(voices) else None
        fired, _cpu = _over_playback(answer, None, 0.0, 0.0, available(), rng, before)
        self_wakes += len(fired)
    figures.append(
        Figure(
            "self barge-in: wakes from Tektra's own voice",
            str(self_wakes),
            target="0",
            met=self_wakes == 0,
            how=f"{2 * len(voices)} answers played with no one speaking",
        )
    )
    if available():
        figures.append(
            Figure(
                "barge-in CPU (canceller + detector) per audio second",
                f"{1000 * cpu_s / max(audio_s, 1e-9):.1f} ms",
                how="process CPU time over the first-answer trials with cancellation",
            )
        )
    notes = [
        "Simulated room: the microphone hears the answer through a "
        f"{ECHO_DELAY_S * 1000:.0f} ms delay and a 100 ms decaying reverberation at half "
        "level, and each block is handed over "
        f"{MIC_LATE_S * 1000:.0f} ms later than captured, so the canceller must find the delay "
        "(cross-correlation) beyond what the stamps say. The person (espeak-ng voices) is "
        "measured by the RMS of their voiced audio against that of Tektra's voice at the "
        "microphone. The null-sink rows run the daemon's own Player (with its reference), "
        "Microphone and BargeIn on real audio: Tektra answers for 100 s into a PulseAudio null "
        "sink whose monitor is the microphone while paplay mixes a person's okay nabu into it "
        "every 6 s (levels in rotation); the canceller is warm after the first seconds. "
        "speexdsp's filter needs a few seconds of Tektra's voice to converge: a "
        "first answer is cancelled poorly in its first seconds; the daemon keeps the filter "
        "between answers (a later answer). tests/speech/test_barge_in.py checks barge-in "
        "through the whole daemon the same way."
    ]
    if not available():
        notes.append("libspeexdsp is not installed here: only the uncancelled figures exist.")
    return Section("Barge-in: the wake word over Tektra's own voice", figures, notes=notes)


def run() -> list[Section]:
    rng = np.random.default_rng(13)
    started = time.perf_counter()
    clips = wake_audio.wake_clips()
    clips_figures, missed = detection(clips, rng)
    fa_figures, cpu_s, audio_s = false_accepts(rng)
    cpu = Figure(
        "CPU while listening (detector)",
        f"{1000 * cpu_s / audio_s:.2f} ms per audio second",
        how="process CPU time of feature extraction and model over the false-accept audio",
    )
    wake = Section(
        "Wake word (microWakeWord okay_nabu)",
        [*clips_figures, *fa_figures, cpu],
        notes=[
            f"{len(clips)} wake clips: piper joe at 3 speeds and espeak-ng "
            f"{', '.join(wake_audio.ESPEAK_VOICES)} at "
            f"{', '.join(map(str, wake_audio.ESPEAK_SPEEDS))} wpm, each with 1 s before and "
            "after, clean and with pink noise. False accepts: "
            "speech (espeak-ng voices at random speeds and pitches, and joe, with pauses), "
            "radio-like speech (news over a music bed, 300-3400 Hz, compressed, hiss) and "
            "synthesised music (chords, bass, melody, beat), made at bench time by "
            "benchmarks/wake_audio.py; none of it says the wake word.",
            f"Missed with no noise: {', '.join(missed) or 'none'}.",
        ],
    )
    barge = barge_in(clips, rng)
    if available():
        live = barge_in_live.run()
        barge.figures[1:1] = live
    barge.notes.append(f"Both sections took {time.perf_counter() - started:.0f} s.")
    return [wake, barge]
