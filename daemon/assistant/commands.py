"""What each command does, and the one path a request takes from bytes to reply.

`COMMANDS` is the one table of commands: name -> fields model, handler, whether it streams, which
front-ends may use it, and how it reads a plain MQTT payload. Both front-ends (socket, MQTT) read a
request with `Commands.read_line` / `Commands.read_message` and run it with `Commands.run_request`,
which never raises (but for cancellation): every outcome, good or bad, is an `Outcome` to send.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass
from typing import Any, Generic, Protocol, TypeVar

from daemon.assistant.assistant import Assistant, ChunkSink
from daemon.assistant.protocol import (
    Args,
    AskArgs,
    CancelArgs,
    Envelope,
    LoadModelArgs,
    LookArgs,
    MicrophoneArgs,
    MultimodalArgs,
    NewConversationArgs,
    NoArgs,
    PlainReader,
    ProtocolError,
    PushAudioArgs,
    Request,
    SayArgs,
    SwitchBackendArgs,
    SystemPromptArgs,
    check_args,
    decode_base64,
    error_reply,
    peek_id,
    plain_switch,
    plain_text,
    read_line,
    read_payload,
)
from daemon.assistant.voice import VOICE_SESSION
from daemon.core.config.schema import DaemonSettings
from daemon.core.errors import ConfigError, TektraError
from daemon.core.events import RequestId, new_request_id
from daemon.models.manager.manager import Query

log = logging.getLogger("tektra.commands")

Result = dict[str, Any]
LineSink = Callable[[dict[str, Any]], None]
"""Sends a reply line of the caller's own (the socket's), its `id` added; never waits."""
A = TypeVar("A", bound=Args)
FRONT_ENDS = frozenset({"socket", "mqtt"})


class VoiceControl(Protocol):
    """What the daemon needs of the voice pipeline (pipelines.voice.VoicePipeline has it)."""

    def push_pcm(self, pcm: bytes, sample_rate: int = 16000) -> None: ...

    def end_pcm(self) -> None: ...

    @property
    def running(self) -> bool: ...

    def set_muted(self, muted: bool) -> None: ...


class Speaking(Protocol):
    """What the daemon needs of its voice (daemon.speech.speaker.Speaker has it)."""

    async def say(self, request_id: RequestId, text: str) -> dict[str, object]: ...

    async def stream(
        self, request_id: RequestId, text: str, send: LineSink
    ) -> dict[str, object]: ...

    async def stop(self) -> dict[str, object]: ...


Transcribe = Callable[[bytes], Awaitable[str]]
"""What is said in a WAV (Tektra's own speech-to-text); ValueError for one it cannot read."""
CameraFrame = Callable[[], Awaitable[bytes | None]]
"""The camera's current frame as JPEG, or None when there is no camera or no fresh frame."""


class Unavailable(TektraError):
    code = "unavailable"


class ReloadRefused(TektraError):
    """models.toml on disk is invalid; the daemon goes on with the configuration it has."""

    code = "invalid_config"


@dataclass(frozen=True)
class Call:
    """One request as its handler sees it."""

    id: RequestId
    front_end: str
    on_chunk: ChunkSink | None = None
    """Where a streaming command's chunks go besides the bus (the socket's chunk lines)."""
    session: str | None = None
    """The caller's own conversation (a socket connection's); None: each question stands alone."""
    on_line: LineSink | None = None
    """Where a streaming command's other lines go (a `say` with `stream`'s audio)."""


@dataclass(frozen=True)
class Command(Generic[A]):
    """One row of the command table."""

    args: type[A]
    run: Callable[[Commands, A, Call], Awaitable[Result]] | None
    """None: the front-end serves it itself (`subscribe`)."""
    streaming: bool = False
    """The reply is a stream of chunks, then the complete answer (which on MQTT is `response`)."""
    front_ends: frozenset[str] = FRONT_ENDS
    plain: PlainReader | None = None
    """How a plain (not JSON) MQTT payload reads, where its meaning is unambiguous."""

    @property
    def optional(self) -> bool:
        """Every field has a default, so an empty payload is a complete request."""
        return not any(field.is_required() for field in self.args.model_fields.values())


@dataclass(frozen=True)
class Outcome:
    """What a front-end sends back for one request: its `result`, or an error."""

    id: RequestId | None
    command: str | None
    result: Result | None = None
    code: str = ""
    message: str = ""
    on_bus: bool = False
    """The error is an answer's own failure, already published on the bus (and so on MQTT)."""

    @classmethod
    def failed(cls, request_id: RequestId | None, command: str | None, exc: TektraError) -> Outcome:
        return cls(request_id, command, code=exc.code, message=exc.message)

    def socket_line(self) -> dict[str, Any]:
        if self.result is not None:
            return {"id": self.id, "result": self.result}
        return error_reply(self.id, self.code, self.message)


class Commands:
    """Reads requests, runs them against the assistant (and the voice pipeline when there is
    one), and turns every result or failure into an `Outcome`."""

    def __init__(
        self,
        assistant: Assistant,
        *,
        voice: VoiceControl | None = None,
        links: Callable[[], dict[str, Any]] | None = None,
        speaker: Speaking | None = None,
        entities: Callable[[], list[dict[str, Any]]] | None = None,
        camera: CameraFrame | None = None,
        transcribe: Transcribe | None = None,
    ) -> None:
        self.assistant = assistant
        self.camera = camera
        self.transcribe = transcribe
        self.voice = voice
        self.speaker = speaker
        self._links = links or dict
        self._entities = entities or list
        self._started = time.monotonic()

    @property
    def limits(self) -> DaemonSettings:
        return self.assistant.config.daemon

    # --- reading -----------------------------------------------------------------------------

    def read_line(self, line: bytes) -> Request | Outcome:
        """A socket line: the request to run, or the error to send back."""
        try:
            return self._request(read_line(line), "socket", None)
        except ProtocolError as exc:
            return Outcome.failed(exc.request_id, None, exc)

    def read_message(
        self, name: str, payload: bytes, allowed: Collection[str]
    ) -> Request | Outcome:
        """An MQTT message on `command/<name>`: the request to run, or the error to publish.
        `allowed` is the front-end's allow-list (`[mqtt] commands`)."""
        command = COMMANDS.get(name)
        try:
            if len(payload) > self.limits.max_request_bytes:
                limit = self.limits.max_request_bytes
                raise ProtocolError("too_large", f"{name}: the payload is over {limit} bytes")
            if command is None:
                raise _unknown(name, "mqtt", allowed, peek_id(payload))
            envelope = read_payload(name, payload, plain=command.plain, optional=command.optional)
            return self._request(envelope, "mqtt", allowed)
        except ProtocolError as exc:
            return Outcome.failed(exc.request_id, name, exc)

    def _request(
        self, envelope: Envelope, front_end: str, allowed: Collection[str] | None
    ) -> Request:
        name, request_id = envelope.command, envelope.id
        command = COMMANDS.get(name)
        if command is None:
            raise _unknown(name, front_end, allowed, request_id)
        if front_end not in command.front_ends:
            where = " or ".join(sorted(command.front_ends))
            hint = " (over MQTT, subscribe to the topics instead)" if name == "subscribe" else ""
            message = f"{name} works over the {where} only{hint}"
            raise ProtocolError("unsupported", message, request_id)
        if allowed is not None and name not in allowed:
            message = (
                f'{name} is not allowed over {front_end.upper()}: add "{name}" to '
                f"[{front_end}] commands in models.toml to allow it"
            )
            raise ProtocolError("forbidden", message, request_id)
        if request_id is None:
            request_id = new_request_id(front_end)
        args = check_args(command.args, envelope, request_id)
        return Request(request_id, name, args, front_end)

    # --- running -----------------------------------------------------------------------------

    def streaming(self, request: Request) -> bool:
        audio = isinstance(request.args, SayArgs) and request.args.stream
        return COMMANDS[request.command].streaming or audio

    async def run_request(
        self,
        request: Request,
        on_chunk: ChunkSink | None = None,
        *,
        session: str | None = None,
        on_line: LineSink | None = None,
    ) -> Outcome:
        """Run a request read by `read_line` / `read_message`; never raises but for
        cancellation. A bug in one command is logged with its traceback and reported as
        `internal`; everything a user caused has its own code. `session` is the caller's own
        conversation (None: each of its questions stands alone), used when a request names none."""
        command = COMMANDS[request.command]
        if command.run is None:
            exc = ProtocolError("unsupported", f"{request.command} is served by the front-end")
            return Outcome.failed(request.id, request.command, exc)
        try:
            result = await command.run(
                self, request.args, Call(request.id, request.front_end, on_chunk, session, on_line)
            )
        except TektraError as exc:
            # An answer's own failure is already on the bus (assistant.answer publishes it);
            # a request refused before answering (bad base64, …) is not.
            on_bus = command.streaming and not isinstance(exc, ProtocolError)
            return Outcome(request.id, request.command, None, exc.code, exc.message, on_bus)
        except ConnectionError:
            raise  # the front-end's own client went away (while it took chunks): its business
        except Exception as exc:
            log.exception("command %s failed", request.command)
            message = f"{request.command} failed: {type(exc).__name__}: {exc}"
            return Outcome(request.id, request.command, code="internal", message=message)
        return Outcome(request.id, request.command, result)

    # --- conversations -----------------------------------------------------------------------

    def open_conversation(self) -> str:
        """A new caller's own conversation: a name no other caller can guess or pick by chance."""
        return f"caller-{uuid.uuid4().hex}"

    def close_conversation(self, session: str) -> None:
        """The caller went away: its conversation goes with it."""
        self.assistant.manager.forget_session(session)

    async def _new_conversation(self, args: NewConversationArgs, call: Call) -> Result:
        """Start the named conversation afresh, else the caller's own. A caller without one
        (MQTT says nothing of who sends, and each of its questions stands alone anyway) means
        the spoken conversation: that is what Home Assistant's button is pressed for."""
        name = args.session or call.session or VOICE_SESSION
        forgotten = self.assistant.manager.forget_session(name)
        shown = args.session if args.session or call.session else VOICE_SESSION
        return {"session": shown, "forgotten_exchanges": forgotten}

    # --- answering ---------------------------------------------------------------------------

    async def _ask(self, args: AskArgs, call: Call) -> Result:
        limit = self.limits.max_payload_bytes
        image = decode_base64(args.image, "image", limit) if args.image else None
        pictures = (image,) if image is not None else ()
        session = args.session or call.session
        query = Query(args.text, session, args.model, args.preset, pictures)
        return await self._answer(query, call)

    async def _multimodal(self, args: MultimodalArgs, call: Call) -> Result:
        limit = self.limits.max_payload_bytes
        images = tuple(
            decode_base64(image, f"images[{i}]", limit) for i, image in enumerate(args.images)
        )
        audio = decode_base64(args.audio, "audio", limit) if args.audio else None
        video_limit = int(self.assistant.config.media.max_video_mb * 2**20)
        video = (decode_base64(args.video, "video", video_limit),) if args.video else ()
        if not args.text and not images and audio is None and not video:
            raise ProtocolError(
                "bad_request",
                "multimodal: send at least one of `text`, `images`, `audio`, `video`",
            )
        session = args.session or call.session
        if audio is not None and not args.text:
            # The seed's process_audio_with_transcription: the utterance goes with what was said
            # in it, so a model that takes no audio still gets the question.
            transcript = await self._transcript(audio)
            query = Query(transcript, session, args.model, args.preset, images, audio, video)
            return {**await self._answer(query, call), "transcript": transcript}
        query = Query(args.text, session, args.model, args.preset, images, audio, video)
        return await self._answer(query, call)

    async def _transcript(self, audio: bytes) -> str:
        if self.transcribe is None:
            message = "this daemon has no speech-to-text: send `text` with the `audio`"
            raise ProtocolError("unavailable", message)
        try:
            transcript = await self.transcribe(audio)
        except ValueError as exc:
            message = f"multimodal: `audio` must be a 16-bit PCM WAV ({exc})"
            raise ProtocolError("bad_request", message) from None
        if not transcript:
            raise ProtocolError("no_speech", "multimodal: no speech was heard in `audio`")
        return transcript

    async def _look(self, args: LookArgs, call: Call) -> Result:
        """Ask about what the camera sees now (the seed's `process_camera_frame`)."""
        frame = await self.camera() if self.camera is not None else None
        if frame is None:
            # A ProtocolError: refused before answering, so not on the bus (MQTT publishes it).
            raise ProtocolError(
                "no_camera",
                "no camera frame to look at: set [camera] source in models.toml (a device, "
                "a file or a stream) and give the daemon a model that takes images",
            )
        session = args.session or call.session
        query = Query(args.text, session, args.model, args.preset, (frame,))
        return await self._answer(query, call)

    async def _answer(self, query: Query, call: Call) -> Result:
        done = await self.assistant.answer(call.id, query, call.on_chunk)
        wire = done.to_wire()
        del wire["event"], wire["id"]
        return wire

    # --- the other commands ------------------------------------------------------------------

    async def _status(self, _: NoArgs, __: Call) -> Result:
        a = self.assistant
        return {
            "node_id": a.config.daemon.node_id,
            "state": a.state,
            "problems": dict(a.problems),
            "muted": a.muted,
            "model": a.model,
            "loading": a.loading,
            "backend": a.backend,
            "answers": a.answers,
            "conversations": len(a.manager.sessions),
            "voice": self.voice is not None and self.voice.running,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "backends": {
                name: asdict(status) for name, status in a.manager.backend_status().items()
            },
            **self._links(),
        }

    async def _list_entities(self, _: NoArgs, __: Call) -> Result:
        return {"entities": self._entities()}

    async def _models(self, _: NoArgs, __: Call) -> Result:
        return {"models": [asdict(m) for m in await self.assistant.manager.list_models()]}

    async def _stats(self, _: NoArgs, __: Call) -> Result:
        return {"routing": self.assistant.manager.router.stats()}

    async def _load_model(self, args: LoadModelArgs, _: Call) -> Result:
        backend = await self.assistant.load_model(args.model, args.backend)
        return {"model": args.model, "backend": backend}

    async def _switch_backend(self, args: SwitchBackendArgs, _: Call) -> Result:
        self.assistant.manager.switch_backend(args.backend)
        return {"backend": args.backend}

    async def _set_system_prompt(self, args: SystemPromptArgs, _: Call) -> Result:
        self.assistant.manager.set_system_prompt(args.prompt)
        return {"system_prompt": args.prompt}

    async def _validate(self, _: NoArgs, __: Call) -> Result:
        issues = await self.assistant.manager.validate_config()
        return {"ok": not issues, "issues": [str(issue) for issue in issues]}

    async def _reload(self, _: NoArgs, __: Call) -> Result:
        try:
            done = await self.assistant.reload()
        except ConfigError as exc:
            raise ReloadRefused(
                "models.toml is invalid; the running configuration is kept: "
                + "; ".join(str(issue) for issue in exc.issues)
            ) from exc
        models = [m.id for m in done.config.models]
        return {"reloaded": True, "models": models, "kept": done.kept, "dropped": done.dropped}

    async def _push_audio(self, args: PushAudioArgs, _: Call) -> Result:
        pcm = decode_base64(args.pcm, "pcm", self.limits.max_payload_bytes)
        if len(pcm) % 2:
            raise ProtocolError(
                "bad_request", "`pcm` must be 16-bit samples: its length in bytes must be even"
            )
        if self.voice is None:
            raise Unavailable("this daemon has no voice pipeline")
        try:
            self.voice.push_pcm(pcm, args.sample_rate)
        except ValueError as exc:  # a sample rate the resampler cannot take
            raise ProtocolError("bad_request", f"push_audio: {exc}") from exc
        if args.end:
            self.voice.end_pcm()
        return {"samples": len(pcm) // 2}

    async def _mute(self, _: NoArgs, __: Call) -> Result:
        return self._set_microphone(False)

    async def _unmute(self, _: NoArgs, __: Call) -> Result:
        return self._set_microphone(True)

    async def _microphone(self, args: MicrophoneArgs, _: Call) -> Result:
        return self._set_microphone(args.on)

    async def _cancel(self, args: CancelArgs, _: Call) -> Result:
        # An empty list says truthfully that nothing was running (a Home Assistant button may be
        # pressed at any time): not an error.
        return {"cancelled": self.assistant.stop(args.target)}

    async def _say(self, args: SayArgs, call: Call) -> Result:
        if self.speaker is None:
            raise Unavailable("this daemon has no voice")
        if args.stream:
            if call.on_line is None:
                raise ProtocolError("unsupported", "say: `stream` works over the socket only")
            return dict(await self.speaker.stream(call.id, args.text, call.on_line))
        return dict(await self.speaker.say(call.id, args.text))

    async def _stop(self, _: NoArgs, __: Call) -> Result:
        """Silence at once, and stop the answer being written: nobody is to hear it. A daemon
        that does not speak still stops the answer (Home Assistant's button is always there)."""
        silenced = dict(await self.speaker.stop()) if self.speaker is not None else {"stopped": []}
        return {**silenced, "cancelled": self.assistant.stop(None)}

    def _set_microphone(self, on: bool) -> Result:
        self.assistant.set_muted(not on)  # the microphone follows through `on_muted`
        return {"muted": not on}


def _unknown(
    name: str,
    front_end: str,
    allowed: Collection[str] | None,
    request_id: RequestId | None = None,
) -> ProtocolError:
    usable = [n for n, c in COMMANDS.items() if front_end in c.front_ends]
    if allowed is not None:
        usable = [n for n in usable if n in allowed]
    shown = name[:60].encode("utf-8", "backslashreplace").decode("utf-8")
    message = f"unknown command '{shown}' (commands: {', '.join(sorted(usable))})"
    return ProtocolError("unknown_command", message, request_id)


COMMANDS: dict[str, Command[Any]] = {
    "ask": Command(AskArgs, Commands._ask, streaming=True, plain=plain_text),
    "multimodal": Command(MultimodalArgs, Commands._multimodal, streaming=True),
    "look": Command(LookArgs, Commands._look, streaming=True, plain=plain_text),
    "subscribe": Command(NoArgs, None, front_ends=frozenset({"socket"})),
    "status": Command(NoArgs, Commands._status),
    "models": Command(NoArgs, Commands._models),
    "stats": Command(NoArgs, Commands._stats),
    "load_model": Command(LoadModelArgs, Commands._load_model),
    "switch_backend": Command(SwitchBackendArgs, Commands._switch_backend),
    "set_system_prompt": Command(SystemPromptArgs, Commands._set_system_prompt),
    "validate": Command(NoArgs, Commands._validate),
    "reload": Command(NoArgs, Commands._reload),
    "push_audio": Command(PushAudioArgs, Commands._push_audio),
    "mute": Command(NoArgs, Commands._mute),
    "unmute": Command(NoArgs, Commands._unmute),
    "microphone": Command(MicrophoneArgs, Commands._microphone, plain=plain_switch),
    "new_conversation": Command(NewConversationArgs, Commands._new_conversation),
    "cancel": Command(CancelArgs, Commands._cancel),
    "say": Command(SayArgs, Commands._say, plain=plain_text),
    "stop": Command(NoArgs, Commands._stop),
    "entities": Command(NoArgs, Commands._list_entities),
}
"""Every command the daemon knows, by the name the socket's `cmd` and MQTT's topic give it."""
