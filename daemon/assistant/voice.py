"""The seam between the voice pipeline (pipelines/) and the daemon.

The pipeline knows nothing of MQTT or sockets: its events come here and become bus events and the
assistant's state; its queries come here and go to the assistant, whose answers reach MQTT and the
socket like any other. `pipelines.voice` (heavy: onnxruntime, faster-whisper) is imported only when
a pipeline starts: at startup when `[audio] source` is not `none`, else on the first pushed PCM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.util
import io
import logging
import time
import wave
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daemon.assistant.assistant import Assistant
from daemon.core.config.schema import TektraConfig
from daemon.core.errors import TektraError
from daemon.core.events import (
    ErrorRaised,
    PartialTranscript,
    PipelineNotice,
    TranscriptReady,
    new_request_id,
)
from daemon.core.states import ANSWERING
from daemon.core.supervisor import cancel_and_wait
from daemon.models.manager.manager import Query
from pipelines.events import (
    DeviceState,
    PipelineError,
    PipelineState,
    Transcript,
    WakeDetected,
)

if TYPE_CHECKING:  # the module itself is imported only when a pipeline is started
    from pipelines.voice import VoiceQuery

log = logging.getLogger("tektra.voice")
VOICE_SESSION = "voice"
FIRST_FRAME_S = 5.0
"""How long `look` waits for a camera that has just opened to give its first frame."""


def camera_module() -> Any:
    # Imported when first needed: OpenCV is heavy, and a daemon without a camera never needs it.
    return importlib.import_module("pipelines.camera")


class VoiceBridge:
    """Hands the pipeline's queries to the assistant and its events to the bus."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.pipeline: Any = None
        self.on_barge_in: Callable[[], None] | None = None
        """Called when the wake word was heard over the daemon's own voice: stop speaking."""

    async def handle(self, query: VoiceQuery) -> None:
        """The pipeline's query handler: answer what was said (wake phrase stripped); the
        `transcript` event carries it as heard."""
        request_id = new_request_id("voice")
        # Published now, not when the answer starts: an earlier answer may still be streaming,
        # and what was heard is news at once (the pipeline calls us as soon as it transcribed).
        self.assistant.bus.publish(TranscriptReady(request_id, query.transcript.text))
        if not query.continues:
            self.assistant.manager.forget_session(VOICE_SESSION)
        question = Query(query.text, VOICE_SESSION, images=query.images, audio=query.audio_wav)
        try:
            await self.assistant.answer(
                request_id, question, stages_ms={"stt": round(query.transcript.stt_ms, 1)}
            )
        except TektraError:
            return  # already on the bus as an `error` event; the pipeline listens on
        if self.pipeline is not None:
            self.pipeline.note_answered()  # opens the wake phrase's follow-up window

    def note_answered(self) -> None:
        """(Re)open the follow-up window now: an answer was heard to its end."""
        if self.pipeline is not None:
            self.pipeline.note_answered()

    def on_event(self, event: object) -> None:
        """Pipeline events: states drive the assistant's state, the rest go on the bus."""
        if isinstance(event, PipelineState):
            # An answer's own states win: the pipeline's `idle` must not hide `responding`.
            if self.assistant.state not in ANSWERING:
                if event.state == "idle":
                    self.assistant.settle()
                else:
                    self.assistant.set_state(event.state)
            return
        if isinstance(event, Transcript):
            if not event.is_final:  # the final one is published with its query's id
                self.assistant.bus.publish(PartialTranscript(event.text))
            return
        if isinstance(event, WakeDetected) and event.barge_in and self.on_barge_in is not None:
            self.on_barge_in()
        if isinstance(event, PipelineError):
            self.assistant.bus.publish(ErrorRaised(None, event.code, event.message))
        if isinstance(event, DeviceState) and event.state in ("lost", "open"):
            lost = event.state == "lost"
            problem = f"{event.kind} lost: {event.detail}" if lost else None
            self.assistant.set_problem(event.kind, problem)
        data = (
            dataclasses.asdict(event)
            if dataclasses.is_dataclass(event) and not isinstance(event, type)
            else {}
        )
        self.assistant.bus.publish(PipelineNotice(type(event).__name__, dict(data)))


def voice_available() -> bool:
    # find_spec, not import: the pipeline imports heavy engines (onnxruntime, faster-whisper).
    return importlib.util.find_spec("pipelines.voice") is not None


class VoiceHost:
    """Owns the voice pipeline: started with the daemon when `[audio] source` names a device or
    file, or on the first pushed PCM when it is `none` (so a daemon without a microphone loads
    Whisper only once a client sends audio)."""

    def __init__(
        self, config: TektraConfig, bridge: VoiceBridge, spawn: Callable[[str, Any], None]
    ) -> None:
        self._config = config
        self._bridge = bridge
        self._spawn = spawn
        self.pipeline: Any = None
        bridge.assistant.on_muted.append(self.set_muted)  # the assistant holds mute
        self.hold: Callable[[], bool] | None = None
        """Asked as each microphone block arrives: True while the daemon's own voice plays."""
        self.echo_reference: Any = None
        """What the daemon's voice played (pipelines.echo.EchoReference), for barge-in."""

    @property
    def running(self) -> bool:
        return self.pipeline is not None

    @property
    def wanted_at_start(self) -> bool:
        return self._config.audio.source != "none"

    def start(self) -> None:
        if self.pipeline is not None:
            return
        if not voice_available():
            raise VoiceUnavailable("the voice pipeline (pipelines.voice) is not installed")
        module = importlib.import_module("pipelines.voice")
        self.pipeline = module.VoicePipeline.from_config(
            self._config,
            self._bridge.handle,
            self._bridge.on_event,
            image_capable=self._image_capable(),
        )
        self.pipeline.set_muted(self._bridge.assistant.muted)
        if self.hold is not None:
            self.pipeline.hold = self.hold
        self.pipeline.echo_reference = self.echo_reference
        self._bridge.pipeline = self.pipeline
        self._spawn("voice", self.pipeline.run)

    def _image_capable(self) -> bool:
        return any("image" in m.capabilities for m in self._config.models)

    def push_pcm(self, pcm: bytes, sample_rate: int = 16000) -> None:
        self.start()
        self.pipeline.push_pcm(pcm, sample_rate)

    def end_pcm(self) -> None:
        self.start()
        self.pipeline.end_pcm()

    async def camera_frame(self) -> bytes | None:
        """The camera's current frame as JPEG (for `look`), or None without one. The camera is
        read while the pipeline runs; a reader that has just opened gets a moment for its first
        frame, one that is lost gives none (a stale frame would be answered as if seen now).
        Where the pipeline reads no camera (no microphone yet, or frames never attached to
        spoken queries) the camera is opened for this one look."""
        camera = self.pipeline.camera if self.pipeline is not None else None
        if camera is not None:
            return await self._frame_of(camera)
        settings = self._config.camera
        if settings.source == "none" or not self._image_capable():
            return None  # nothing to look with, or no model that could see the frame
        reader = camera_module().CameraReader(settings.source, self._bridge.on_event)
        reading = asyncio.create_task(reader.run(), name="tektra-camera-look")
        try:
            return await self._frame_of(reader)
        finally:
            await cancel_and_wait(reading)

    async def _frame_of(self, camera: Any) -> bytes | None:
        settings = self._config.camera
        deadline = time.monotonic() + FIRST_FRAME_S
        frame = camera.latest(settings.max_frame_age_s)
        while frame is None and camera.state != "lost" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            frame = camera.latest(settings.max_frame_age_s)
        if frame is None:
            return None
        encode = camera_module().encode_jpeg
        return await asyncio.to_thread(encode, frame, settings.max_side)

    async def transcribe(self, wav: bytes) -> str:
        """What is said in a 16-bit PCM WAV, by the `[stt]` Whisper model (loaded once per
        process, shared with the pipeline's); empty when nothing was heard. A WAV that cannot be
        read is a ValueError."""
        audio = importlib.import_module("pipelines.audio")
        stt = importlib.import_module("pipelines.stt")

        def run() -> str:
            try:
                samples = audio.read_wav(io.BytesIO(wav))
            except (EOFError, wave.Error) as exc:
                raise ValueError(f"not a WAV file: {exc}") from exc
            transcriber = stt.load_transcriber(self._config.stt)
            return str(transcriber.transcribe(samples).text).strip()

        return await asyncio.to_thread(run)

    def set_muted(self, muted: bool) -> None:
        """Apply the assistant's mute to the running pipeline."""
        if self.pipeline is not None:
            self.pipeline.set_muted(muted)


class VoiceUnavailable(TektraError):
    code = "unavailable"
