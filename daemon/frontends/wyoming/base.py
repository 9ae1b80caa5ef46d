"""The contract between the Wyoming server and the services it offers.

A service (speech-to-text, the conversation agent, and later spoken replies and the wake word)
says what it is in `describe`, and opens one `ServiceSession` per client connection for the
state that connection needs (its audio, its conversation). The connection routes each event to
the session that takes its type, so a new service plugs in without touching the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Info

from daemon.core.errors import TektraError

Send = Callable[[Event], Awaitable[None]]
"""Writes one event to the client of the connection."""

AUDIO_EVENTS = frozenset({"audio-start", "audio-chunk", "audio-stop"})
"""Taken by whichever session last took one of its `opens_audio` events (speech-to-text by
default): a wake-word service and speech-to-text both read audio."""


class WyomingService(Protocol):
    """One Wyoming domain Tektra offers."""

    def describe(self, info: Info) -> None:
        """Add this service's program(s) to the answer to `describe`."""

    def open(self) -> ServiceSession:
        """This service's state for one new client connection."""


class ServiceSession(Protocol):
    """One service as one client connection sees it."""

    takes: frozenset[str]
    """Event types this session serves."""
    opens_audio: frozenset[str]
    """Event types after which the audio events that follow are this session's
    (`transcribe` for speech-to-text, `detect` for a wake word)."""

    async def on_event(self, event: Event, send: Send) -> None:
        """Serve one event. A client's mistake raises `WyomingRefusal`; the connection sends it
        as an `error` event and goes on."""

    def close(self) -> None:
        """The client went away: release what it held."""


class WyomingRefusal(TektraError):
    """A client's mistake in Wyoming terms, sent back as an `error` event with `code`."""

    def __init__(self, code: str, message: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.final = final
        """The connection ends after the error: the client waits for an answer that no
        longer comes, and reads nothing else (Home Assistant's speech-to-text)."""

    def event(self) -> Event:
        return Error(text=self.message, code=self.code).event()


MIN_RATE, MAX_RATE = 4_000, 192_000
WIDTHS = (1, 2, 4)
"""The audio Tektra's Wyoming services take: rates in Hz; sample widths in bytes (8-bit
unsigned, 16- and 32-bit signed, as the converter takes them)."""


def format_problem(rate: object, width: object, channels: object) -> str:
    """What is wrong with an audio format, or "" when Tektra takes it."""
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        return f"unsupported sample rate {rate!r} (from {MIN_RATE} to {MAX_RATE} Hz)"
    if isinstance(width, bool) or width not in WIDTHS:
        return f"unsupported sample width {width!r} (1, 2 or 4 bytes)"
    if isinstance(channels, bool) or channels not in (1, 2):
        return f"unsupported channel count {channels!r} (1 or 2)"
    return ""
