"""Hearing a wake word in the audio itself, before any speech-to-text.

A `WakeWordDetector` is fed the same 16 kHz float blocks as the VAD, lane by lane, and says where
in them a wake word ended. `MicroWakeWordDetector` runs a microWakeWord model (pymicro-wakeword:
a small streaming TFLite network, about 0.25 ms of CPU per 100 ms of audio on one x86 core).
Feeding is blocking and is called where the VAD is (on the loop for a capture block, in a worker
thread for a large chunk), one call at a time per detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

from daemon.core.errors import TektraError
from pipelines.audio import RATE, Samples

# microWakeWord computes one feature vector per 10 ms step of audio.
STEP = RATE // 100


class WakeModelUnavailable(TektraError):
    """`[audio.wake] model` names no shipped model and no readable model file."""

    code = "wake_model_unavailable"


@dataclass(frozen=True)
class Wake:
    """The wake word was heard."""

    name: str
    """The model's id (`okay_nabu`)."""
    score: float
    """The model's smoothed probability when it fired (above its cut-off)."""
    offset: int
    """Where in the samples of the `process` call that heard it the model fired (a little below
    0: in the audio of the call before). The wake word ends a little (~0.1 s) before it."""


class WakeWordDetector(Protocol):
    def process(self, samples: Samples) -> list[Wake]:
        """Feed the next audio; the wakes that fired inside it. Blocking."""
        ...

    def reset(self) -> None:
        """Forget the audio fed so far (stream time keeps counting)."""
        ...


class MicroWakeWordDetector:
    """A microWakeWord model with a refractory period: one wake word is one wake."""

    def __init__(self, model: str, refractory_s: float = 2.0) -> None:
        self._model = _load(model)
        self._features = MicroWakeWordFeatures()
        self._refractory = round(refractory_s * RATE)
        self._rest: Samples = np.zeros(0, np.float32)
        self._fed = 0  # samples given to the feature front end since the start
        self._quiet_until = 0  # no wake reported before this sample (the refractory period)
        self.name = self._model.id

    def process(self, samples: Samples) -> list[Wake]:
        # Whole 10 ms steps only (the rest waits for the next call), so the n-th feature of a
        # call ends exactly n steps after the audio fed before it: wakes get a sample position.
        # (The front end's first window is 30 ms: the very first features end 20 ms late.)
        audio = np.concatenate([self._rest, samples.astype(np.float32, copy=False)])
        usable = len(audio) - len(audio) % STEP
        start = -len(self._rest)  # where `audio` begins, counted in `samples`
        self._rest = audio[usable:]
        pcm = (np.clip(audio[:usable], -1.0, 1.0) * 32767).astype("<i2").tobytes()
        wakes: list[Wake] = []
        for index, feature in enumerate(self._features.process_streaming(pcm)):
            offset = start + (index + 1) * STEP
            prob = self._model.process_streaming_prob(feature)
            cutoff = self._model.probability_cutoff
            if prob is None or prob <= cutoff or self._fed + offset < self._quiet_until:
                continue
            wakes.append(Wake(self.name, round(prob, 3), offset))
            self._quiet_until = self._fed + offset + self._refractory
        self._fed += len(samples)
        return wakes

    def reset(self) -> None:
        self._features.reset()
        self._model.reset()
        self._rest = np.zeros(0, np.float32)


SHIPPED = tuple(m.value for m in Model)
"""The models inside pymicro-wakeword's wheel, okay_nabu (its default) first."""


def model_problem(model: str) -> str | None:
    """Why `[audio.wake] model` cannot be a model, without loading it; None when it can."""
    if model in SHIPPED or _model_config(model).is_file():
        return None
    return (
        f"{model!r} is neither a shipped model ({', '.join(SHIPPED)}) "
        "nor a microWakeWord .json/.tflite file"
    )


def _model_config(model: str) -> Path:
    return Path(model).expanduser().with_suffix(".json")  # a `.tflite` named: its `.json` beside


def _load(model: str) -> MicroWakeWord:
    try:
        if model in SHIPPED:
            return MicroWakeWord.from_builtin(Model(model))
        problem = model_problem(model)
        if problem is not None:
            raise WakeModelUnavailable(f"[audio.wake] model {problem}")
        return MicroWakeWord.from_config(_model_config(model))
    except (OSError, ValueError, KeyError) as exc:
        raise WakeModelUnavailable(f"[audio.wake] model {model!r} cannot be loaded: {exc}") from exc
