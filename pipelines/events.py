"""What the capture pipelines report: one frozen dataclass per fact.

The pipelines know nothing of MQTT or sockets; the daemon turns these into bus events. Times named
`*_s` without a further word are seconds of audio since the pipeline started (stream time), so
they stay meaningful when audio is replayed faster than real time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StateName = Literal["idle", "listening", "transcribing"]
DeviceKind = Literal["microphone", "camera"]
DeviceStateName = Literal["open", "lost", "reopening", "closed"]


@dataclass(frozen=True)
class PipelineState:
    """The voice pipeline moved to a new stage."""

    state: StateName
    """`idle`: waiting for speech; `listening`: inside an utterance; `transcribing`: running STT."""


@dataclass(frozen=True)
class SpeechStarted:
    """The VAD heard enough speech to open an utterance."""

    at_s: float
    """Stream time of the first sample of the utterance (pre-roll included)."""


@dataclass(frozen=True)
class SpeechEnded:
    """An utterance closed and goes to speech-to-text."""

    duration_s: float
    """Length of the utterance audio, pre-roll and trailing silence included."""
    reason: Literal["silence", "early", "max_length", "end_of_stream", "muted"] = "silence"
    """Why it closed: enough silence, the `max_utterance_s` cap, the source ended, or muting
    (a muted utterance is discarded, not transcribed)."""
    hangover_s: float = 0.0
    """Silence after the last voiced sample that was waited out before closing (the hangover)."""


@dataclass(frozen=True)
class Transcript:
    """What Whisper heard in one utterance, after the hallucination filter."""

    text: str
    """The transcript as Whisper wrote it (wake phrase not stripped)."""
    language: str
    """Language code Whisper used (`en` for English-only models)."""
    start_s: float
    """Stream time where the utterance starts."""
    end_s: float
    """Stream time where the utterance ends."""
    stt_ms: float
    """Speech-to-text time in milliseconds: for a final transcript, from the end of the
    utterance (near 0 when a partial had already heard it all); for a partial, its own run."""
    is_final: bool = True
    """False for a partial transcript of an utterance still being spoken."""


@dataclass(frozen=True)
class WakeDetected:
    """The wake word was heard in the audio (`[audio.wake] engine = "micro"`)."""

    name: str
    """The wake-word model's id (`okay_nabu`)."""
    score: float
    """The model's smoothed probability when it fired (above the model's own cut-off)."""
    at_s: float
    """Stream time where it fired, a little after the wake word ends."""
    barge_in: bool = False
    """Heard over the daemon's own voice (echo cancelled): the daemon stops speaking."""


@dataclass(frozen=True)
class TranscriptIgnored:
    """A transcript that did not become a query (no wake phrase, or only the wake phrase)."""

    text: str
    reason: Literal["not_addressed", "wake_only", "no_words", "no_wake"]
    """`not_addressed`: no wake phrase and no follow-up window; `wake_only`: the wake phrase with
    nothing after it, which opens the follow-up window for the next utterance; `no_words`: the
    utterance held no words (`text` is empty: what Whisper wrote was dropped as invented);
    `no_wake`: no wake word was heard in it (engine `micro`), so it was never transcribed
    (`text` is empty)."""


@dataclass(frozen=True)
class PushedAudioEnded:
    """A client's pushed audio ended (`push_audio` with `end`) and was segmented to its end."""

    utterances: int
    """Utterances it opened since the previous end: 0 means it held no speech at all."""


@dataclass(frozen=True)
class DeviceState:
    """A capture device changed state; a lost device is retried with backoff, never fatal."""

    kind: DeviceKind
    name: str
    """The configured source (`auto`, a device name or index, a path or URL)."""
    state: DeviceStateName
    detail: str = ""
    """Why it was lost, or what was opened (rate, resolution), for humans."""


@dataclass(frozen=True)
class FramesDropped:
    """Audio arrived faster than the pipeline consumed it, and the oldest chunks were dropped."""

    count: int
    """Chunks dropped since the previous FramesDropped event."""
    total: int
    """Chunks dropped since the pipeline started."""


@dataclass(frozen=True)
class PipelineError:
    """A stage failed on one utterance (e.g. speech-to-text); the pipeline goes on."""

    code: str
    message: str


PipelineEvent = (
    PipelineState
    | SpeechStarted
    | SpeechEnded
    | Transcript
    | TranscriptIgnored
    | WakeDetected
    | PushedAudioEnded
    | DeviceState
    | FramesDropped
    | PipelineError
)
