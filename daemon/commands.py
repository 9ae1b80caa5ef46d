"""What each command does: the one dispatcher behind the socket and MQTT.

Front-ends parse a `Request` (daemon.protocol), then call `Commands.execute`; the result is a JSON
object for the reply. Streaming commands (ask, multimodal) also hand every chunk to `on_chunk`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from daemon.assistant import Assistant, ChunkSink
from daemon.config.schema import DaemonSettings
from daemon.errors import ConfigError, TektraError
from daemon.manager.manager import Query
from daemon.protocol import (
    AskArgs,
    LoadModelArgs,
    MicrophoneArgs,
    MultimodalArgs,
    ProtocolError,
    PushAudioArgs,
    Request,
    SayArgs,
    SwitchBackendArgs,
    SystemPromptArgs,
    decode_base64,
)


class VoiceControl(Protocol):
    """What the daemon needs of the voice pipeline (pipelines.voice.VoicePipeline has it)."""

    def push_pcm(self, pcm: bytes, sample_rate: int = 16000) -> None: ...

    def end_pcm(self) -> None: ...

    @property
    def running(self) -> bool: ...

    def set_muted(self, muted: bool) -> None: ...


class Speaking(Protocol):
    """What the daemon needs of its voice (daemon.speech.speaker.Speaker has it)."""

    async def say(self, request_id: str, text: str) -> dict[str, object]: ...

    async def stop(self) -> dict[str, object]: ...


class Unavailable(TektraError):
    code = "unavailable"


class ReloadRefused(TektraError):
    """models.toml on disk is invalid; the daemon goes on with the configuration it has."""

    code = "invalid_config"


class Commands:
    """Runs requests against the assistant (and the voice pipeline when there is one)."""

    def __init__(
        self,
        assistant: Assistant,
        *,
        voice: VoiceControl | None = None,
        links: Callable[[], dict[str, Any]] | None = None,
        speaker: Speaking | None = None,
    ) -> None:
        self.assistant = assistant
        self.voice = voice
        self.speaker = speaker
        self._links = links or dict
        self._started = time.monotonic()

    @property
    def limits(self) -> DaemonSettings:
        return self.assistant.config.daemon

    async def execute(self, request: Request, on_chunk: ChunkSink | None = None) -> dict[str, Any]:
        if isinstance(request.args, AskArgs | MultimodalArgs):
            return await self._answer(request, on_chunk)
        handler = getattr(self, f"_{request.command}", None)
        if handler is None:  # subscribe: the front-end streams events itself
            raise TektraError(f"'{request.command}' is not a command this front-end can run")
        result: dict[str, Any] = await handler(request)
        return result

    # --- answering ---------------------------------------------------------------------------

    async def _answer(self, request: Request, on_chunk: ChunkSink | None) -> dict[str, Any]:
        done = await self.assistant.answer(request.key, self._query(request), on_chunk)
        wire = done.to_wire()
        del wire["event"], wire["id"]
        return wire

    def _query(self, request: Request) -> Query:
        args = request.args
        limit = self.limits.max_payload_bytes
        if isinstance(args, AskArgs):
            image = decode_base64(args.image, "image", limit, request.id) if args.image else None
            pictures = (image,) if image is not None else ()
            return Query(args.text, args.session, args.model, args.preset, pictures)
        assert isinstance(args, MultimodalArgs)
        images = tuple(
            decode_base64(image, f"images[{i}]", limit, request.id)
            for i, image in enumerate(args.images)
        )
        audio = decode_base64(args.audio, "audio", limit, request.id) if args.audio else None
        if not args.text and not images and audio is None:
            raise ProtocolError(
                "bad_request",
                "multimodal: send at least one of `text`, `images`, `audio`",
                request.id,
            )
        return Query(args.text, args.session, args.model, args.preset, images, audio)

    # --- the other commands ------------------------------------------------------------------

    async def _status(self, _: Request) -> dict[str, Any]:
        a = self.assistant
        return {
            "node_id": a.config.daemon.node_id,
            "state": a.state,
            "problems": dict(a.problems),
            "muted": a.muted,
            "model": a.model,
            "backend": a.backend,
            "answers": a.answers,
            "voice": self.voice is not None and self.voice.running,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "backends": {
                name: asdict(status) for name, status in a.manager.backend_status().items()
            },
            **self._links(),
        }

    async def _models(self, _: Request) -> dict[str, Any]:
        return {"models": [asdict(m) for m in self.assistant.manager.list_models()]}

    async def _load_model(self, request: Request) -> dict[str, Any]:
        args = request.args
        assert isinstance(args, LoadModelArgs)
        backend = await self.assistant.load_model(args.model, args.backend)
        return {"model": args.model, "backend": backend}

    async def _switch_backend(self, request: Request) -> dict[str, Any]:
        args = request.args
        assert isinstance(args, SwitchBackendArgs)
        self.assistant.manager.switch_backend(args.backend)
        return {"backend": args.backend}

    async def _set_system_prompt(self, request: Request) -> dict[str, Any]:
        args = request.args
        assert isinstance(args, SystemPromptArgs)
        self.assistant.manager.set_system_prompt(args.prompt)
        return {"system_prompt": args.prompt}

    async def _validate(self, _: Request) -> dict[str, Any]:
        issues = self.assistant.manager.validate_config()
        return {"ok": not issues, "issues": [str(issue) for issue in issues]}

    async def _reload(self, _: Request) -> dict[str, Any]:
        try:
            config = await self.assistant.reload()
        except ConfigError as exc:
            raise ReloadRefused(
                "models.toml is invalid; the running configuration is kept: "
                + "; ".join(str(issue) for issue in exc.issues)
            ) from exc
        return {"reloaded": True, "models": [m.id for m in config.models]}

    async def _push_audio(self, request: Request) -> dict[str, Any]:
        args = request.args
        assert isinstance(args, PushAudioArgs)
        pcm = decode_base64(args.pcm, "pcm", self.limits.max_payload_bytes, request.id)
        if len(pcm) % 2:
            raise ProtocolError(
                "bad_request", "`pcm` must be 16-bit samples: its length in bytes must be even"
            )
        if self.voice is None:
            raise Unavailable("this daemon has no voice pipeline")
        try:
            self.voice.push_pcm(pcm, args.sample_rate)
        except ValueError as exc:  # a sample rate the resampler cannot take
            raise ProtocolError("bad_request", f"push_audio: {exc}", request.id) from exc
        if args.end:
            self.voice.end_pcm()
        return {"samples": len(pcm) // 2}

    async def _mute(self, _: Request) -> dict[str, Any]:
        return self._set_microphone(False)

    async def _unmute(self, _: Request) -> dict[str, Any]:
        return self._set_microphone(True)

    async def _microphone(self, request: Request) -> dict[str, Any]:
        args = request.args
        assert isinstance(args, MicrophoneArgs)
        return self._set_microphone(args.on)

    async def _say(self, request: Request) -> dict[str, Any]:
        args = request.args
        assert isinstance(args, SayArgs)
        if self.speaker is None:
            raise Unavailable("this daemon has no voice")
        return dict(await self.speaker.say(request.key, args.text))

    async def _stop(self, _: Request) -> dict[str, Any]:
        if self.speaker is None:
            raise Unavailable("this daemon has no voice")
        return dict(await self.speaker.stop())

    def _set_microphone(self, on: bool) -> dict[str, Any]:
        if self.voice is not None:
            self.voice.set_muted(not on)
        self.assistant.set_muted(not on)
        return {"muted": not on}
