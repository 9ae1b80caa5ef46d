"""The Wyoming TCP server: one `Connection` per client, each event routed to a service session.

Events are the `wyoming` library's, written by its writer and read by `wire.read_event` (its
reader with the announced sizes bounded). The listening socket is ours rather than the library's
`AsyncTcpServer`: that one installs its own SIGTERM handler (the daemon's composition root owns
the signals) and leaves its connection tasks unowned, while here the server task owns every
connection, bounds their number and idle time, and ends them when it is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from wyoming.event import Event, async_write_event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler

from daemon.assistant.commands import Commands
from daemon.core.config.schema import TektraConfig, WyomingSettings
from daemon.core.errors import TektraError
from daemon.core.events import ErrorRaised
from daemon.core.supervisor import backoff_delays
from daemon.frontends.wyoming.asr import AsrService
from daemon.frontends.wyoming.base import (
    AUDIO_EVENTS,
    ServiceSession,
    WyomingRefusal,
    WyomingService,
)
from daemon.frontends.wyoming.handle import HandleService
from daemon.frontends.wyoming.tts import TtsService
from daemon.frontends.wyoming.wake import WakeService
from daemon.frontends.wyoming.wire import TooLarge, read_event
from daemon.speech.engines import FallbackEngine

log = logging.getLogger("tektra.wyoming")

# Bytes that are not the wire format (not JSON, no `type`, a payload cut short): the client is
# not speaking Wyoming (NotWyoming and JSON's own errors are ValueErrors).
NOT_WYOMING = (ValueError, asyncio.IncompleteReadError)


def build_server(
    config: TektraConfig, commands: Commands, voice: FallbackEngine | None = None
) -> WyomingServer | None:
    """The Wyoming server `[wyoming]` asks for, with the services this daemon has; None without
    a `port`. Speech-to-text comes first: audio goes to it unless a `detect` came before.
    `voice` is the daemon's own speech engine, which `tts` shares rather than start another."""
    settings = config.wyoming
    if settings.port is None:
        return None
    services: list[WyomingService] = [
        AsrService(config.stt, config.audio.vad, settings.max_audio_s),
        HandleService(commands),
        WakeService(config.audio.wake),
    ]
    if config.tts.engine != "none":
        services.append(TtsService(config.tts, voice))
    assistant = commands.assistant

    def on_problem(problem: str | None) -> None:
        assistant.set_problem("wyoming", problem)
        if problem is not None:
            assistant.bus.publish(ErrorRaised(None, WyomingUnavailable.code, problem))

    return WyomingServer(settings, services, config.daemon.max_request_bytes, on_problem)


def describe(services: Sequence[WyomingService]) -> Info:
    """The answer to `describe`: each service adds what it offers."""
    info = Info()
    for service in services:
        service.describe(info)
    return info


class WyomingServer:
    def __init__(
        self,
        settings: WyomingSettings,
        services: Sequence[WyomingService],
        max_event_bytes: int = 16_777_216,
        on_problem: Callable[[str | None], None] = lambda _: None,
    ) -> None:
        self.settings = settings
        self._on_problem = on_problem
        """Told why the server cannot listen, and None once it can."""
        self.services = list(services)
        self.max_event_bytes = max_event_bytes
        """Largest event (data and payload) a client may send: `[daemon] max_request_bytes`."""
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.served = 0
        """Connections accepted since start (for `status`)."""

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def status(self) -> dict[str, Any]:
        listening = self._server is not None
        return {"address": self.address, "listening": listening, "clients": len(self._connections)}

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._accept, self.settings.host, self.settings.port
            )
        except OSError as exc:
            # asyncio rewords the error ("error while attempting to bind …"); the errno's own
            # words are the ones a user searches for.
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise WyomingUnavailable(f"Wyoming: cannot listen on {self.address}: {reason}") from exc
        log.info("Wyoming server listening on %s", self.address)

    async def run(self) -> None:
        """Serve until cancelled (binding first if `start` was not called); on the way out every
        connection is ended."""
        if self._server is None:
            await self._bind()
        assert self._server is not None
        try:
            # Not serve_forever(): from Python 3.12 its cancellation waits for every connection.
            await asyncio.get_running_loop().create_future()
        finally:
            self._server.close()
            self._server = None
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.wait(self._connections, timeout=2.0)
            for service in self.services:
                if isinstance(service, TtsService):
                    await service.aclose()  # piper's process, kept running with its voice

    async def _bind(self) -> None:
        """Bind, retrying with backoff while the port cannot be had (another program holds it):
        a problem of the daemon's (state `error`) that ends when the port is free, not a crash."""
        delays = backoff_delays(0.5, 10.0)
        reported = ""
        while True:
            try:
                await self.start()
            except WyomingUnavailable as exc:
                if exc.message != reported:
                    log.error("%s; retrying", exc.message)
                    reported = exc.message
                    self._on_problem(exc.message)
                await asyncio.sleep(next(delays))
                continue
            if reported:
                self._on_problem(None)
            return

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A task of our own, not the coroutine asyncio would wrap: on Python 3.11 cancelling
        # that wrapper at shutdown logs a CancelledError traceback from its done-callback.
        self.served += 1
        task = asyncio.create_task(self._serve(reader, writer), name="wyoming client")
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) > self.settings.max_clients:
            await _turn_away(reader, writer, self.settings.max_clients)
            return
        connection = Connection(reader, writer, self.services, self.max_event_bytes)
        connection.idle_s = self.settings.client_idle_s
        await connection.run()


class WyomingUnavailable(TektraError):
    code = "unavailable"


async def _turn_away(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int
) -> None:
    message = f"Tektra serves {limit} Wyoming clients at once ([wyoming] max_clients); try again"
    try:
        await async_write_event(WyomingRefusal("busy", message).event(), writer)
        writer.write_eof()
        # What the client already sent is read and dropped (for a second at most): closing
        # with it unread would reset the connection, and the client might lose the `busy`.
        await asyncio.wait_for(_drain(reader), 1.0)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(65_536):
        pass


class Connection(AsyncEventHandler):
    """One client: its service sessions, and the routing of its events to them."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        services: Sequence[WyomingService],
        max_event_bytes: int,
    ) -> None:
        super().__init__(reader, writer)
        self.services = services
        self.max_event_bytes = max_event_bytes
        self.sessions: list[ServiceSession] = [service.open() for service in services]
        self._audio_to: ServiceSession | None = next(
            (s for s in self.sessions if s.takes >= AUDIO_EVENTS), None
        )
        self.peer = writer.get_extra_info("peername")
        self.idle_s: float | None = None
        """Close the connection after this long without an event (None: never)."""

    async def run(self) -> None:
        """Read events until the client goes or sends something that is not Wyoming; never
        raises but for cancellation (the library's own loop lets a malformed header escape)."""
        try:
            while True:
                try:
                    reading = read_event(self.reader, self.max_event_bytes)
                    event = await asyncio.wait_for(reading, self.idle_s)
                except asyncio.TimeoutError:
                    log.info("Wyoming client %s sent nothing for %g s", self.peer, self.idle_s)
                    break
                except NOT_WYOMING as exc:
                    log.info("Wyoming client %s sent a malformed event (%s)", self.peer, exc)
                    break
                except TooLarge as exc:
                    # Its bytes are not read, so the connection cannot go on after it.
                    await self._send(WyomingRefusal("too_large", str(exc)).event())
                    break
                except ConnectionError:
                    break
                if event is None or not await self.handle_event(event):
                    break
        finally:
            for session in self.sessions:
                session.close()
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        """Serve one event; False ends the connection (the client is gone)."""
        try:
            await self._route(event)
        except WyomingRefusal as exc:
            log.info("Wyoming client %s: %s [%s]", self.peer, exc.message, exc.code)
            return await self._send(exc.event()) and not exc.final
        except ConnectionError:
            return False
        except TektraError as exc:
            return await self._send(WyomingRefusal(exc.code, exc.message).event())
        except Exception as exc:  # a bug in one event must not end the server or the client
            log.exception("Wyoming event %s failed", event.type)
            message = f"{event.type} failed: {type(exc).__name__}: {exc}"
            return await self._send(WyomingRefusal("internal", message).event())
        return True

    async def _route(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(describe(self.services).event())
            return
        if Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
            return
        session = self._session_for(event.type)
        if session is None:
            # Wyoming peers drop what they do not serve (`select-program` to a one-program
            # server, events of newer versions): an `error` here would fail the client's request.
            log.debug("Wyoming client %s: ignored a '%s' event", self.peer, event.type[:60])
            return
        if event.type in session.opens_audio:
            self._audio_to = session
        await session.on_event(event, self.write_event)

    def _session_for(self, event_type: str) -> ServiceSession | None:
        if event_type in AUDIO_EVENTS and self._audio_to is not None:
            return self._audio_to
        return next((s for s in self.sessions if event_type in s.takes), None)

    async def _send(self, event: Event) -> bool:
        try:
            await self.write_event(event)
        except ConnectionError:
            return False
        return True
