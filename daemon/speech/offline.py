"""`tektra say --to FILE.wav`: the daemon's voice written to a file, with no daemon running."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from daemon.core.config.schema import TtsSettings
from daemon.core.errors import TektraError
from daemon.speech.engines import Audio, make_engine
from daemon.speech.text import sentences
from pipelines.audio import Resampler, float_to_wav

GAP_S = 0.25  # between sentences, as a speaker pauses


class NothingToSay(TektraError):
    code = "bad_request"


async def write_speech(settings: TtsSettings, text: str, path: Path) -> tuple[str, float]:
    """Speak `text` into a 16-bit mono WAV file the way the daemon would speak it (same cleaning,
    engine, fallback, rate and volume); return the engine that spoke and the seconds written."""
    parts = sentences(text)
    if not parts:
        raise NothingToSay("nothing in the text can be spoken")
    engine = make_engine(settings if settings.engine != "none" else _espeak(settings))
    try:
        spoken = [await engine.synthesize(part) for part in parts]
    finally:
        await engine.close()
    rate = spoken[0].rate
    gap = np.zeros(round(GAP_S * rate), np.float32)
    pieces: list[np.ndarray] = []
    for audio in spoken:
        same = audio.rate == rate
        pieces += [audio.samples if same else Resampler(audio.rate, rate)(audio.samples), gap]
    joined = np.clip(np.concatenate(pieces[:-1]) * settings.volume, -1.0, 1.0)
    await asyncio.to_thread(path.write_bytes, float_to_wav(joined.astype(np.float32), rate))
    return engine.name, round(Audio(joined, rate).seconds, 2)


def _espeak(settings: TtsSettings) -> TtsSettings:
    # `engine = "none"` keeps the daemon quiet; a file asked for by name is still written.
    return settings.model_copy(update={"engine": "espeak"})
