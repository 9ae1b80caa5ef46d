"""Requests as the socket and MQTT receive them: read, check, and name every problem.

A request is a JSON object with an optional `id` (string or integer, echoed with its type in every
reply; one is made up when it is missing) and the command's fields. On the socket the command is
the `cmd` field; over MQTT it is the last topic level (`<prefix>/<node_id>/command/<cmd>`), and a
few commands also take a plain payload (see `plain_text`, `plain_switch`). Each command's fields
are a strict pydantic model, so a missing or mistyped field is answered with its name.

The JSON reader has limits of its own, because a request is someone else's input: numbers of at
most `MAX_DIGITS` digits, at most `MAX_DEPTH` levels of nesting, and strings of real characters
(a lone surrogate such as `\\ud800` is valid JSON syntax but no character, and it would break every
reply that carried it). Whatever breaks a rule is refused with `bad_json`, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from daemon.core.errors import TektraError
from daemon.core.events import RequestId
from daemon.models.manager.manager import LOOK_QUESTION

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects in one request (ours need 3)."""
MAX_DIGITS = 40
"""Longest integer, in digits (Python's own limit is 4,300, and a ValueError past it)."""
MAX_ID_CHARS = 256
"""Longest string `id`."""

PlainReader = Callable[[str], dict[str, Any]]
"""Reads a command's fields from a payload that is not a JSON object (MQTT only)."""


class ProtocolError(TektraError):
    """A request that cannot be run as sent; `code` says which rule it broke."""

    def __init__(self, code: str, message: str, request_id: RequestId | None = None) -> None:
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
    session: str | None = Field(None, min_length=1, max_length=200)
    """A conversation shared by name; without it, the caller's own (see README)."""
    image: str | None = None
    """Base64 of one JPEG/PNG image sent with the question."""


class MultimodalArgs(Args):
    text: str = ""
    images: list[str] = []
    """Base64 of JPEG/PNG images."""
    audio: str | None = None
    """Base64 of a 16 kHz mono WAV."""
    video: str | None = None
    """Base64 of one short clip (any container FFmpeg reads), at most `[media] max_video_mb`;
    it reaches the model as `[media] video_frames` frames sampled evenly."""
    model: str | None = None
    preset: str | None = None
    session: str | None = Field(None, min_length=1, max_length=200)


class LookArgs(Args):
    text: str = Field(LOOK_QUESTION, min_length=1)
    """The question asked about the camera's current frame."""
    model: str | None = None
    preset: str | None = None
    session: str | None = Field(None, min_length=1, max_length=200)


class NewConversationArgs(Args):
    session: str | None = Field(None, min_length=1, max_length=200)
    """The conversation to start afresh; without it, the caller's own."""


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


class CancelArgs(Args):
    target: str | int | None = None
    """The request id of the answer to stop; by default the answer streaming now."""


class SayArgs(Args):
    text: str = Field(min_length=1)
    """Spoken through the daemon's speaker; the reply comes once it has been played."""
    stream: bool = False
    """Socket only: the audio comes back to the caller as `{"id", "audio", "rate"}` lines
    (base64 16-bit little-endian mono PCM) instead of being played; then the `result`."""


@dataclass(frozen=True)
class Request:
    id: RequestId
    """As the client sent it (string or integer), or made up by `new_request_id`."""
    command: str
    args: Args
    front_end: str = "socket"
    """`socket` or `mqtt`: where the request came from."""


@dataclass(frozen=True)
class Envelope:
    """A request read but not yet checked against its command: id, command name, raw fields."""

    id: RequestId | None
    command: str
    fields: dict[str, Any]


# --- reading JSON --------------------------------------------------------------------------------


class _Refused(Exception):
    """Raised from inside the JSON decoder's hooks; becomes a `bad_json` ProtocolError."""


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise _Refused(f"a number has more than {MAX_DIGITS} digits")
    return int(digits)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:20]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON value")


_SURROGATE = re.compile("[\ud800-\udfff]")
# The id of a line that is not (or not all) JSON, when it is the object's first field and is
# complete (followed by `,` or `}`: a line cut inside `"id": 12` must not read as id 1).
_LEADING_ID = re.compile(
    rb'\A\s*\{\s*"id"\s*:\s*(-?[0-9]{1,40}|"(?:[^"\\\x00-\x1f]|\\.){0,256}")\s*[,}]'
)


def read_json(data: bytes) -> Any:
    """`data` as JSON within our limits; a `bad_json` ProtocolError (with the id when a leading
    `"id"` field can still be read) for anything else."""
    try:
        text = data.decode("utf-8")
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_json", f"not UTF-8 (byte {exc.start})", salvage_id(data)) from None
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} (character {exc.pos})"
        raise ProtocolError("bad_json", message, salvage_id(data)) from None
    except RecursionError:
        message = f"nested deeper than {MAX_DEPTH} levels"
        raise ProtocolError("bad_json", message, salvage_id(data)) from None
    except _Refused as exc:
        raise ProtocolError("bad_json", str(exc), salvage_id(data)) from None
    problem = _problem(value)
    if problem is not None:
        request_id = value.get("id") if isinstance(value, dict) else None
        raise ProtocolError("bad_json", problem, _valid_id(request_id))
    return value


def salvage_id(data: bytes) -> RequestId | None:
    """The id of a line that did not parse, if it starts `{"id": <string or integer>`."""
    match = _LEADING_ID.match(data)
    if match is None:
        return None
    try:
        value = json.loads(match.group(1).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return _valid_id(value)


def peek_id(data: bytes) -> RequestId | None:
    """The id of a JSON object request, if it has a readable one, whatever else is wrong."""
    if not data.lstrip().startswith(b"{"):
        return None
    try:
        value = read_json(data)
    except ProtocolError as exc:
        return exc.request_id
    return _valid_id(value.get("id")) if isinstance(value, dict) else None


def _valid_id(value: object) -> RequestId | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    if isinstance(value, str) and (len(value) > MAX_ID_CHARS or _SURROGATE.search(value)):
        return None
    return value


def _problem(value: Any) -> str | None:
    """What breaks our limits in a decoded value: depth, or a lone surrogate in a string."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return f"{where or 'the value'} holds a lone surrogate (\\ud800-\\udfff), not text"
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and _SURROGATE.search(key):
                    return "a field name holds a lone surrogate (\\ud800-\\udfff), not text"
                if isinstance(child, str | dict | list):  # numbers and the like are fine
                    name = _shown(str(key))
                    path = f"`{name}`" if not where else f"{where[:-1]}.{name}`"
                    stack.append((child, depth + 1, path))
    return None


# --- requests ------------------------------------------------------------------------------------


def read_line(line: bytes) -> Envelope:
    """A socket request: one JSON object naming its command in `cmd`."""
    fields = _object(read_json(line))
    request_id = _request_id(fields)
    command = fields.pop("cmd", None)
    if command is None:
        raise ProtocolError("bad_request", "missing field `cmd` (the command to run)", request_id)
    if not isinstance(command, str):
        raise ProtocolError("bad_request", "`cmd` must be a string", request_id)
    return Envelope(request_id, command, fields)


def read_payload(
    command: str, payload: bytes, *, plain: PlainReader | None, optional: bool
) -> Envelope:
    """An MQTT command. A payload that starts with `{` is a JSON request; an empty one means no
    fields (for a command whose fields are all optional); anything else goes to the command's
    plain reader, if it has one."""
    body = payload.strip()
    if body.startswith(b"{"):
        fields = _object(read_json(body))
        return Envelope(_request_id(fields), command, fields)
    if optional and body in (b"", b"PRESS"):  # PRESS: a Home Assistant button's payload
        return Envelope(None, command, {})
    if plain is None:
        what = "a JSON object" + (" or an empty payload" if optional else "")
        raise ProtocolError("bad_request", f'{command} takes {what}, such as {{"id": 1}}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_request", f"the payload is not UTF-8 (byte {exc.start})") from None
    return Envelope(None, command, plain(text))


def plain_text(text: str) -> dict[str, Any]:
    """`command/ask` with plain text asks that text; `command/say` speaks it."""
    return {"text": text}


def plain_switch(text: str) -> dict[str, Any]:
    """`command/microphone` with `ON` or `OFF`, as a Home Assistant switch sends it."""
    word = text.upper()
    if word not in ("ON", "OFF"):
        raise ProtocolError("bad_request", 'microphone takes ON, OFF or {"on": true|false}')
    return {"on": word == "ON"}


def check_args(kind: type[Args], envelope: Envelope, request_id: RequestId) -> Args:
    """The command's typed fields, or a `bad_request` naming every wrong field once."""
    try:
        return kind.model_validate(envelope.fields)
    except ValidationError as exc:
        problems = "; ".join(_describe(err, kind) for err in exc.errors())
        raise ProtocolError("bad_request", f"{envelope.command}: {problems}", request_id) from None


def _describe(err: ErrorDetails, kind: type[Args]) -> str:
    field = ".".join(str(part) for part in err["loc"])
    kinds = {
        "string_type": "a string",
        "int_type": "an integer",
        "bool_type": "true or false",
        "list_type": "an array",
        "float_type": "a number",
    }
    ctx = err.get("ctx") or {}
    if err["type"] == "missing":
        return f"`{field}` is required"
    if err["type"] == "extra_forbidden":
        known = ", ".join(f"`{name}`" for name in kind.model_fields) or "no fields"
        return f"unknown field `{_shown(field)}` (it takes {known})"
    if err["type"] in kinds:
        return f"`{field}` must be {kinds[err['type']]}, not {_kind(err.get('input'))}"
    if err["type"] == "string_too_short":
        return f"`{field}` must not be empty"
    if err["type"] == "greater_than_equal":
        return f"`{field}` must be at least {ctx['ge']} (got {err.get('input')})"
    if err["type"] == "less_than_equal":
        return f"`{field}` must be at most {ctx['le']} (got {err.get('input')})"
    return f"`{field}`: {err['msg']}"


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError("bad_request", f"a request is a JSON object, not {_kind(value)}")
    return value


def _request_id(fields: dict[str, Any]) -> RequestId | None:
    """The request's `id`, or None when it has none (the caller makes one up)."""
    if "id" not in fields:
        return None
    request_id = fields.pop("id")
    valid = _valid_id(request_id)
    if valid is None:
        message = f"`id` must be a string (at most {MAX_ID_CHARS} characters) or an integer"
        raise ProtocolError("bad_request", message)
    return valid


def _kind(value: object) -> str:
    names = {list: "an array", dict: "an object", str: "a string", int: "a number"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return names.get(type(value), "a number")


def _shown(text: str) -> str:
    """User text fit to go into a message: short, and printable whatever it holds."""
    return text[:60].encode("utf-8", "backslashreplace").decode("utf-8")


def decode_base64(value: str, field: str, limit: int, request_id: RequestId | None = None) -> bytes:
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


def error_reply(request_id: RequestId | None, code: str, message: str) -> dict[str, Any]:
    """The one shape of every error answer on the socket: `{"id", "error": {"code", "message"}}`."""
    return {"id": request_id, "error": {"code": code, "message": message}}
