"""Requests as the socket and MQTT receive them: parse, validate, and name every problem.

A request is a JSON object with an `id` (string or integer, echoed in every reply) and the command's
fields. On the socket the command is the `cmd` field; over MQTT it is the last topic level
(`<prefix>/<node_id>/command/<cmd>`). Each command's fields are a strict pydantic model, so a
missing or mistyped field is answered with its name and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daemon.config.load import describe
from daemon.errors import TektraError

RequestId = str | int | None


class ProtocolError(TektraError):
    """A request that cannot be run as sent; `code` says which rule it broke."""

    def __init__(self, code: str, message: str, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoArgs(Args):
    pass


class AskArgs(Args):
    text: str = Field(min_length=1)
    model: str | None = None
    preset: str | None = None
    session: str = "default"
    image: str | None = None
    """Base64 of one JPEG/PNG image sent with the question."""


class MultimodalArgs(Args):
    text: str = ""
    images: list[str] = []
    """Base64 of JPEG/PNG images."""
    audio: str | None = None
    """Base64 of a 16 kHz mono WAV."""
    model: str | None = None
    preset: str | None = None
    session: str = "default"


class LoadModelArgs(Args):
    model: str = Field(min_length=1)
    backend: str | None = None


class SwitchBackendArgs(Args):
    backend: str | None
    """Backend tried first from now on; null goes back to the configured order."""


class SystemPromptArgs(Args):
    prompt: str


class PushAudioArgs(Args):
    pcm: str
    """Base64 of 16-bit little-endian mono PCM."""
    sample_rate: int = Field(16000, ge=8000, le=48000)
    end: bool = False
    """True on the last piece of an utterance: close it now instead of waiting for silence."""


class MicrophoneArgs(Args):
    on: bool


class SayArgs(Args):
    text: str = Field(min_length=1)
    """Spoken through the daemon's speaker; the reply comes once it has been played."""


COMMANDS: dict[str, type[Args]] = {
    "ask": AskArgs,
    "multimodal": MultimodalArgs,
    "subscribe": NoArgs,
    "status": NoArgs,
    "models": NoArgs,
    "load_model": LoadModelArgs,
    "switch_backend": SwitchBackendArgs,
    "set_system_prompt": SystemPromptArgs,
    "validate": NoArgs,
    "reload": NoArgs,
    "push_audio": PushAudioArgs,
    "mute": NoArgs,
    "unmute": NoArgs,
    "microphone": MicrophoneArgs,
    "say": SayArgs,
    "stop": NoArgs,
}
STREAMING = frozenset({"ask", "multimodal"})
"""Commands whose reply is a stream of chunks followed by the complete answer."""


@dataclass(frozen=True)
class Request:
    id: RequestId
    command: str
    args: Args

    @property
    def key(self) -> str:
        """The id as events carry it (always a string)."""
        return "" if self.id is None else str(self.id)


def parse_line(line: bytes) -> Request:
    """A socket request: one JSON object naming its command in `cmd`."""
    fields = _json_object(line, "request")
    request_id = _request_id(fields)
    command = fields.pop("cmd", None)
    if command is None:
        raise ProtocolError("bad_request", "missing field `cmd` (the command to run)", request_id)
    if not isinstance(command, str):
        raise ProtocolError("bad_request", "`cmd` must be a string", request_id)
    return parse_command(command, fields, request_id)


def parse_payload(command: str, payload: bytes) -> Request:
    """An MQTT command: the topic names the command, the payload is a JSON object."""
    fields = _json_object(payload, f"command/{command} payload")
    request_id = _request_id(fields)
    return parse_command(command, fields, request_id)


def parse_command(command: str, fields: dict[str, Any], request_id: RequestId) -> Request:
    kind = COMMANDS.get(command)
    if kind is None:
        known = ", ".join(sorted(COMMANDS))
        raise ProtocolError(
            "unknown_command", f"unknown command '{command}' (commands: {known})", request_id
        )
    try:
        args = kind.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"`{'.'.join(str(p) for p in err['loc'])}`: {describe(err)}" for err in exc.errors()
        )
        raise ProtocolError("bad_request", f"{command}: {problems}", request_id) from None
    return Request(request_id, command, args)


def decode_base64(value: str, field: str, limit: int, request_id: RequestId = None) -> bytes:
    """Decode a base64 field, refusing bad characters and anything larger than `limit` bytes."""
    if len(value) > (limit * 4) // 3 + 4:
        raise ProtocolError(
            "too_large", f"`{field}` is larger than the {limit}-byte limit", request_id
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(
            "bad_base64", f"`{field}` is not valid base64: {exc}", request_id
        ) from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad_request", f"{what} must be a JSON object, got {_kind(value)}")
    return value


def _request_id(fields: dict[str, Any]) -> RequestId:
    if "id" not in fields:
        raise ProtocolError("bad_request", "missing field `id` (echoed in every reply)")
    request_id = fields.pop("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        raise ProtocolError("bad_request", "`id` must be a string or an integer")
    return request_id


def _kind(value: object) -> str:
    names = {list: "an array", str: "a string", int: "a number", float: "a number"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return names.get(type(value), type(value).__name__)


def error_reply(request_id: RequestId, code: str, message: str) -> dict[str, Any]:
    """The one shape of every error answer: `{"id", "error": {"code", "message"}}`."""
    return {"id": request_id, "error": {"code": code, "message": message}}
