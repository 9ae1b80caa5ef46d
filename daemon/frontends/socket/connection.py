"""One socket client's two directions: request lines in, bounded in size and in time, and reply
lines out, bounded in memory.

Sending never waits for the client. Replies go straight into the transport's buffer, and a client
whose unread replies pass `client_buffer` bytes is dropped: awaiting its `drain()` (under a lock,
under the assistant's answer lock) is how one client that stopped reading stalled every other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from daemon.assistant.protocol import ProtocolError, error_reply
from daemon.core.config.schema import DaemonSettings

log = logging.getLogger("tektra.socket")

READ_SIZE = 65_536
TURN_AWAY_S = 2.0


class ClientConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settings: DaemonSettings,
        name: str,
        on_drop: Callable[[], None],
    ) -> None:
        self.reader, self.writer = reader, writer
        self.name = name
        """How the log names this client (its pid)."""
        self._settings = settings
        self._on_drop = on_drop
        self._buffer = bytearray()
        self._skipping = False  # inside a line over the size limit: dropping it as it comes
        self._line_started: float | None = None
        self._eof = False
        self.last_active = asyncio.get_running_loop().time()
        """When the client last sent a request or had one finish (the idle clock starts there)."""
        self.closed = False

    # --- out ---------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue one reply line; never waits. A client too far behind is dropped instead."""
        if self.closed or self.writer.is_closing():
            return
        try:
            data = json.dumps(message, ensure_ascii=False).encode() + b"\n"
        except UnicodeEncodeError:  # a lone surrogate: JSON's \u escapes still carry it
            data = json.dumps(message).encode() + b"\n"
        queued = self.writer.transport.get_write_buffer_size()
        if queued and queued + len(data) > self._settings.client_buffer:
            log.warning(
                "socket client %s dropped: it stopped reading (%d bytes of replies waiting; "
                "client_buffer = %d)",
                self.name,
                queued,
                self._settings.client_buffer,
            )
            self.closed = True
            self.writer.transport.abort()
            self._on_drop()
            return
        self.writer.write(data)

    def close(self, code: str | None = None, message: str = "") -> None:
        """Close after the replies already queued (and, with `code`, a last error line)."""
        if code is not None:
            self.send(error_reply(None, code, message))
        self.closed = True
        self.writer.close()

    async def turn_away(self, code: str, message: str) -> None:
        """Refuse the client with one error line. Whatever it already sent is read and dropped
        (for at most TURN_AWAY_S) before closing: closing on unread input would reset the
        connection and could lose the error line, or fail the client's own write first."""
        self.send(error_reply(None, code, message))
        self.closed = True
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.write_eof()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self._discard_input(), TURN_AWAY_S)
        self.writer.close()

    async def _discard_input(self) -> None:
        while await self.reader.read(READ_SIZE):
            pass

    def abort(self) -> None:
        """Close now, dropping whatever the client has not read."""
        self.closed = True
        self.writer.transport.abort()

    # --- in ----------------------------------------------------------------------------------

    async def next_line(self, busy: Callable[[], bool]) -> bytes | ProtocolError | None:
        """The next request line; a ProtocolError for one over `max_request_bytes` (skipped
        whole); None when the connection ends: closed by the client, or by us after telling it
        that a line took too long or that it sent nothing for too long while `busy()` was false.
        """
        loop = asyncio.get_running_loop()
        limit = self._settings.max_request_bytes
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                self._line_started = loop.time() if self._buffer else None
                self.last_active = loop.time()
                if self._skipping or end > limit:
                    self._skipping = False
                    return ProtocolError("too_large", f"request line over the {limit}-byte limit")
                return line
            if self._eof:
                # A last request without its newline still counts.
                line, self._buffer = bytes(self._buffer), bytearray()
                return None if self._skipping or not line else line
            if len(self._buffer) > limit:
                self._skipping = True  # keep none of it in memory, however long it gets
                self._buffer.clear()
            timeout = self._wait_s(loop.time(), busy())
            if timeout is None:
                return None
            try:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
            except asyncio.TimeoutError:
                continue  # the clocks above decide
            except ConnectionError:
                data = b""  # reset by the client: the same end as a close
            if not data:
                self._eof = True
            elif self._line_started is None:
                self._line_started = loop.time()
            self._buffer += data

    def _wait_s(self, now: float, busy: bool) -> float | None:
        """How long to wait for more input; None (after telling the client) when it is over."""
        if self._line_started is not None:
            line_s = self._settings.line_timeout_s
            left = self._line_started + line_s - now
            if left <= 0:
                self.close(
                    "line_timeout",
                    f"a request line was not finished within {line_s:g} s (line_timeout_s); "
                    "closing the connection",
                )
                return None
            return left
        idle_s = self._settings.client_idle_s
        if busy:  # a request in flight (a subscription too) keeps the connection alive
            return idle_s
        left = self.last_active + idle_s - now
        if left <= 0:
            self.close(
                "idle", f"no request for {idle_s:g} s (client_idle_s); closing the connection"
            )
            return None
        return left
