"""Reading one Wyoming event with the sizes a client announces bounded.

The `wyoming` library's reader trusts `data_length` and `payload_length`: a client announcing a
payload of gigabytes makes it buffer them all. This is the same wire format (a JSON header line,
then that many bytes of JSON data, then that many bytes of payload), with every length checked
against a limit first. Writing stays the library's.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wyoming.event import Event


class NotWyoming(ValueError):
    """The bytes are not a Wyoming event."""


class TooLarge(Exception):
    """An event announces more bytes than the limit."""


async def read_event(reader: asyncio.StreamReader, max_bytes: int) -> Event | None:
    """The next event; None at the end of the stream. Raises `NotWyoming` (or ValueError,
    `asyncio.IncompleteReadError`) on bytes that are not Wyoming, `TooLarge` past `max_bytes`."""
    line = await reader.readline()  # ValueError on a header over the reader's limit (64 KiB)
    if not line:
        return None
    header = json.loads(line)
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise NotWyoming("a header without a `type`")
    data = _object(header.get("data") or {})
    data_length = _length(header, "data_length", max_bytes)
    payload_length = _length(header, "payload_length", max_bytes - data_length)
    if data_length:
        data.update(_object(json.loads(await reader.readexactly(data_length))))
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=header["type"], data=data, payload=payload)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NotWyoming("`data` is not an object")
    return value


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise NotWyoming(f"`{key}` is not a length")
    if value > limit:
        raise TooLarge(f"an event of more than {limit} bytes")
    return value
